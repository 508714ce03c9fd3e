// The CUDA trainer (see trainer.cuh).
#include "cuda/trainer.cuh"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "cpu/stop_clock.h"
#include "cuda/kernels.cuh"

namespace fusedmlp {
namespace cuda {

DeviceStatus device_status() {
  DeviceStatus s;
  // Neither call fails for want of a driver: the driver version is 0 then.
  if (cudaDriverGetVersion(&s.driver_version) != cudaSuccess) s.driver_version = 0;
  if (cudaRuntimeGetVersion(&s.runtime_version) != cudaSuccess) s.runtime_version = 0;
  const cudaError_t e = cudaGetDeviceCount(&s.count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: reported, not raised
    s.count = 0;
    s.error_name = cudaGetErrorName(e);
    s.error_text = cudaGetErrorString(e);
  }
  return s;
}

int device_count() { return device_status().count; }

bool simulated() { return FUSEDMLP_CUDA_SIMULATED != 0; }

RuntimeCounts runtime_counts() {
#if FUSEDMLP_CUDA_SIMULATED
  const sim::Counters c = sim::counters();
  return RuntimeCounts{c.allocations, c.host_to_device, c.device_to_host, c.host_to_device_bytes,
                       c.device_to_host_bytes, c.graphs, c.kernels};
#else
  throw std::runtime_error("only the CUDA simulator counts allocations and copies");
#endif
}

bool all_finite(const MatrixView& x) {
  if (x.rows == 0 || x.cols == 0) return true;
  Stream stream;
  DeviceBuffer<int> flag(1);
  FUSEDMLP_CUDA_CHECK(cudaMemsetAsync(flag.get(), 0, sizeof(int), stream.get()));
  const long long n = static_cast<long long>(x.rows) * x.cols;
  if (x.f32)
    launch(finite_kernel<float>, dim3(grid_for(n)), dim3(kBlock), 0, stream.get(), static_cast<const float*>(x.data),
           static_cast<long long>(x.rows), static_cast<long long>(x.cols), static_cast<long long>(x.rs),
           static_cast<long long>(x.cs), flag.get());
  else
    launch(finite_kernel<double>, dim3(grid_for(n)), dim3(kBlock), 0, stream.get(), static_cast<const double*>(x.data),
           static_cast<long long>(x.rows), static_cast<long long>(x.cols), static_cast<long long>(x.rs),
           static_cast<long long>(x.cs), flag.get());
  int bad = 0;
  FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(&bad, flag.get(), sizeof(int), cudaMemcpyDeviceToHost, stream.get()));
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  return bad == 0;
}

int pointer_device(const void* p) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged
             ? attributes.device
             : -1;
}

int current_device() {
  int device = 0;
  FUSEDMLP_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

void wait_for_stream(std::uintptr_t stream) {
  if (stream == 0) return;
  if (stream == 1 || stream == 2)
    FUSEDMLP_CUDA_CHECK(cudaDeviceSynchronize());
  else
    FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(stream)));
}

namespace {

LayerTable make_table(const NetworkLayout& layout) {
  if (layout.n_layers() > kMaxLayers)
    throw std::invalid_argument("the CUDA engine supports at most " + std::to_string(kMaxLayers) +
                                " layers");
  LayerTable t{};
  t.n_layers = static_cast<int>(layout.n_layers());
  for (int l = 0; l < t.n_layers; ++l) {
    t.w_offset[l] = layout.layers[l].w_offset;
    t.b_offset[l] = layout.layers[l].b_offset;
    t.fan_in[l] = static_cast<int>(layout.layers[l].fan_in);
    t.fan_out[l] = static_cast<int>(layout.layers[l].fan_out);
  }
  return t;
}

bool narrow(const NetworkLayout& layout) {
  for (const auto& l : layout.layers)
    if (l.fan_in > kNarrow || l.fan_out > kNarrow) return false;
  return true;
}

template <class T>
void upload(DeviceBuffer<T>& dst, const T* src, std::size_t n, cudaStream_t stream) {
  dst.resize(n);
  if (n != 0) FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src, n * sizeof(T), cudaMemcpyHostToDevice, stream));
}

template <class T>
void download(T* dst, const DeviceBuffer<T>& src, std::size_t n, cudaStream_t stream) {
  if (n != 0) FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(dst, src.get(), n * sizeof(T), cudaMemcpyDeviceToHost, stream));
}

// Rows per chunk of the whole-data passes (loss_grad, predict, evaluate): their buffers stop
// growing there.
constexpr index_t kChunkRows = 4096;

// Bytes a strided view spans from its first element (strides are non-negative).
std::size_t span_bytes(const MatrixView& x) {
  if (x.rows == 0 || x.cols == 0) return 0;
  const index_t last = (x.rows - 1) * x.rs + (x.cols - 1) * x.cs;
  return static_cast<std::size_t>(last + 1) * (x.f32 ? 4 : 8);
}

}  // namespace

template <class T>
struct Trainer<T>::Impl {
  NetworkLayout layout;
  LayerTable table;
  bool fused;
  Stream own;
  Event produced;  // order_after's event
  cudaStream_t borrowed = nullptr;
  cudaStream_t work() const { return borrowed != nullptr ? borrowed : own.get(); }

