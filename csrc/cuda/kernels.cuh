// CUDA kernels of the engine, with their launchers. The math (activations, losses, optimizer
// steps) comes from csrc/include/fusedmlp/, shared with the CPU engine.
//
// Sections: per-batch device state; the tiled GEMM with fused epilogues; batch gathering and
// setup; the fused output loss; the optimizer; the fully fused forward pass for narrow
// networks; prediction output.
//
// Kernels that run inside the captured per-batch graph read what changes from batch to batch
// (the batch index, its row count, its weight sum, Adam's step) from a BatchState in device
// memory, never from their arguments, which the graph fixes at capture.
#pragma once

#include <cstdint>

#include "cuda/launch.cuh"
#include "fusedmlp/activation.h"
#include "fusedmlp/dropout.h"
#include "fusedmlp/loss.h"
#include "fusedmlp/network.h"
#include "fusedmlp/optimizer.h"

namespace fusedmlp {
namespace cuda {

// ---- per-batch state ----------------------------------------------------------------------------

struct BatchState {
  long long n_order;    // rows in this epoch's order
  long long batch;      // index of the current batch
  long long t;          // Adam steps taken
  int batch_size;
  int rows;             // rows of the current batch
  double sw_sum;        // sum of the batch's sample weights (its row count when unweighted)
  double inv_sw;        // 1 / sw_sum
  double row_loss;      // summed weighted per-sample losses of the batch
  double sq;            // ||W||^2 of the weights the batch starts from
  double sq_next;       // ||W_new||^2, summed by the optimizer
  double epoch_loss;    // sum over batches of batch loss * rows
  double lr;            // sgd: the learning rate; adam: learning_rate_init
  const double* batch_lr;  // a schedule's per-batch rates (device memory), or null: lr throughout
  double* batch_loss;      // each batch's loss (device memory), or null
  double lr_t;          // adam: the step size of the current step
  unsigned long long dropout_seed;   // dropout's masks: (seed, epoch, batch, layer, row, unit)
  unsigned long long dropout_epoch;
};

// The dropout key of `layer` in the current batch.
__device__ inline std::uint64_t batch_dropout_key(const BatchState* st, int layer) {
  return dropout_key(st->dropout_seed, st->dropout_epoch, static_cast<std::uint64_t>(st->batch), layer);
}

// Layer boundaries in the flat parameter buffer, passed by value.
constexpr int kMaxLayers = 32;
struct LayerTable {
  int n_layers;
  long long w_offset[kMaxLayers];
  long long b_offset[kMaxLayers];
  int fan_in[kMaxLayers];
  int fan_out[kMaxLayers];
};

// element (i, p) = data[i * rs + p * cs]
template <class T>
struct Mat {
  const T* data;
  long long rs, cs;
};

constexpr int kBlock = 256;  // threads of the element-wise kernels

// Blocks for a grid-stride loop over n elements. The simulator runs blocks one after another,
// each with a thread per CUDA thread, so there the loops take fewer, longer blocks (the kernels
// are the same; any grid size is correct for a grid-stride loop).
inline unsigned grid_for(long long n, int per_block = kBlock,
                         unsigned cap = FUSEDMLP_CUDA_SIMULATED ? 4 : 4096) {
  long long blocks = (n + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < cap ? blocks : cap);
}

// ---- GEMM with fused epilogues ------------------------------------------------------------------
//
// C (m x n) := epilogue(A (m x k) B (k x n) [+ C]). A 64 x 64 tile of C per block of 128
// threads, each thread an 8 x 4 register tile; A and B staged through double-buffered shared
// memory in 16-deep slices. Epilogues as in the CPU engine (cpu/gemm/gemm.h): bias + activation
// (forward), L2 term and batch scale (weight gradient), activation derivative from the stored
// outputs (data gradient); the blocks of the first row of tiles also sum B's columns (the bias
// gradient when B = dZ). Row tiles run along grid.x, column tiles along grid.y.
//
// Split-k: a batch of 200 rows makes too few tiles to fill a GPU (the first layer of a
// 784-300-100-10 network: 20 tiles of C against 100+ SMs), so the trainer's per-batch GEMMs may
// split k among `splits` blocks per tile (grid.z). Each block then writes its raw partial sums
// (and its share of the column sum) to a workspace, and split_reduce_kernel adds the parts in a
// fixed order (the result does not depend on the blocks' timing) and applies the epilogue.

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kThreadM = 8, kThreadN = 4;
constexpr int kGemmThreads = (kTileM / kThreadM) * (kTileN / kThreadN);  // 128
constexpr int kStageA = kTileM * kTileK / kGemmThreads;  // elements of a slice each thread stages
constexpr int kStageB = kTileK * kTileN / kGemmThreads;
static_assert(kStageA * kGemmThreads == kTileM * kTileK && kStageB * kGemmThreads == kTileK * kTileN,
              "every thread stages the same number of elements");

enum class Epi : int { none = 0, bias_activation = 1, weight_grad = 2, activation_grad = 3 };

template <class T>
struct GemmArgs {
  int m, n, k;
  int rows_dim;  // 1: m is the batch's row count, 2: k is, 0: neither (read from state->rows)
  const BatchState* state;
  Mat<T> a, b;
  T* c;
  long long ldc;
  const T* bias;     // bias_activation
  const T* aux;      // weight_grad: W; activation_grad: stored outputs; same shape as C
  long long ld_aux;
  T alpha;           // weight_grad: C = (AB + alpha W) * scale
  T scale;           // used when batch_scale is false
  bool batch_scale;  // scale = 1 / the batch's weight sum (state->inv_sw)
  T* colsum;         // optional: colsum[j] (+)= scale * sum_p B(p, j)
  bool accumulate;   // C += ..., colsum += ...
  // bias_activation, activation_grad: the activation's parameter, where z goes (forward) and
  // the dropout mask of hidden layer `layer` (its key is read from the state per batch)
  HiddenUnits<T> hidden;
  int layer;
  bool aux_is_pre;   // activation_grad: aux holds z, not a
  // split-k (splits > 1): part holds splits slices of part_stride elements (row r, column c of
  // slice z at z * part_stride + r * n + c), then splits column sums of n elements
  int splits;
  T* part;
  long long part_stride;
  bool defer_reduce;  // the parts are summed by the caller's next kernel (the output loss)
};

// Split-k: how many blocks share the k of each tile so that a GEMM of `tiles` tiles keeps
// about two blocks on each of `sms` multiprocessors, each block at least kSplitMinK deep.
constexpr int kSplitMinK = 2 * 16, kMaxSplits = 16;
inline int gemm_splits(long long tiles, long long k, int sms) {
  if (sms <= 0 || tiles <= 0 || tiles >= sms) return 1;
  long long s = (2LL * sms + tiles - 1) / tiles;
  if (s > k / kSplitMinK) s = k / kSplitMinK;
  if (s > kMaxSplits) s = kMaxSplits;
  return s < 1 ? 1 : static_cast<int>(s);
}
inline long long gemm_tiles(long long m, long long n) {
  return ((m + kTileM - 1) / kTileM) * ((n + kTileN - 1) / kTileN);
}
// Workspace elements of a split GEMM with at most max_m rows.
inline long long gemm_split_elems(int splits, long long max_m, long long n) {
  return splits > 1 ? splits * (max_m * n + n) : 0;
}

// C(r, c) from its sum v over k: the accumulation into C and the epilogue.
template <class T, Epi E, Activation A>
__device__ __forceinline__ T epilogue_value(const GemmArgs<T>& g, const HiddenUnits<T>& hidden, T scale,
                                            int r, int c, T v) {
  if (g.accumulate) v += g.c[r * g.ldc + c];
  if constexpr (E == Epi::bias_activation) {
    const T z = v + g.bias[c];
    if (hidden.pre != nullptr) hidden.pre[r * hidden.ld_pre + c] = z;
    v = activate<A>(z, hidden.param);
    if (hidden.dropout()) v *= hidden.mask(r, c);
  } else if constexpr (E == Epi::weight_grad) {
    v = l2_grad(v, g.alpha, g.aux[r * g.ld_aux + c], scale);
  } else if constexpr (E == Epi::activation_grad) {
    const T stored = g.aux[r * g.ld_aux + c];
    if (g.aux_is_pre)
      v = backprop_activation_from_input<A>(hidden.dropout() ? v * hidden.mask(r, c) : v, stored,
                                            hidden.param);
    else
      v = backprop_activation<A>(v, stored, hidden.param);
  }
  return v;
}

// What every write-back needs from the batch's state: the weight gradient's scale and the
// dropout key of this batch.
template <class T>
__device__ __forceinline__ T epilogue_scale(const GemmArgs<T>& g) {
  return g.batch_scale ? static_cast<T>(g.state->inv_sw) : g.scale;
}
template <class T>
__device__ __forceinline__ HiddenUnits<T> epilogue_hidden(const GemmArgs<T>& g) {
  HiddenUnits<T> hidden = g.hidden;
  if (hidden.dropout()) hidden.key = batch_dropout_key(g.state, g.layer);
  return hidden;
}

template <class T, Epi E, Activation A>
__global__ void __launch_bounds__(kGemmThreads) gemm_kernel(GemmArgs<T> g) {
  __shared__ T As[2][kTileK][kTileM + 1];  // A tiles, transposed: As[buffer][p][i]
  __shared__ T Bs[2][kTileK][kTileN];
  const int m = g.rows_dim == 1 ? g.state->rows : g.m;
  const int k = g.rows_dim == 2 ? g.state->rows : g.k;
  const int n = g.n;
  const int row0 = static_cast<int>(blockIdx.x) * kTileM;  // row tiles on x: a batch may be long
  const int col0 = static_cast<int>(blockIdx.y) * kTileN;
  if (row0 >= m) return;  // the whole block: tiles past a short batch
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % (kTileN / kThreadN);  // along n
  const int ty = tid / (kTileN / kThreadN);  // along m
  const bool sum_columns = g.colsum != nullptr && blockIdx.x == 0;
  // this block's share of k: split z of gridDim.z takes the 16-deep slices [z S / Z, (z+1) S / Z)
  // of the S slices, as even as whole slices allow (a share with no slice, when a short batch's
  // k has fewer slices than splits, writes zeros)
  const bool split = gridDim.z > 1;
  int k_begin = 0, k_end = k;
  if (split) {
    const int slices = (k + kTileK - 1) / kTileK;
    const int z = static_cast<int>(blockIdx.z), zs = static_cast<int>(gridDim.z);
    k_begin = z * slices / zs * kTileK;
    const int end = (z + 1) * slices / zs * kTileK;
    k_end = end < k ? end : k;
  }

  // acc, a_frag and b_frag stay in registers: every loop over them is unrolled
  T acc[kThreadM][kThreadN];
  FUSEDMLP_UNROLL
  for (int i = 0; i < kThreadM; ++i) {
    FUSEDMLP_UNROLL
    for (int j = 0; j < kThreadN; ++j) acc[i][j] = T(0);
  }
  T col_acc = T(0);  // threads tid < kTileN: the column sum of column col0 + tid

  // Double-buffered staging: the next slices' elements are loaded from global memory into
  // registers (a_next, b_next) while the current ones are multiplied from shared memory, then
  // stored into the other buffer, which every thread finished reading before the last barrier;
  // one barrier per slice. Consecutive threads walk each operand's contiguous dimension.
  const bool a_row_major = g.a.cs == 1;
  const bool b_row_major = g.b.cs == 1;
  T a_next[kStageA], b_next[kStageB];
  auto load = [&](int k0) {
    FUSEDMLP_UNROLL
    for (int s = 0; s < kStageA; ++s) {
      const int l = tid + s * kGemmThreads;
      const int i = a_row_major ? l / kTileK : l % kTileM;
      const int p = a_row_major ? l % kTileK : l / kTileM;
      const int r = row0 + i, q = k0 + p;
      a_next[s] = (r < m && q < k_end) ? g.a.data[r * g.a.rs + q * g.a.cs] : T(0);
    }
    FUSEDMLP_UNROLL
    for (int s = 0; s < kStageB; ++s) {
      const int l = tid + s * kGemmThreads;
      const int p = b_row_major ? l / kTileN : l % kTileK;
      const int j = b_row_major ? l % kTileN : l / kTileK;
      const int q = k0 + p, c = col0 + j;
      b_next[s] = (q < k_end && c < n) ? g.b.data[q * g.b.rs + c * g.b.cs] : T(0);
    }
  };
  auto store = [&](int buf) {
    FUSEDMLP_UNROLL
    for (int s = 0; s < kStageA; ++s) {
      const int l = tid + s * kGemmThreads;
      As[buf][a_row_major ? l % kTileK : l / kTileM][a_row_major ? l / kTileK : l % kTileM] = a_next[s];
    }
    FUSEDMLP_UNROLL
    for (int s = 0; s < kStageB; ++s) {
      const int l = tid + s * kGemmThreads;
      Bs[buf][b_row_major ? l / kTileN : l % kTileK][b_row_major ? l % kTileN : l / kTileK] = b_next[s];
    }
  };
  if (k_begin < k_end) {
    load(k_begin);
    store(0);
  }
  __syncthreads();
  int buf = 0;
  for (int k0 = k_begin; k0 < k_end; k0 += kTileK) {
    const bool more = k0 + kTileK < k_end;
    if (more) load(k0 + kTileK);  // in flight while this slice is multiplied
    if (sum_columns && tid < kTileN)
      for (int p = 0; p < kTileK; ++p) col_acc += Bs[buf][p][tid];
    FUSEDMLP_UNROLL
    for (int p = 0; p < kTileK; ++p) {
      T a_frag[kThreadM], b_frag[kThreadN];
      FUSEDMLP_UNROLL
      for (int i = 0; i < kThreadM; ++i) a_frag[i] = As[buf][p][ty * kThreadM + i];
      FUSEDMLP_UNROLL
      for (int j = 0; j < kThreadN; ++j) b_frag[j] = Bs[buf][p][tx * kThreadN + j];
      FUSEDMLP_UNROLL
      for (int i = 0; i < kThreadM; ++i) {
        FUSEDMLP_UNROLL
        for (int j = 0; j < kThreadN; ++j) acc[i][j] += a_frag[i] * b_frag[j];
      }
    }
    if (more) store(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }

  // A split block stores its raw partial sums (split_reduce_kernel finishes them); any other
  // applies the epilogue. Unrolled like the loops above, edges masked rather than left by a
  // break: an epilogue with a long activation (tanh, expm1, erf) is otherwise kept rolled, and
  // acc[i][j] with it.
  const T scale = split ? T(1) : epilogue_scale(g);
  const HiddenUnits<T> hidden = split ? g.hidden : epilogue_hidden(g);
  T* part = split ? g.part + static_cast<long long>(blockIdx.z) * g.part_stride : nullptr;
  FUSEDMLP_UNROLL
  for (int i = 0; i < kThreadM; ++i) {
    const int r = row0 + ty * kThreadM + i;
    FUSEDMLP_UNROLL
    for (int j = 0; j < kThreadN; ++j) {
      const int c = col0 + tx * kThreadN + j;
      if (r >= m || c >= n) continue;
      if (split)
        part[static_cast<long long>(r) * n + c] = acc[i][j];
      else
        g.c[r * g.ldc + c] = epilogue_value<T, E, A>(g, hidden, scale, r, c, acc[i][j]);
    }
  }
  if (sum_columns && tid < kTileN && col0 + tid < n) {
    if (split) {
      g.part[g.splits * g.part_stride + static_cast<long long>(blockIdx.z) * n + col0 + tid] = col_acc;
    } else {
      T* out = g.colsum + col0 + tid;
      *out = (g.accumulate ? *out : T(0)) + scale * col_acc;
    }
  }
}

// The second half of a split GEMM: C from the sum of the parts, in split order, through the
// epilogue; the column sum likewise.
template <class T, Epi E, Activation A>
__global__ void split_reduce_kernel(GemmArgs<T> g) {
  const int m = g.rows_dim == 1 ? g.state->rows : g.m;
  const int n = g.n;
  const T scale = epilogue_scale(g);
  const HiddenUnits<T> hidden = epilogue_hidden(g);
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const long long elems = static_cast<long long>(m) * n;
  for (long long e = first; e < elems; e += stride) {
    T v = g.part[e];
    for (int z = 1; z < g.splits; ++z) v += g.part[z * g.part_stride + e];
    const int r = static_cast<int>(e / n), c = static_cast<int>(e % n);
    g.c[r * g.ldc + c] = epilogue_value<T, E, A>(g, hidden, scale, r, c, v);
  }
  if (g.colsum == nullptr) return;
  const T* col_parts = g.part + g.splits * g.part_stride;
  for (long long c = first; c < n; c += stride) {
    T v = col_parts[c];
    for (int z = 1; z < g.splits; ++z) v += col_parts[z * n + c];
    g.colsum[c] = (g.accumulate ? g.colsum[c] : T(0)) + scale * v;
  }
}

template <class T, Epi E, Activation A>
void gemm_launch(const GemmArgs<T>& g, int max_m, cudaStream_t stream) {
  const int splits = g.splits > 1 && g.part != nullptr ? g.splits : 1;
  const dim3 grid(static_cast<unsigned>((max_m + kTileM - 1) / kTileM),
                  static_cast<unsigned>((g.n + kTileN - 1) / kTileN), static_cast<unsigned>(splits));
  launch(gemm_kernel<T, E, A>, grid, dim3(kGemmThreads), 0, stream, g);
  if (splits > 1 && !g.defer_reduce)
    launch(split_reduce_kernel<T, E, A>, dim3(grid_for(static_cast<long long>(max_m) * g.n)), dim3(kBlock), 0,
           stream, g);
}

// The one switch from the runtime epilogue and activation to the kernel's template arguments.
template <class T>
void gemm(const GemmArgs<T>& g, Epi epi, Activation act, int max_m, cudaStream_t stream) {
  if (g.n <= 0 || max_m <= 0) return;
  switch (epi) {
    case Epi::none:
      return gemm_launch<T, Epi::none, Activation::identity>(g, max_m, stream);
    case Epi::weight_grad:
      return gemm_launch<T, Epi::weight_grad, Activation::identity>(g, max_m, stream);
    case Epi::bias_activation:
      return dispatch_hidden_activation(act, [&](auto a) {
        return gemm_launch<T, Epi::bias_activation, decltype(a)::value>(g, max_m, stream);
      });
    case Epi::activation_grad:
      return dispatch_hidden_activation(act, [&](auto a) {
        return gemm_launch<T, Epi::activation_grad, decltype(a)::value>(g, max_m, stream);
      });
  }
  throw std::invalid_argument("gemm: unknown epilogue");
}

// ---- block reductions ---------------------------------------------------------------------------

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T warp_sums[32];
  for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = static_cast<int>(threadIdx.x) % warpSize;
  const int warp = static_cast<int>(threadIdx.x) / warpSize;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  const int n_warps = static_cast<int>(blockDim.x) / warpSize;
  T total = T(0);
  for (int w = 0; w < n_warps; ++w) total += warp_sums[w];
  __syncthreads();  // warp_sums is reused by the next call
  return total;
}

// ---- batches ------------------------------------------------------------------------------------

// A training batch's set-up, done by the gather's first block: the batch's row count, weight sum
// and the optimizer's step size into the state.
struct BatchSetup {
  bool on;  // false: a gather without set-up (validation and prediction chunks)
  bool adam;
  double beta_1, beta_2;
};

template <class T>
__device__ void batch_setup(BatchState* st, const T* w, const long long* order, long long start, int rows,
                            const BatchSetup& setup) {
  double s = 0.0;
  if (w != nullptr) {  // the weights in the batch's order, as they are gathered
    T part = T(0);
    for (int r = static_cast<int>(threadIdx.x); r < rows; r += static_cast<int>(blockDim.x))
      part += w[order[start + r]];
    s = static_cast<double>(block_sum<T>(part));
  } else {
    s = static_cast<double>(rows);
  }
  if (threadIdx.x == 0) {
    st->rows = rows;
    st->sw_sum = s;
    st->inv_sw = 1.0 / s;
    st->row_loss = 0.0;
    st->sq_next = 0.0;
    if (st->batch_lr != nullptr) st->lr = st->batch_lr[st->batch];
    if (setup.adam) st->lr_t = adam_lr_t(st->lr, setup.beta_1, setup.beta_2, st->t + 1);
  }
}

// The current batch's rows of X (converted to T), Y and the sample weights, by the order; with
// setup.on, the first block also sets the batch up (one launch instead of two per batch; the
// other blocks read only what the set-up leaves alone: the batch index, its size, the order's
// length).
template <class T, class S>
__global__ void gather_kernel(const S* x, long long x_rs, long long x_cs, int d, const T* y,
                              int n_out, const T* w, const long long* order, BatchState* st,
                              T* xb, T* yb, T* wb, BatchSetup setup) {
  const long long start = st->batch * st->batch_size;
  const long long left = st->n_order - start;
  const int rows = static_cast<int>(left < st->batch_size ? left : st->batch_size);
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (long long e = first; e < static_cast<long long>(rows) * d; e += stride) {
    const long long r = e / d, c = e % d;
    xb[e] = static_cast<T>(x[order[start + r] * x_rs + c * x_cs]);
  }
  for (long long e = first; e < static_cast<long long>(rows) * n_out; e += stride) {
    const long long r = e / n_out, c = e % n_out;
    yb[e] = y[order[start + r] * n_out + c];
  }
  if (w != nullptr)
    for (long long r = first; r < rows; r += stride) wb[r] = w[order[start + r]];
  if (setup.on && blockIdx.x == 0) batch_setup(st, w, order, start, rows, setup);
}

// One thread: the batch loss into the epoch's, then on to the next batch.
template <Loss L>
__global__ void batch_finish_kernel(BatchState* st, int n_out, double alpha, bool adam) {
  const double loss = batch_loss<L>(st->row_loss, st->sw_sum, n_out, alpha, st->sq);
  if (st->batch_loss != nullptr) st->batch_loss[st->batch] = loss;
  st->epoch_loss += loss * st->rows;
  st->sq = st->sq_next;
  st->batch += 1;
  if (adam) st->t += 1;
}

// ---- output loss --------------------------------------------------------------------------------

// Rows in a grid-stride loop: z becomes the head's output activation, delta = d loss / d z
// (times the weight; loss.h); the block's losses are summed into state->row_loss (or
// *loss_sum). rows < 0: the batch's row count from the state. With parts (the output layer's
// split-k partial sums, OutputParts), each row's z is first summed from them and its bias
// added, in split_reduce_kernel's order: the reduction and the loss in one launch.
template <class T>
struct OutputParts {
  const T* part = nullptr;  // null: z is already there
  int splits = 1;
  long long stride = 0;
  const T* bias = nullptr;
};

template <class T, Loss L, Activation A>
__global__ void output_loss_kernel(T* z, const T* y, const T* w, T* delta, int rows, int n_out,
                                   BatchState* st, double* loss_sum, LossParams params,
                                   OutputParts<T> parts) {
  const int n = rows < 0 ? st->rows : rows;
  const int stride = static_cast<int>(gridDim.x * blockDim.x);
  double l = 0.0;
  for (int r = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); r < n; r += stride) {
    if (parts.part != nullptr)
      for (int c = 0; c < n_out; ++c) {
        const long long e = static_cast<long long>(r) * n_out + c;
        T v = parts.part[e];
        for (int k = 1; k < parts.splits; ++k) v += parts.part[k * parts.stride + e];
        z[e] = v + parts.bias[c];
      }
    l += output_loss_grad_row<L, A, T>(z + static_cast<long long>(r) * n_out, y + static_cast<long long>(r) * n_out,
                                       w != nullptr ? w[r] : T(1), w != nullptr,
                                       delta + static_cast<long long>(r) * n_out, n_out, params);
  }
  const double total = block_sum<double>(l);
  if (threadIdx.x == 0) atomicAdd(loss_sum != nullptr ? loss_sum : &st->row_loss, total);
}

// ---- optimizer ----------------------------------------------------------------------------------

FUSEDMLP_HD bool is_weight(const LayerTable& layers, long long i) {
  for (int l = 0; l < layers.n_layers; ++l)
    if (i >= layers.w_offset[l] && i < layers.b_offset[l]) return true;
  return false;
}

// One step over the whole flat buffer; ||W_new||^2 into state->sq_next.
template <class T, Solver S>
__global__ void optimizer_kernel(T* params, const T* grad, T* s0, T* s1, long long n,
                                 LayerTable layers, BatchState* st, double momentum, bool nesterov,
                                 double beta_1, double beta_2, double epsilon) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  double sq = 0.0;
  SgdStep<T> sgd{static_cast<T>(st->lr), static_cast<T>(momentum), nesterov};
  AdamStep<T> adam{static_cast<T>(beta_1), static_cast<T>(1.0 - beta_1), static_cast<T>(beta_2),
                   static_cast<T>(1.0 - beta_2), static_cast<T>(st->lr_t), static_cast<T>(epsilon)};
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    if constexpr (S == Solver::adam)
      adam_step(params[i], s0[i], s1[i], grad[i], adam);
    else
      sgd_step(params[i], s0[i], grad[i], sgd);
    if (is_weight(layers, i)) sq += static_cast<double>(params[i]) * static_cast<double>(params[i]);
  }
  const double total = block_sum<double>(sq);
  if (threadIdx.x == 0) atomicAdd(&st->sq_next, total);
}