  // the device that is current when the engine is built: its buffers, stream and graph live
  // there, and every call runs there
  int device = current_device();
  // its multiprocessors: how many blocks a GEMM needs to fill it (split-k; FUSEDMLP_CUDA_SPLIT_K=0
  // turns split-k off, to measure what it brings)
  int sms = [] {
    const char* off = std::getenv("FUSEDMLP_CUDA_SPLIT_K");
    if (off != nullptr && std::string(off) == "0") return 0;
    int v = 0;
    FUSEDMLP_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, current_device()));
    return v;
  }();

  // the training data (X in its own type) and the epoch's order
  DeviceBuffer<char> x_store;
  MatrixView x;  // device view of X
  DeviceBuffer<T> y, w;
  DeviceBuffer<long long> order;
  DeviceBuffer<double> batch_lr;    // the epoch's per-batch learning rates, when a schedule sets them
  DeviceBuffer<double> batch_loss;  // the epoch's per-batch losses, when asked for
  index_t n_rows = 0;
  bool weighted = false;

  // the model and its optimizer
  DeviceBuffer<T> params, grad, s0, s1;
  DeviceBuffer<BatchState> state;

  // device-resident training (set_parameters): params, s0 and s1 hold the model between
  // epochs, for `resident_solver`'s state; anything that uploads host parameters ends it
  bool resident = false;
  Solver resident_solver = Solver::adam;
  DeviceBuffer<T> best;     // early stopping's snapshot
  std::vector<T> best_shadow;  // its values as get_best last gave them to the host
  // the values params hold, as the host last sent or received them (predict, loss_grad,
  // get_parameters, restore_best), while nothing else has written them since: a prediction with
  // the same host values (compared bit for bit) uploads nothing
  std::vector<T> params_shadow;
  bool shadow_valid = false;
  DeviceBuffer<int> flag;   // parameters_finite's answer

  // the resident model's validation set: its own X or rows of the training X, read through the
  // gather as training reads batches
  struct Validation {
    MatrixView x;
    DeviceBuffer<char> x_store;
    DeviceBuffer<T> y, w;
    DeviceBuffer<long long> rows;
    index_t n = 0;
    bool weighted = false;
    double sw_sum = 0.0;
  } val;

  // one batch: its input, targets, weights, and every layer's outputs and dZ
  index_t capacity = 0;
  std::size_t activation_elems = 0;  // every layer's outputs for `capacity` rows
  DeviceBuffer<T> xb, yb, wb, acts, deltas;
  DeviceBuffer<T> pres;  // hidden pre-activations: only for a from_input activation or dropout
  DeviceBuffer<T> split_ws;  // the split per-batch GEMMs' partial sums (see split_k)
  // the last forward pass's output-layer parts, when split: its z is left to the output loss
  OutputParts<T> out_parts;
  std::vector<index_t> act_offsets;
  DeviceBuffer<double> out, scalar;

  // prediction's staging, kept across calls and grown to one chunk, never to the data: a chunk
  // of host X, a chunk of outputs bound for the host, and the identity order of a chunk
  DeviceBuffer<char> x_stage;
  DeviceBuffer<double> out_stage;
  DeviceBuffer<long long> chunk_order;
  index_t chunk_order_rows = 0;

  // the captured per-batch sequence and what it was captured for: the options (graph_key) and
  // the data's device addresses and layout (graph_data)
  GraphExec graph;
  std::vector<double> graph_key;
  using DataWhere = std::tuple<const void*, index_t, index_t, bool, const T*, const T*, bool, const long long*>;
  DataWhere graph_data{};
  DataWhere data_where() const {
    return std::make_tuple(x.data, x.rs, x.cs, x.f32, y.get(), w.get(), weighted,
                           static_cast<const long long*>(order.get()));
  }

  T* act(size_t l) { return acts.get() + act_offsets[l]; }
  T* delta(size_t l) { return deltas.get() + act_offsets[l]; }
  T* pre(size_t l) { return pres.get() + act_offsets[l]; }

  // What a pass keeps besides the outputs (see the CPU trainer's Pass): pre-activations when
  // the activation's derivative needs them or under dropout; dropout in training epochs only.
  struct Pass {
    bool keep_pre = false;
    bool dropout = false;
  };
  Pass pass(bool training_epoch) const {
    Pass p;
    p.dropout = training_epoch && layout.has_dropout();
    p.keep_pre = activation_needs_input(layout.hidden) || p.dropout;
    return p;
  }
  bool may_keep_pre() const { return activation_needs_input(layout.hidden) || layout.has_dropout(); }

  // Hidden layer l's write-back (the output layer's is its head's).
  HiddenUnits<T> hidden_units(size_t l, const Pass& p) {
    HiddenUnits<T> h;
    h.param = static_cast<T>(layout.activation_param);
    if (l + 1 >= layout.layers.size()) return h;
    if (p.keep_pre) {
      h.pre = pre(l);
      h.ld_pre = layout.layers[l].fan_out;
    }
    const double rate = p.dropout ? layout.dropout_rate(l) : 0.0;
    if (rate > 0.0) {
      h.threshold = dropout_threshold(rate);
      h.keep_scale = static_cast<T>(1.0 / (1.0 - rate));
    }
    return h;
  }

  // Buffers for passes over `rows` rows; those of the backward pass (deltas, and the kept
  // pre-activations) only when one follows: a prediction engine, kept on the estimator, holds
  // no more than its forward pass needs.
  void ensure_rows(index_t rows, bool backward) {
    if (rows > capacity) {
      act_offsets.clear();
      index_t total = 0;
      for (const auto& l : layout.layers) {
        act_offsets.push_back(total);
        total += rows * l.fan_out;
      }
      xb.resize(static_cast<size_t>(rows * layout.n_inputs()));
      yb.resize(static_cast<size_t>(rows * layout.n_outputs()));
      wb.resize(static_cast<size_t>(rows));
      acts.resize(static_cast<size_t>(total));
      activation_elems = total;
      capacity = rows;
      graph.reset();  // the captured sequence points at the old buffers
    }
    if (backward && deltas.size() < activation_elems) {
      deltas.resize(activation_elems);
      if (may_keep_pre()) pres.resize(activation_elems);
      graph.reset();
    }
  }
  // The workspace of the per-batch GEMMs for batches of `rows` rows.
  void ensure_split(index_t rows) {
    const std::size_t need = static_cast<std::size_t>(split_elems(rows));
    if (split_ws.size() < need) {
      split_ws.resize(need);
      graph.reset();
    }
  }

  // Split-k for the per-batch GEMMs (m or k the batch's rows, at most max_rows): g's k is split
  // among enough blocks to fill the device (gemm_splits), with split_ws as the workspace.
  // Whole-data passes (prediction, validation, loss_grad) have rows enough, and are not split.
  int splits_of(long long max_m, long long n, long long max_k) const {
    return gemm_splits(gemm_tiles(max_m, n), max_k, sms);
  }
  void split_k(GemmArgs<T>& g, int max_m, int max_k) {
    g.splits = splits_of(max_m, g.n, max_k);
    g.part = g.splits > 1 ? split_ws.get() : nullptr;
    g.part_stride = static_cast<long long>(max_m) * g.n;
  }
  // The workspace the per-batch GEMMs of a batch of `rows` rows need: the largest of forward
  // (rows x fan_out, k = fan_in), weight gradient (fan_in x fan_out, k = rows) and data gradient
  // (rows x fan_in, k = fan_out).
  long long split_elems(index_t rows) const {
    long long most = 0;
    for (size_t l = 0; l < layout.layers.size(); ++l) {
      const LayerLayout& L = layout.layers[l];
      const long long shapes[3][3] = {{rows, L.fan_out, L.fan_in}, {L.fan_in, L.fan_out, rows},
                                      {rows, L.fan_in, L.fan_out}};
      for (int i = 0; i < 3; ++i) {
        if ((i == 0 && fused) || (i == 2 && l == 0)) continue;  // (no such GEMM)
        const auto& sh = shapes[i];
        most = std::max(most, gemm_split_elems(splits_of(sh[0], sh[1], sh[2]), sh[0], sh[1]));
      }
    }
    return most;
  }

  // The network's outputs for `rows` rows of xb (rows < 0: the batch's, from the state).
  void forward(int rows, int max_rows, const Pass& p, cudaStream_t s) {
    const size_t n_layers = layout.layers.size();
    out_parts = OutputParts<T>{};
    if (fused) {
      OutputTable<T> outs{};
      outs.param = static_cast<T>(layout.activation_param);
      for (size_t l = 0; l < n_layers; ++l) {
        const HiddenUnits<T> h = hidden_units(l, p);
        outs.out[l] = act(l);
        outs.pre[l] = h.pre;
        outs.threshold[l] = h.threshold;
        outs.keep_scale[l] = h.keep_scale;
      }
      dispatch_hidden_activation(layout.hidden, [&](auto a) {
        launch(fused_forward_kernel<T, decltype(a)::value>,
               dim3(static_cast<unsigned>((max_rows + fused_rows<T>() - 1) / fused_rows<T>())),
               dim3(kFusedThreads), 0, s, static_cast<const T*>(xb.get()),
               static_cast<int>(layout.n_inputs()), static_cast<const T*>(params.get()), table, outs,
               rows, static_cast<const BatchState*>(state.get()));
        return 0;
      });
      return;
    }
    for (size_t l = 0; l < n_layers; ++l) {
      const LayerLayout& L = layout.layers[l];
      GemmArgs<T> g{};
      g.m = rows < 0 ? max_rows : rows;
      g.n = static_cast<int>(L.fan_out);
      g.k = static_cast<int>(L.fan_in);
      g.rows_dim = rows < 0 ? 1 : 0;
      g.state = state.get();
      g.a = Mat<T>{l == 0 ? xb.get() : act(l - 1), L.fan_in, 1};
      g.b = Mat<T>{params.get() + L.w_offset, L.fan_out, 1};
      g.c = act(l);
      g.ldc = L.fan_out;
      g.bias = params.get() + L.b_offset;
      g.hidden = hidden_units(l, p);
      g.layer = static_cast<int>(l);
      if (rows < 0) split_k(g, max_rows, g.k);
      if (l + 1 == n_layers && g.splits > 1) {  // the output loss sums the parts (one launch fewer)
        g.defer_reduce = true;
        out_parts = OutputParts<T>{g.part, g.splits, g.part_stride, g.bias};
      }
      // the output layer's activation comes with its loss
      gemm<T>(g, Epi::bias_activation, l + 1 == n_layers ? Activation::identity : layout.hidden,
              g.m, s);
    }
  }

  // dZ of the output layer (delta(last)) back through the network. Per-batch (graph) mode:
  // weight gradients scaled and with their L2 term; raw mode (loss_grad): sums accumulated.
  void backward(int rows, int max_rows, bool per_batch, T alpha, bool accumulate, const Pass& p,
                cudaStream_t s) {
    for (size_t l = layout.layers.size(); l-- > 0;) {
      const LayerLayout& L = layout.layers[l];
      const T* input = l == 0 ? xb.get() : act(l - 1);
      GemmArgs<T> g{};
      g.m = static_cast<int>(L.fan_in);
      g.n = static_cast<int>(L.fan_out);
      g.k = rows < 0 ? max_rows : rows;
      g.rows_dim = rows < 0 ? 2 : 0;
      g.state = state.get();
      g.a = Mat<T>{input, 1, L.fan_in};            // input^T
      g.b = Mat<T>{delta(l), L.fan_out, 1};        // dZ
      g.c = grad.get() + L.w_offset;
      g.ldc = L.fan_out;
      g.aux = params.get() + L.w_offset;
      g.ld_aux = L.fan_out;
      g.alpha = alpha;
      g.scale = T(1);
      g.batch_scale = per_batch;
      g.colsum = grad.get() + L.b_offset;
      g.accumulate = accumulate;
      if (rows < 0) split_k(g, g.m, max_rows);
      // dW = (input^T dZ + alpha W) / sum(w), db = colsum(dZ) / sum(w)
      gemm<T>(g, per_batch ? Epi::weight_grad : Epi::none, Activation::identity, g.m, s);
      if (l == 0) continue;
      GemmArgs<T> d{};
      d.m = rows < 0 ? max_rows : rows;
      d.n = static_cast<int>(L.fan_in);
      d.k = static_cast<int>(L.fan_out);
      d.rows_dim = rows < 0 ? 1 : 0;
      d.state = state.get();
      d.a = Mat<T>{delta(l), L.fan_out, 1};                         // dZ
      d.b = Mat<T>{params.get() + L.w_offset, 1, L.fan_out};        // W^T
      d.c = delta(l - 1);
      d.ldc = L.fan_in;
      d.aux = p.keep_pre ? pre(l - 1) : act(l - 1);
      d.ld_aux = L.fan_in;
      d.aux_is_pre = p.keep_pre;
      d.hidden = hidden_units(l - 1, p);
      d.hidden.pre = nullptr;  // (read through aux here)
      d.layer = static_cast<int>(l - 1);
      if (rows < 0) split_k(d, max_rows, d.k);
      // dZ_prev = (dZ W^T) [* mask] * f'(z_prev)
      gemm<T>(d, Epi::activation_grad, layout.hidden, d.m, s);
    }
  }

  // Rows 0..n in order (the whole-data passes read X through the same gather as training).
  static void upload_identity(DeviceBuffer<long long>& order, index_t n, cudaStream_t s) {
    std::vector<long long> iota(static_cast<size_t>(n));
    for (index_t i = 0; i < n; ++i) iota[static_cast<size_t>(i)] = i;
    order.resize(static_cast<size_t>(std::max<index_t>(n, 1)));
    if (n > 0)
      FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(order.get(), iota.data(), iota.size() * sizeof(long long),
                                          cudaMemcpyHostToDevice, s));
  }

  // The state of chunk b (rows of at most `chunk`) of a whole-data pass over n rows; `host` must
  // stay alive until the copy has run (the callers synchronise once per chunk).
  void begin_chunk(BatchState& host, index_t n, index_t chunk, index_t b, int rows, cudaStream_t s) {
    host = BatchState{};
    host.n_order = n;
    host.batch = b;
    host.batch_size = static_cast<int>(chunk);
    host.rows = rows;
    FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(state.get(), &host, sizeof host, cudaMemcpyHostToDevice, s));
  }

  // The optimizer's state for `solver` (Adam's m and v, or SGD's velocity) to and from the host.
  void upload_state(const OptimizerState<T>& st, Solver solver, cudaStream_t s) {
    const std::size_t n = static_cast<std::size_t>(layout.n_params);
    const std::size_t had0 = s0.size(), had1 = s1.size();
    if (solver == Solver::adam) {
      upload(s0, st.m, n, s);
      upload(s1, st.v, n, s);
    } else {
      upload(s0, st.velocity, n, s);
    }
    if (s0.size() != had0 || s1.size() != had1) graph.reset();  // (new buffers)
  }
  void download_state(OptimizerState<T>& st, Solver solver, cudaStream_t s) const {
    const std::size_t n = static_cast<std::size_t>(layout.n_params);
    if (solver == Solver::adam) {
      download(st.m, s0, n, s);
      download(st.v, s1, n, s);
    } else {
      download(st.velocity, s0, n, s);
    }
  }

  // The current batch's (or chunk's) rows of `src`, their targets and weights (ws: null when
  // unweighted), in `ord`'s order, into xb, yb and wb.
  void gather_rows(const MatrixView& src, const T* ys, const T* ws, const long long* ord, index_t batch_size,
                   cudaStream_t s, BatchSetup setup = BatchSetup{}) {
    const long long per_row = std::max<long long>(layout.n_inputs(), layout.n_outputs());
    auto run = [&](auto tag) {
      using S = decltype(tag);
      launch(gather_kernel<T, S>, dim3(grid_for(batch_size * per_row)), dim3(kBlock), 0, s,
             static_cast<const S*>(src.data), static_cast<long long>(src.rs), static_cast<long long>(src.cs),
             static_cast<int>(layout.n_inputs()), ys, static_cast<int>(layout.n_outputs()), ws, ord,
             state.get(), xb.get(), yb.get(), wb.get(), setup);
    };
    if (src.f32)
      run(float{});
    else
      run(double{});
  }
  void gather(const EpochOptions& o, cudaStream_t s, BatchSetup setup = BatchSetup{}) {
    gather_rows(x, y.get(), weighted ? w.get() : nullptr, order.get(), o.batch_size, s, setup);
  }

  // Enqueues one batch: everything the graph replays.
  void enqueue_batch(const EpochOptions& o, cudaStream_t s) {
    const int bs = static_cast<int>(o.batch_size);
    const bool adam = o.solver == Solver::adam;
    gather(o, s, BatchSetup{true, adam, o.beta_1, o.beta_2});  // and the batch's set-up
    const Pass p = pass(true);
    forward(-1, bs, p, s);
    const size_t last = layout.layers.size() - 1;
    const int n_out = static_cast<int>(layout.n_outputs());
    dispatch_head(layout.loss, layout.output, [&](auto l, auto a) {
      launch(output_loss_kernel<T, decltype(l)::value, decltype(a)::value>, dim3(grid_for(bs)), dim3(kBlock), 0, s,
             act(last), static_cast<const T*>(yb.get()), weighted ? static_cast<const T*>(wb.get()) : nullptr,
             delta(last), -1, n_out, state.get(), static_cast<double*>(nullptr), layout.loss_params,
             out_parts);
      return 0;
    });
    backward(-1, bs, true, static_cast<T>(o.alpha), false, p, s);
    const long long n = layout.n_params;
    if (adam)
      launch(optimizer_kernel<T, Solver::adam>, dim3(grid_for(n)), dim3(kBlock), 0, s, params.get(),
             static_cast<const T*>(grad.get()), s0.get(), s1.get(), n, table, state.get(), o.momentum,
             o.nesterov, o.beta_1, o.beta_2, o.epsilon);
    else
      launch(optimizer_kernel<T, Solver::sgd>, dim3(grid_for(n)), dim3(kBlock), 0, s, params.get(),
             static_cast<const T*>(grad.get()), s0.get(), s1.get(), n, table, state.get(), o.momentum,
             o.nesterov, o.beta_1, o.beta_2, o.epsilon);
    dispatch_loss(layout.loss, [&](auto l) {
      launch(batch_finish_kernel<decltype(l)::value>, dim3(1), dim3(1), 0, s, state.get(), n_out,
             o.alpha, adam);
      return 0;
    });
  }
};

namespace {

// Makes `device` current for a scope and restores the caller's device after it: an engine's
// buffers, stream and graph belong to the device it was built on, whichever is current when
// Python calls it.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    FUSEDMLP_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) FUSEDMLP_CUDA_CHECK(cudaSetDevice(device));
    device_ = device;
  }
  ~DeviceScope() {
    if (previous_ != device_) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0, device_ = 0;
};

// Device memory of another device than the engine's is a clear error (host memory is copied).
void check_on_device(const MatrixView& x, int device) {
  if (!x.on_device) return;
  const int owner = pointer_device(x.data);
  if (owner >= 0 && owner != device)
    throw std::invalid_argument("X is on CUDA device " + std::to_string(owner) +
                                " but this engine was built on device " + std::to_string(device));
}

}  // namespace

void set_device(int device) {
  const cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) cudaGetLastError();  // reported here, not by the next launch's check
  check(e, "cudaSetDevice");
}

void* device_copy(const void* host, std::size_t bytes) {
  void* p = nullptr;
  FUSEDMLP_CUDA_CHECK(cudaMalloc(&p, bytes));
  FUSEDMLP_CUDA_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
  return p;
}

void device_free(void* p) { cudaFree(p); }

template <class T>
int Trainer<T>::device() const {
  return impl_->device;
}