// ||W||^2 into *out (the loss's L2 term for the first batch of an epoch).
template <class T>
__global__ void sq_norm_kernel(const T* params, long long n, LayerTable layers, double* out) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  double sq = 0.0;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    if (is_weight(layers, i)) sq += static_cast<double>(params[i]) * static_cast<double>(params[i]);
  const double total = block_sum<double>(sq);
  if (threadIdx.x == 0) atomicAdd(out, total);
}

// The full-batch gradient's last step: dW = (dW + alpha W) * scale, db *= scale.
template <class T>
__global__ void finish_grad_kernel(T* grad, const T* params, long long n, LayerTable layers,
                                   T alpha, T scale) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    grad[i] = is_weight(layers, i) ? l2_grad(grad[i], alpha, params[i], scale) : grad[i] * scale;
}

// ---- fully fused forward pass for narrow networks -----------------------------------------------
//
// Every layer at most kNarrow wide (the input too): a block keeps kFusedRows rows in shared
// memory through all layers, reading each layer's weights once per block from global memory
// (coalesced along the output units) and writing each layer's outputs out for the backward
// pass. One launch replaces a GEMM per layer.

constexpr int kNarrow = 128;
constexpr int kFusedThreads = 128;
template <class T>
constexpr int fused_rows() {  // 33 KB of shared memory in either precision
  return sizeof(T) == 4 ? 32 : 16;
}