template <class T>
Trainer<T>::Trainer(NetworkLayout layout) : impl_(new Impl) {
  check_hidden_activation(layout.hidden);
  impl_->table = make_table(layout);
  impl_->fused = narrow(layout);
  impl_->layout = std::move(layout);
  const index_t n = impl_->layout.n_params;
  impl_->params.resize(static_cast<size_t>(n));
  impl_->grad.resize(static_cast<size_t>(n));
  impl_->state.resize(1);
  impl_->scalar.resize(1);
}

template <class T>
Trainer<T>::~Trainer() = default;

template <class T>
const NetworkLayout& Trainer<T>::layout() const {
  return impl_->layout;
}

template <class T>
void Trainer<T>::set_stream(std::uintptr_t stream) {
  impl_->borrowed = reinterpret_cast<cudaStream_t>(stream);
}

template <class T>
void Trainer<T>::order_after(std::uintptr_t producer) {
  if (producer == 0) return;
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  cudaStream_t p = producer == 1   ? cudaStreamLegacy
                   : producer == 2 ? cudaStreamPerThread
                                   : reinterpret_cast<cudaStream_t>(producer);
  if (p == I.work()) return;  // (stream order already)
  if (cudaEventRecord(I.produced.get(), p) != cudaSuccess) {
    // a stream of another device (an event and the stream it records must share a device):
    // the host waits for it instead, and the failed call's error is not left for the next one
    cudaGetLastError();
    FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(p));
    return;
  }
  FUSEDMLP_CUDA_CHECK(cudaStreamWaitEvent(I.work(), I.produced.get(), 0));
}

template <class T>
void Trainer<T>::load_training_data(const MatrixView& x, const T* y, const T* sample_weight) {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  check_on_device(x, I.device);
  cudaStream_t s = I.work();
  if (x.cols != I.layout.n_inputs()) throw std::invalid_argument("X has the wrong number of features");
  I.val.n = 0;  // (its rows may have been rows of the old X)
  I.n_rows = x.rows;
  if (x.on_device) {
    I.x = x;
  } else {
    const std::size_t bytes = span_bytes(x);
    I.x_store.resize(bytes);
    if (bytes != 0)
      FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(I.x_store.get(), x.data, bytes, cudaMemcpyHostToDevice, s));
    I.x = x;
    I.x.data = I.x_store.get();
    I.x.on_device = true;
  }
  upload(I.y, y, static_cast<size_t>(x.rows * I.layout.n_outputs()), s);
  I.weighted = sample_weight != nullptr;
  if (I.weighted) upload(I.w, sample_weight, static_cast<size_t>(x.rows), s);
  I.order.resize(static_cast<size_t>(std::max<index_t>(x.rows, 1)));
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
  // (the captured graph is kept when the data lands where it did: run_epoch compares)
}

template <class T>
void Trainer<T>::set_parameters(const T* params_host, const OptimizerState<T>& st, Solver solver) {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  I.shadow_valid = false;
  cudaStream_t s = I.work();
  upload(I.params, params_host, static_cast<size_t>(I.layout.n_params), s);
  I.upload_state(st, solver, s);
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
  I.resident = true;
  I.resident_solver = solver;
}

template <class T>
void Trainer<T>::get_parameters(T* params_host, OptimizerState<T>& st, Solver solver) {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  if (!(I.resident && I.resident_solver == solver))
    throw std::logic_error("get_parameters: no device-resident parameters for this solver");
  cudaStream_t s = I.work();
  const std::size_t n = static_cast<std::size_t>(I.layout.n_params);
  // the values come down into the shadow, then to the host (another thread writing the host's
  // array meanwhile cannot make the shadow differ from the device)
  I.shadow_valid = false;
  I.params_shadow.resize(n);
  download(I.params_shadow.data(), I.params, n, s);
  I.download_state(st, solver, s);
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
  std::copy(I.params_shadow.begin(), I.params_shadow.end(), params_host);
  I.shadow_valid = true;  // a prediction with these values uploads nothing
}

template <class T>
void Trainer<T>::end_training() {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(I.work()));  // (nothing queued still reads them)
  I.graph.reset();
  I.graph_key.clear();
  I.graph_data = {};
  I.x_store = DeviceBuffer<char>();
  I.x = MatrixView{};
  I.y = DeviceBuffer<T>();
  I.w = DeviceBuffer<T>();
  I.order = DeviceBuffer<long long>();
  I.batch_lr = DeviceBuffer<double>();
  I.batch_loss = DeviceBuffer<double>();
  I.n_rows = 0;
  I.weighted = false;
  I.val = typename Impl::Validation{};
  I.best = DeviceBuffer<T>();
  I.best_shadow.clear();
  I.best_shadow.shrink_to_fit();
  I.grad = DeviceBuffer<T>();
  I.s0 = DeviceBuffer<T>();
  I.s1 = DeviceBuffer<T>();
  I.split_ws = DeviceBuffer<T>();
  I.deltas = DeviceBuffer<T>();  // (a prediction's forward pass needs neither)
  I.pres = DeviceBuffer<T>();
  I.out_parts = OutputParts<T>{};
  if (I.capacity > kChunkRows) {  // (a large batch's buffers: predictions use a chunk's at most)
    I.xb = DeviceBuffer<T>();
    I.yb = DeviceBuffer<T>();
    I.wb = DeviceBuffer<T>();
    I.acts = DeviceBuffer<T>();
    I.act_offsets.clear();
    I.activation_elems = 0;
    I.capacity = 0;
  }
  I.resident = false;
}

template <class T>
bool Trainer<T>::parameters_finite() {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  if (!I.resident) throw std::logic_error("parameters_finite: no device-resident parameters");
  cudaStream_t s = I.work();
  I.flag.resize(1);
  FUSEDMLP_CUDA_CHECK(cudaMemsetAsync(I.flag.get(), 0, sizeof(int), s));
  const long long n = I.layout.n_params;
  launch(finite_kernel<T>, dim3(grid_for(n)), dim3(kBlock), 0, s, static_cast<const T*>(I.params.get()), 1LL, n,
         n, 1LL, I.flag.get());
  int bad = 0;
  FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(&bad, I.flag.get(), sizeof(int), cudaMemcpyDeviceToHost, s));
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
  return bad == 0;
}

template <class T>
void Trainer<T>::set_best(const T* params_host) {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  cudaStream_t s = I.work();
  I.best_shadow.clear();
  upload(I.best, params_host, static_cast<size_t>(I.layout.n_params), s);
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
}

template <class T>
void Trainer<T>::keep_best() {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  if (!I.resident) throw std::logic_error("keep_best: no device-resident parameters");
  const std::size_t n = static_cast<std::size_t>(I.layout.n_params);
  I.best.resize(n);
  I.best_shadow.clear();
  // (ordered after the epochs on the same stream; nothing on the host waits for it)
  if (n != 0)
    FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(I.best.get(), I.params.get(), n * sizeof(T), cudaMemcpyDeviceToDevice,
                                        I.work()));
}

template <class T>
void Trainer<T>::get_best(T* params_host) {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  const std::size_t n = static_cast<std::size_t>(I.layout.n_params);
  if (I.best.size() < n) throw std::logic_error("get_best: no snapshot (set_best or keep_best)");
  cudaStream_t s = I.work();
  download(params_host, I.best, n, s);
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
  I.best_shadow.assign(params_host, params_host + n);
}

template <class T>
void Trainer<T>::restore_best() {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  const std::size_t n = static_cast<std::size_t>(I.layout.n_params);
  if (I.best.size() < n || I.best_shadow.size() != n)
    throw std::logic_error("restore_best: no snapshot the host has received (get_best)");
  cudaStream_t s = I.work();
  I.shadow_valid = false;
  I.params.resize(n);
  if (n != 0)
    FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(I.params.get(), I.best.get(), n * sizeof(T), cudaMemcpyDeviceToDevice, s));
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
  I.params_shadow = I.best_shadow;
  I.shadow_valid = true;
}

template <class T>
void Trainer<T>::set_validation(const MatrixView* x, const index_t* rows, index_t n, const T* y,
                                const T* sample_weight) {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  cudaStream_t s = I.work();
  typename Impl::Validation& V = I.val;
  V.n = 0;
  if (x == nullptr) {
    if (I.n_rows == 0) throw std::logic_error("set_validation: no training data loaded to take rows from");
    V.x = I.x;
  } else {
    check_on_device(*x, I.device);
    if (x->cols != I.layout.n_inputs()) throw std::invalid_argument("X_val has the wrong number of features");
    if (x->rows != n) throw std::invalid_argument("X_val and its targets differ in length");
    V.x = *x;
    if (!x->on_device) {
      const std::size_t bytes = span_bytes(*x);
      V.x_store.resize(bytes);
      if (bytes != 0)
        FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(V.x_store.get(), x->data, bytes, cudaMemcpyHostToDevice, s));
      V.x.data = V.x_store.get();
      V.x.on_device = true;
    }
  }
  if (rows != nullptr) {
    V.rows.resize(static_cast<size_t>(std::max<index_t>(n, 1)));
    if (n > 0)
      FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(V.rows.get(), rows, static_cast<size_t>(n) * sizeof(long long),
                                          cudaMemcpyHostToDevice, s));
  } else {
    Impl::upload_identity(V.rows, n, s);
  }
  // The gather reads targets and weights by row of X: for rows of the training X, y and the
  // weights go where those rows are (the rest of the copy is never read).
  const index_t n_out = I.layout.n_outputs();
  const index_t extent = rows != nullptr ? I.n_rows : n;
  if (rows != nullptr)
    for (index_t i = 0; i < n; ++i)
      if (rows[i] < 0 || rows[i] >= I.n_rows) throw std::invalid_argument("set_validation: a row out of range");
  std::vector<T> scattered;
  auto by_row = [&](const T* values, index_t width) {
    if (rows == nullptr) return values;
    scattered.assign(static_cast<size_t>(extent * width), T(0));
    for (index_t i = 0; i < n; ++i)
      std::copy_n(values + i * width, width, scattered.data() + rows[i] * width);
    return static_cast<const T*>(scattered.data());
  };
  upload(V.y, by_row(y, n_out), static_cast<size_t>(extent * n_out), s);
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));  // (before the staging is reused)
  V.weighted = sample_weight != nullptr;
  V.sw_sum = static_cast<double>(n);
  if (V.weighted) {
    upload(V.w, by_row(sample_weight, 1), static_cast<size_t>(extent), s);
    double total = 0.0;
    for (index_t i = 0; i < n; ++i) total += static_cast<double>(sample_weight[i]);
    V.sw_sum = total;
  }
  // the buffers of evaluate's chunks now, before an epoch's graph is captured with them
  I.ensure_rows(std::max<index_t>(std::min<index_t>(n, kChunkRows), 1), true);
  I.out_stage.resize(static_cast<size_t>(std::min<index_t>(n, kChunkRows) * I.layout.n_outputs()));
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));  // (the host arrays may go)
  V.n = n;
}