// The per-layer buffers of the fused kernel, passed by value: outputs, and in training the
// pre-activations (null: not kept) and each hidden layer's dropout (threshold 0: none).
template <class T>
struct OutputTable {
  T* out[kMaxLayers];
  T* pre[kMaxLayers];
  std::uint32_t threshold[kMaxLayers];
  T keep_scale[kMaxLayers];
  T param;  // the hidden activation's parameter
};

template <class T, Activation A>
__global__ void __launch_bounds__(kFusedThreads)
    fused_forward_kernel(const T* x, int ldx, const T* params, LayerTable layers, OutputTable<T> outs,
                         int rows, const BatchState* st) {
  constexpr int kFusedRows = fused_rows<T>();
  __shared__ T buf[2][kFusedRows][kNarrow + 1];
  const int n = rows < 0 ? st->rows : rows;
  const int r0 = static_cast<int>(blockIdx.x) * kFusedRows;
  if (r0 >= n) return;
  const int tid = static_cast<int>(threadIdx.x);
  const int d = layers.fan_in[0];
  for (int e = tid; e < kFusedRows * d; e += kFusedThreads) {
    const int r = e / d, c = e % d;
    buf[0][r][c] = r0 + r < n ? x[static_cast<long long>(r0 + r) * ldx + c] : T(0);
  }
  __syncthreads();
  int cur = 0;
  for (int l = 0; l < layers.n_layers; ++l) {
    const int fan_in = layers.fan_in[l], fan_out = layers.fan_out[l];
    const T* w = params + layers.w_offset[l];
    const T* b = params + layers.b_offset[l];
    const bool last = l + 1 == layers.n_layers;
    T* out = outs.out[l];
    for (int e = tid; e < kFusedRows * fan_out; e += kFusedThreads) {
      const int r = e / fan_out, j = e % fan_out;
      T s = b[j];
      for (int p = 0; p < fan_in; ++p) s += buf[cur][r][p] * w[p * fan_out + j];
      if (!last) {
        if (outs.pre[l] != nullptr && r0 + r < n) outs.pre[l][static_cast<long long>(r0 + r) * fan_out + j] = s;
        s = activate<A>(s, outs.param);
        if (outs.threshold[l] != 0) {
          HiddenUnits<T> h;
          h.key = batch_dropout_key(st, l);
          h.threshold = outs.threshold[l];
          h.keep_scale = outs.keep_scale[l];
          s *= h.mask(r0 + r, j);
        }
      }
      buf[1 - cur][r][j] = s;
      if (r0 + r < n) out[static_cast<long long>(r0 + r) * fan_out + j] = s;
    }
    __syncthreads();
    cur = 1 - cur;
  }
}

// ---- prediction output --------------------------------------------------------------------------

// out (float64) = output activation of z, rows in a grid-stride loop.
template <class T, Activation A>
__global__ void output_activation_kernel(const T* z, double* out, int rows, int n_out) {
  const int stride = static_cast<int>(gridDim.x * blockDim.x);
  for (int r = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); r < rows; r += stride) {
    double* o = out + static_cast<long long>(r) * n_out;
    for (int j = 0; j < n_out; ++j) o[j] = static_cast<double>(z[static_cast<long long>(r) * n_out + j]);
    output_activation_row<A, double>(o, n_out);
  }
}

// *not_finite becomes 1 when any element of a strided matrix is NaN or infinite.
template <class S>
__global__ void finite_kernel(const S* x, long long rows, long long cols, long long rs, long long cs,
                              int* not_finite) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  bool ok = true;
  for (long long e = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; e < rows * cols; e += stride) {
    const S v = x[(e / cols) * rs + (e % cols) * cs];
    ok = ok && (v - v == v - v);  // false for NaN and infinities
  }
  if (!ok) atomicMax(not_finite, 1);
}

}  // namespace cuda
}  // namespace fusedmlp