template <class T>
double Trainer<T>::evaluate(double alpha, double* out, const StopCheck& should_stop) {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  typename Impl::Validation& V = I.val;
  if (!I.resident) throw std::logic_error("evaluate: no device-resident parameters");
  if (V.n == 0) throw std::logic_error("evaluate: no validation set");
  cpu::StopClock stop(should_stop);
  cudaStream_t s = I.work();
  const index_t chunk = std::max<index_t>(std::min<index_t>(V.n, kChunkRows), 1);
  I.ensure_rows(chunk, true);  // (the loss writes dZ)
  const int n_out = static_cast<int>(I.layout.n_outputs());
  I.out_stage.resize(static_cast<size_t>(chunk * n_out));
  const size_t last = I.layout.layers.size() - 1;
  FUSEDMLP_CUDA_CHECK(cudaMemsetAsync(I.scalar.get(), 0, sizeof(double), s));
  BatchState host{};
  for (index_t start = 0, b = 0; start < V.n; start += chunk, ++b) {
    const int rows = static_cast<int>(std::min(chunk, V.n - start));
    I.begin_chunk(host, V.n, chunk, b, rows, s);
    I.gather_rows(V.x, V.y.get(), V.weighted ? V.w.get() : nullptr, V.rows.get(), chunk, s);
    I.forward(rows, rows, I.pass(false), s);
    // the outputs as predict gives them, then the loss (whose kernel activates z in place)
    dispatch_output(I.layout.loss, I.layout.output, [&](auto a) {
      launch(output_activation_kernel<T, decltype(a)::value>, dim3(grid_for(rows)), dim3(kBlock), 0, s,
             static_cast<const T*>(I.act(last)), I.out_stage.get(), rows, n_out);
      return 0;
    });
    dispatch_head(I.layout.loss, I.layout.output, [&](auto l, auto a) {
      launch(output_loss_kernel<T, decltype(l)::value, decltype(a)::value>, dim3(grid_for(rows)), dim3(kBlock), 0, s,
             I.act(last), static_cast<const T*>(I.yb.get()),
             V.weighted ? static_cast<const T*>(I.wb.get()) : nullptr, I.delta(last), rows, n_out, I.state.get(),
             I.scalar.get(), I.layout.loss_params, OutputParts<T>{});
      return 0;
    });
    FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(out + start * n_out, I.out_stage.get(),
                                        static_cast<size_t>(rows) * n_out * sizeof(double),
                                        cudaMemcpyDeviceToHost, s));
    FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));  // host's BatchState and the stage are reused
    if (stop.poll()) throw std::runtime_error("interrupted");
  }
  double row_loss = 0.0;
  FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(&row_loss, I.scalar.get(), sizeof(double), cudaMemcpyDeviceToHost, s));
  FUSEDMLP_CUDA_CHECK(cudaMemsetAsync(I.scalar.get(), 0, sizeof(double), s));
  const index_t n = I.layout.n_params;
  launch(sq_norm_kernel<T>, dim3(grid_for(n)), dim3(kBlock), 0, s, static_cast<const T*>(I.params.get()), n,
         I.table, I.scalar.get());
  double sq = 0.0;
  FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(&sq, I.scalar.get(), sizeof(double), cudaMemcpyDeviceToHost, s));
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
  return batch_loss(I.layout.loss, row_loss, V.sw_sum, n_out, alpha, sq);
}

template <class T>
EpochResult Trainer<T>::run_epoch(const index_t* order, index_t n_order, T* params_host,
                                  OptimizerState<T>& st, const EpochOptions& o,
                                  const StopCheck& should_stop) {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  check_trainable(I.layout.hidden);
  I.shadow_valid = false;  // (the epoch writes params)
  I.grad.resize(static_cast<size_t>(I.layout.n_params));  // (freed by end_training)
  if (I.n_rows == 0 && n_order > 0) throw std::logic_error("run_epoch: no training data loaded");
  if (n_order > I.n_rows) throw std::invalid_argument("run_epoch: the order is longer than the data");
  if (o.batch_size < 1) throw std::invalid_argument("run_epoch: batch_size must be >= 1");
  cudaStream_t s = I.work();
  const index_t bs = std::min(o.batch_size, std::max<index_t>(n_order, 1));
  EpochOptions opts = o;
  opts.batch_size = bs;
  const index_t n = I.layout.n_params;
  const bool resident = params_host == nullptr;
  if (resident && !(I.resident && I.resident_solver == o.solver))
    throw std::logic_error("run_epoch: no device-resident parameters for this solver (set_parameters)");
  I.ensure_rows(bs, true);
  I.ensure_split(bs);

  static_assert(sizeof(long long) == sizeof(index_t), "index types");
  if (n_order > 0)
    FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(I.order.get(), order, static_cast<size_t>(n_order) * sizeof(long long),
                                        cudaMemcpyHostToDevice, s));
  if (!resident) {
    I.resident = false;
    upload(I.params, params_host, static_cast<size_t>(n), s);
    I.upload_state(st, o.solver, s);
  }
  BatchState host{};
  host.n_order = n_order;
  host.batch = 0;
  host.t = st.t;
  host.batch_size = static_cast<int>(bs);
  host.lr = o.learning_rate;
  host.batch_lr = nullptr;
  if (o.batch_learning_rates != nullptr && n_order > 0) {
    upload(I.batch_lr, o.batch_learning_rates, static_cast<size_t>((n_order + bs - 1) / bs), s);
    host.batch_lr = I.batch_lr.get();
  }
  const size_t n_batches_total = n_order > 0 ? static_cast<size_t>((n_order + bs - 1) / bs) : 0;
  host.batch_loss = nullptr;
  if (o.batch_losses != nullptr && n_batches_total > 0) {
    I.batch_loss.resize(n_batches_total);
    host.batch_loss = I.batch_loss.get();
  }
  host.dropout_seed = static_cast<unsigned long long>(o.dropout_seed);
  host.dropout_epoch = static_cast<unsigned long long>(o.epoch);
  FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(I.state.get(), &host, sizeof host, cudaMemcpyHostToDevice, s));
  launch(sq_norm_kernel<T>, dim3(grid_for(n)), dim3(kBlock), 0, s, static_cast<const T*>(I.params.get()), n,
         I.table, &I.state.get()->sq);

  // The per-batch sequence, captured once and replayed: everything it depends on that is not
  // in the state is in the key.
  const std::vector<double> key = graph_key(opts);  // (the batch size as captured: clamped)
  const index_t n_batches = (n_order + bs - 1) / bs;
  index_t launched = 0;
  if (n_batches > 0 && (!I.graph.ready() || key != I.graph_key || I.data_where() != I.graph_data)) {
    // The epoch's first batch runs uncaptured: it loads every kernel of the sequence, which a
    // driver older than CUDA 12.3 cannot do lazily during a capture (CUDA_MODULE_LOADING=LAZY,
    // the default since 12.2).
    if (n_batches > 0) {
      I.enqueue_batch(opts, s);
      launched = 1;
    }
    cudaStream_t cap = I.own.get();  // capture needs a stream of our own
    if (cap != s) FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
    FUSEDMLP_CUDA_CHECK(cudaStreamBeginCapture(cap, cudaStreamCaptureModeThreadLocal));
    try {
      I.enqueue_batch(opts, cap);
    } catch (...) {
      cudaGraph_t discard = nullptr;
      cudaStreamEndCapture(cap, &discard);
      if (discard != nullptr) cudaGraphDestroy(discard);
      throw;
    }
    I.graph.end_capture(cap);
    I.graph_key = key;
    I.graph_data = I.data_where();
  }

  EpochResult result;
  auto last_poll = std::chrono::steady_clock::now();
  for (; launched < n_batches; ++launched) {
    if (should_stop && launched % 8 == 0 &&
        std::chrono::steady_clock::now() - last_poll > std::chrono::milliseconds(20)) {
      FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));  // what was launched has run
      last_poll = std::chrono::steady_clock::now();
      if (should_stop()) {
        result.interrupted = true;
        break;
      }
    }
    I.graph.launch(s);
  }
  FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(&host, I.state.get(), sizeof host, cudaMemcpyDeviceToHost, s));
  if (!resident) {
    download(params_host, I.params, static_cast<size_t>(n), s);
    I.download_state(st, o.solver, s);
  }
  if (host.batch_loss != nullptr) download(o.batch_losses, I.batch_loss, n_batches_total, s);
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
  st.t = host.t;
  result.accumulated_loss = host.epoch_loss;
  result.samples_seen = std::min<index_t>(static_cast<index_t>(host.batch) * bs, n_order);
  return result;
}

template <class T>
double Trainer<T>::loss_grad(const T* params_host, double alpha, T* grad_host,
                             const StopCheck& should_stop) {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  check_trainable(I.layout.hidden);
  I.shadow_valid = false;  // (until params are uploaded below)
  cpu::StopClock stop(should_stop);
  cudaStream_t s = I.work();
  const index_t n = I.layout.n_params, n_rows = I.n_rows;
  const index_t chunk = std::max<index_t>(std::min<index_t>(n_rows, kChunkRows), 1);
  I.ensure_rows(chunk, true);
  I.grad.resize(static_cast<size_t>(n));  // (freed by end_training)
  I.resident = false;
  // (sent from the shadow: the pass writes no parameter, so a prediction with the same values
  // uploads nothing)
  I.params_shadow.assign(params_host, params_host + n);
  upload(I.params, I.params_shadow.data(), static_cast<size_t>(n), s);
  I.shadow_valid = true;
  FUSEDMLP_CUDA_CHECK(cudaMemsetAsync(I.grad.get(), 0, static_cast<size_t>(n) * sizeof(T), s));
  FUSEDMLP_CUDA_CHECK(cudaMemsetAsync(I.scalar.get(), 0, sizeof(double), s));
  Impl::upload_identity(I.order, n_rows, s);
  double sw_sum = static_cast<double>(n_rows);
  if (I.weighted) {
    std::vector<T> w(static_cast<size_t>(n_rows));
    download(w.data(), I.w, w.size(), s);
    FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
    double total = 0.0;
    for (T v : w) total += static_cast<double>(v);
    sw_sum = total;
  }
  EpochOptions o;
  o.batch_size = chunk;
  const size_t last = I.layout.layers.size() - 1;
  const int n_out = static_cast<int>(I.layout.n_outputs());
  BatchState host{};
  for (index_t start = 0, b = 0; start < n_rows; start += chunk, ++b) {
    const int rows = static_cast<int>(std::min(chunk, n_rows - start));
    I.begin_chunk(host, n_rows, chunk, b, rows, s);
    I.gather(o, s);
    I.forward(rows, rows, I.pass(false), s);
    dispatch_head(I.layout.loss, I.layout.output, [&](auto l, auto a) {
      launch(output_loss_kernel<T, decltype(l)::value, decltype(a)::value>, dim3(grid_for(rows)), dim3(kBlock), 0, s,
             I.act(last),
             static_cast<const T*>(I.yb.get()), I.weighted ? static_cast<const T*>(I.wb.get()) : nullptr,
             I.delta(last), rows, n_out, I.state.get(), I.scalar.get(), I.layout.loss_params, OutputParts<T>{});
      return 0;
    });
    I.backward(rows, rows, false, T(0), start > 0, I.pass(false), s);
    FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));  // host's BatchState is reused next chunk
    if (stop.poll()) throw std::runtime_error("interrupted");
  }
  launch(finish_grad_kernel<T>, dim3(grid_for(n)), dim3(kBlock), 0, s, I.grad.get(),
         static_cast<const T*>(I.params.get()), n, I.table, static_cast<T>(alpha),
         static_cast<T>(1.0 / sw_sum));
  double row_loss = 0.0;
  FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(&row_loss, I.scalar.get(), sizeof(double), cudaMemcpyDeviceToHost, s));
  FUSEDMLP_CUDA_CHECK(cudaMemsetAsync(I.scalar.get(), 0, sizeof(double), s));
  launch(sq_norm_kernel<T>, dim3(grid_for(n)), dim3(kBlock), 0, s, static_cast<const T*>(I.params.get()), n,
         I.table, I.scalar.get());
  double sq = 0.0;
  FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(&sq, I.scalar.get(), sizeof(double), cudaMemcpyDeviceToHost, s));
  download(grad_host, I.grad, static_cast<size_t>(n), s);
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
  return batch_loss(I.layout.loss, row_loss, sw_sum, n_out, alpha, sq);
}

template <class T>
bool Trainer<T>::predict(const MatrixView& x, const T* params_host, double* out, bool out_on_device,
                         const StopCheck& should_stop) {
  Impl& I = *impl_;
  const DeviceScope scope(I.device);
  check_on_device(x, I.device);
  cpu::StopClock stop(should_stop);
  cudaStream_t s = I.work();
  if (x.cols != I.layout.n_inputs()) throw std::invalid_argument("X has the wrong number of features");
  const index_t n = I.layout.n_params, n_rows = x.rows;
  const index_t chunk = std::max<index_t>(std::min<index_t>(n_rows, kChunkRows), 1);
  const int n_out = static_cast<int>(I.layout.n_outputs());
  // Every buffer is the engine's and sized for a chunk, so a kept engine allocates nothing on
  // later calls of at most as many rows (and never more than a chunk's worth).
  I.ensure_rows(chunk, false);
  if (chunk > I.chunk_order_rows) {
    Impl::upload_identity(I.chunk_order, chunk, s);
    I.chunk_order_rows = chunk;
  }
  if (!out_on_device) I.out_stage.resize(static_cast<size_t>(chunk * n_out));
  I.resident = false;
  // the parameters go up only when they differ from what the last prediction uploaded (the
  // host's values, compared bit for bit: a model changed in place is seen)
  const std::size_t n_bytes = static_cast<std::size_t>(n) * sizeof(T);
  if (!(I.shadow_valid && I.params_shadow.size() == static_cast<std::size_t>(n) &&
        (n_bytes == 0 || std::memcmp(I.params_shadow.data(), params_host, n_bytes) == 0))) {
    I.shadow_valid = false;
    I.params_shadow.assign(params_host, params_host + n);
    upload(I.params, I.params_shadow.data(), static_cast<size_t>(n), s);  // (the compared values)
    I.shadow_valid = true;
  }
  const size_t last = I.layout.layers.size() - 1;
  const int d = static_cast<int>(I.layout.n_inputs());
  const std::size_t item = x.f32 ? 4 : 8;
  BatchState host{};
  for (index_t start = 0; start < n_rows; start += chunk) {
    const int rows = static_cast<int>(std::min(chunk, n_rows - start));
    // this chunk's rows of X on the device: in place, or copied from the host
    MatrixView dx = x;
    dx.rows = rows;
    dx.data = static_cast<const char*>(x.data) + static_cast<std::size_t>(start * x.rs) * item;
    if (!x.on_device) {
      const std::size_t bytes = span_bytes(dx);
      I.x_stage.resize(bytes);
      if (bytes != 0)
        FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(I.x_stage.get(), dx.data, bytes, cudaMemcpyHostToDevice, s));
      dx.data = I.x_stage.get();
    }
    I.begin_chunk(host, rows, chunk, 0, rows, s);
    auto convert = [&](auto tag) {
      using S = decltype(tag);
      launch(gather_kernel<T, S>, dim3(grid_for(static_cast<long long>(chunk) * d)), dim3(kBlock), 0, s,
             static_cast<const S*>(dx.data), static_cast<long long>(dx.rs), static_cast<long long>(dx.cs), d,
             static_cast<const T*>(nullptr), 0, static_cast<const T*>(nullptr),
             static_cast<const long long*>(I.chunk_order.get()), I.state.get(), I.xb.get(), I.yb.get(),
             I.wb.get(), BatchSetup{});
    };
    if (dx.f32)
      convert(float{});
    else
      convert(double{});
    I.forward(rows, rows, typename Impl::Pass{}, s);
    double* target = out_on_device ? out + start * n_out : I.out_stage.get();
    dispatch_output(I.layout.loss, I.layout.output, [&](auto a) {
      launch(output_activation_kernel<T, decltype(a)::value>, dim3(grid_for(rows)), dim3(kBlock), 0, s,
             static_cast<const T*>(I.act(last)), target, rows, n_out);
      return 0;
    });
    if (!out_on_device)
      FUSEDMLP_CUDA_CHECK(cudaMemcpyAsync(out + start * n_out, I.out_stage.get(),
                                          static_cast<size_t>(rows) * n_out * sizeof(double),
                                          cudaMemcpyDeviceToHost, s));
    // the host's BatchState and the staging buffers are reused by the next chunk
    FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
    if (stop.poll()) return false;
  }
  return true;
}

template <class T>
void test_gemm(index_t m, index_t n, index_t k, const T* a, index_t a_rs, index_t a_cs, const T* b,
               index_t b_rs, index_t b_cs, T* c, int epilogue, Activation act, const T* bias,
               const T* aux, T alpha, T scale, T* colsum, bool accumulate, int splits) {
  Stream stream;
  cudaStream_t s = stream.get();
  auto span = [](index_t rows, index_t cols, index_t rs, index_t cs) {
    return rows == 0 || cols == 0 ? index_t(0) : (rows - 1) * rs + (cols - 1) * cs + 1;
  };
  DeviceBuffer<T> da, db, dc, dbias, daux, dcol;
  upload(da, a, static_cast<size_t>(span(m, k, a_rs, a_cs)), s);
  upload(db, b, static_cast<size_t>(span(k, n, b_rs, b_cs)), s);
  upload(dc, c, static_cast<size_t>(m * n), s);
  if (bias != nullptr) upload(dbias, bias, static_cast<size_t>(n), s);
  if (aux != nullptr) upload(daux, aux, static_cast<size_t>(m * n), s);
  if (colsum != nullptr) upload(dcol, colsum, static_cast<size_t>(n), s);
  GemmArgs<T> g{};
  g.m = static_cast<int>(m);
  g.n = static_cast<int>(n);
  g.k = static_cast<int>(k);
  g.a = Mat<T>{da.get(), a_rs, a_cs};
  g.b = Mat<T>{db.get(), b_rs, b_cs};
  g.c = dc.get();
  g.ldc = n;
  g.bias = dbias.get();
  g.aux = daux.get();
  g.ld_aux = n;
  g.alpha = alpha;
  g.scale = scale;
  g.colsum = colsum != nullptr ? dcol.get() : nullptr;
  g.accumulate = accumulate;
  if (splits < 1 || splits > kMaxSplits)
    throw std::invalid_argument("gemm: splits must be between 1 and " + std::to_string(kMaxSplits));
  DeviceBuffer<T> part;
  if (splits > 1) {
    part.resize(static_cast<size_t>(gemm_split_elems(splits, m, n)));
    g.splits = splits;
    g.part = part.get();
    g.part_stride = m * n;
  }
  gemm<T>(g, static_cast<Epi>(epilogue), act, g.m, s);
  download(c, dc, static_cast<size_t>(m * n), s);
  if (colsum != nullptr) download(colsum, dcol, static_cast<size_t>(n), s);
  FUSEDMLP_CUDA_CHECK(cudaStreamSynchronize(s));
}

template class Trainer<float>;
template class Trainer<double>;
template void test_gemm<float>(index_t, index_t, index_t, const float*, index_t, index_t, const float*,
                               index_t, index_t, float*, int, Activation, const float*, const float*,
                               float, float, float*, bool, int);
template void test_gemm<double>(index_t, index_t, index_t, const double*, index_t, index_t, const double*,
                                index_t, index_t, double*, int, Activation, const double*, const double*,
                                double, double, double*, bool, int);

}  // namespace cuda
}  // namespace fusedmlp
