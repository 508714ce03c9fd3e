// The CPU trainer (see trainer.h). Python never loops over mini-batches: this file does.
#include "cpu/trainer.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "cpu/denormals.h"
#include "cpu/threads.h"
#include "fusedmlp/loss.h"

namespace fusedmlp {
namespace cpu {

namespace {

// Rows per chunk for the whole-data passes (prediction, L-BFGS): large enough to keep the
// GEMMs efficient, small enough to bound the activation memory.
index_t chunk_rows(const NetworkLayout& layout, index_t n_rows) {
  const index_t per_row = layout.activation_width() * 2 + layout.n_inputs();
  index_t rows = (index_t(8) << 20) / std::max<index_t>(per_row, 1);  // ~8M elements
  rows = std::clamp<index_t>(rows, 64, 4096);
  return std::min(rows, std::max<index_t>(n_rows, 1));
}

// Row-block mode: a batch splits into blocks of about kBlockRows rows, an even number of them
// when more than one, for networks of at most kRowBlockParams parameters (whose per-block
// gradients stay small). Each half of the batch (its first rows / 2 rows, and the rest) holds
// half of the blocks, whose numbers of micro-kernel row panels (`mr` rows) differ by at
// most one: each block starts a whole number of panels after its half's start, so each half
// has one short edge panel at most, in its last block. The blocks depend on the batch and the
// kernel, never on the thread count; each thread takes a contiguous run of them (team_range
// over the blocks), so on two threads each thread runs one half of the rows. Blocks of panels
// split evenly over the whole batch (an earlier rule) gave one thread the edge panel (200 rows
// in 12-row panels: 96 and 104 rows a thread, now 100 and 100), and an odd number of blocks
// gave one thread a block more (128 rows: 36 and 92 rows a thread, now 64 and 64).
constexpr index_t kBlockRows = 60;

index_t n_row_blocks(index_t rows) {
  const index_t n = (rows + kBlockRows - 1) / kBlockRows;
  return n > 1 ? (n + 1) / 2 * 2 : n;
}
index_t block_start(index_t rows, index_t blk, index_t mr) {
  const index_t n = n_row_blocks(rows);
  if (blk <= 0) return 0;
  if (blk >= n) return rows;
  const index_t per_half = n / 2;  // (n >= 2 here)
  const index_t second = blk >= per_half ? 1 : 0;
  const index_t h0 = second * (rows / 2), span = second == 0 ? rows / 2 : rows - rows / 2;
  const index_t i = blk - second * per_half;  // (0 <= i < per_half)
  // the half's panels split as evenly as whole panels go; blocks of at least 30 rows and
  // mr <= 12 leave none empty (every batch size to 3,000 rows checked, tests/test_behaviour.py)
  const index_t panels = (span + mr - 1) / mr;
  return h0 + std::min(span, panels * i / per_half * mr);
}
constexpr index_t kRowBlockParams = index_t(1) << 16;

// wt := W^T of one layer (row-major W: fan_in x fan_out), at the layer's w_offset.
template <class T>
void transpose_weights(const LayerLayout& layer, const T* params, T* wt) {
  gemm_transpose<T>(layer.fan_in, layer.fan_out, params + layer.w_offset, wt + layer.w_offset);
}

// Multiply-adds one row costs in a forward pass.
index_t macs_per_row(const NetworkLayout& layout) {
  index_t macs = 0;
  for (const auto& l : layout.layers) macs += l.fan_in * l.fan_out;
  return macs;
}

}  // namespace

std::vector<index_t> row_block_bounds(index_t rows, index_t mr) {
  if (rows < 1 || mr < 1 || mr > 12)
    throw std::invalid_argument("row_block_bounds: rows >= 1 and 1 <= mr <= 12");
  std::vector<index_t> bounds;
  for (index_t blk = 0; blk <= n_row_blocks(rows); ++blk)
    bounds.push_back(block_start(rows, blk, mr));
  return bounds;
}

template <class T>
Trainer<T>::Trainer(NetworkLayout layout, int n_threads)
    : layout_(std::move(layout)), n_threads_(std::clamp(n_threads, 1, 64)) {
  if (layout_.layers.empty()) throw std::invalid_argument("Trainer: empty network");
  check_hidden_activation(layout_.hidden);
  index_t weight_rows = 0;
  for (const auto& layer : layout_.layers) weight_rows += layer.fan_in;
  sq_rows_.assign(static_cast<size_t>(weight_rows), 0.0);
  sq_chunks_.assign(static_cast<size_t>(weight_sq_chunks(layout_)), 0.0);
}

template <class T>
double Trainer<T>::start_sq_norm(const Team& team, const T* params) {
  weights_sq_chunks<T>(team, layout_, params, sq_chunks_.data());
  team_barrier(team);
  return sum_in_order(sq_chunks_.data(), static_cast<index_t>(sq_chunks_.size()));
}

template <class T>
double Trainer<T>::updated_sq_norm(const Team& team, const BatchView<T>& input, const T* params,
                                   bool blocks) {
  if (blocks)
    return sum_in_order(block_sq_chunks(team.tid), static_cast<index_t>(sq_chunks_.size()));
  if (input.sparse) {  // (the sparse update steps columns: the rows' squares taken here)
    weight_rows_sq<T>(team, layout_.layers[0], params, sq_rows_.data());
    team_barrier(team);
  }
  return sum_in_order(sq_rows_.data(), static_cast<index_t>(sq_rows_.size()));
}

template <class T>
int Trainer<T>::team_size(index_t rows) const {
  // below ~0.5M multiply-adds per pass a team costs more than it saves; a pass over fewer rows
  // than a micro-tile streams every weight from cache for them, and costs about as much as 8
  // rows' multiply-adds (one row of Fashion-MNIST's 784-300-100-10 network: 1 MB of weights,
  // more than one core's L2 holds, half each on two cores; bench/RESULTS.md)
  const index_t work = std::max<index_t>(rows, 8) * macs_per_row(layout_);
  if (work < index_t(1) << 19) return 1;
  return team_threads(n_threads_);
}

template <class T>
int Trainer<T>::predict_class(index_t rows) {
  if (rows <= 16) return static_cast<int>(std::max<index_t>(rows, 1) - 1);  // each size its own
  int bits = 0;  // then powers of two: (16, 32], (32, 64], (64, 128], (128, 256]
  for (index_t r = rows - 1; r > 0; r >>= 1) ++bits;
  return std::min(16 + bits - 5, kPredictClasses - 1);
}

template <class T>
typename Trainer<T>::Pass Trainer<T>::training_pass(const EpochOptions* opts) const {
  Pass pass;
  pass.keep_pre = activation_needs_input(layout_.hidden);
  if (opts != nullptr && layout_.has_dropout()) {
    pass.keep_pre = pass.dropout = true;
    pass.seed = static_cast<std::uint64_t>(opts->dropout_seed);
    pass.epoch = static_cast<std::uint64_t>(opts->epoch);
  }
  return pass;
}

template <class T>
HiddenUnits<T> Trainer<T>::hidden_units(size_t layer, index_t r0, const Pass& pass) {
  HiddenUnits<T> h;
  h.param = static_cast<T>(layout_.activation_param);
  h.row0 = r0;
  if (layer + 1 >= layout_.layers.size()) return h;  // the output layer: its head's business
  if (pass.keep_pre) {
    h.pre = pre(layer, r0);
    h.ld_pre = layout_.layers[layer].fan_out;
  }
  const double rate = pass.dropout ? layout_.dropout_rate(layer) : 0.0;
  if (rate > 0.0) {
    h.key = dropout_key(pass.seed, pass.epoch, pass.batch, static_cast<int>(layer));
    h.threshold = dropout_threshold(rate);
    h.keep_scale = static_cast<T>(1.0 / (1.0 - rate));
  }
  return h;
}

template <class T>
void Trainer<T>::ensure_rows(index_t rows, int n_threads, bool keep_pre, bool backward) {
  if (rows > capacity_rows_) {
    act_offsets_.clear();
    index_t offset = 0;
    for (const auto& layer : layout_.layers) {
      act_offsets_.push_back(offset);
      offset += rows * layer.fan_out;
    }
    acts_.assign(static_cast<size_t>(offset), T(0));
    // the buffers of a backward pass follow when one is run
    deltas_.clear();
    pres_.clear();
    y_batch_.assign(static_cast<size_t>(rows * layout_.n_outputs()), T(0));
    w_batch_.assign(static_cast<size_t>(rows), T(0));
    loss_chunks_.assign(static_cast<size_t>(loss_chunks(rows)), 0.0);
    capacity_rows_ = rows;
  }
  if (backward && deltas_.size() < acts_.size()) deltas_.assign(acts_.size(), T(0));
  if (keep_pre && pres_.size() < acts_.size()) pres_.assign(acts_.size(), T(0));
  // Every product of a pass over `rows` rows, so no thread allocates inside the team.
  std::size_t bytes = 0;
  for (const auto& l : layout_.layers) {
    bytes = std::max(bytes, gemm_scratch_bytes<T>(rows, l.fan_out, l.fan_in));     // X W
    bytes = std::max(bytes, gemm_scratch_bytes<T>(l.fan_in, l.fan_out, rows));     // A^T dZ
    bytes = std::max(bytes, gemm_scratch_bytes<T>(rows, l.fan_in, l.fan_out));    // dZ W^T
  }
  ws_.reserve(n_threads, bytes);
}

template <class T>
bool Trainer<T>::use_row_blocks(index_t batch_rows) const {
  const index_t blocks = n_row_blocks(batch_rows);
  return layout_.n_params <= kRowBlockParams && blocks > 1 &&
         blocks * layout_.n_params <= (index_t(1) << 22);
}

template <class T>
void Trainer<T>::forward(const Team& team, const BatchView<T>& input, const T* params,
                         index_t r0, index_t rows, const Pass& pass, int* nonfinite) {
  forward_rows(team, input.slice(r0, rows), params, r0, rows, pass, nullptr, nonfinite);
}

template <class T>
void Trainer<T>::ensure_packed_weights() {
  packed_offsets_.clear();
  index_t total = 0;
  for (const auto& layer : layout_.layers) {
    packed_offsets_.push_back(total);
    // (each layer's panels start on a cache line)
    const index_t elems = static_cast<index_t>(gemm_packed_b_elems<T>(layer.fan_out, layer.fan_in));
    total += (elems * index_t(sizeof(T)) + 63) / 64 * 64 / index_t(sizeof(T));
  }
  const size_t want = static_cast<size_t>(total) + 64 / sizeof(T);
  if (packed_w_.size() < want) packed_w_.assign(want, T(0));
  packed_nonfinite_.assign(layout_.layers.size(), 0);
}

template <class T>
const T* Trainer<T>::pack_weights(const Team& team, const T* params) {
  T* base = packed_w_.data();
  base = reinterpret_cast<T*>((reinterpret_cast<std::uintptr_t>(base) + 63) & ~std::uintptr_t(63));
  for (size_t l = 0; l < layout_.layers.size(); ++l) {
    const LayerLayout& layer = layout_.layers[l];
    gemm_pack_b<T>(team, layer.fan_out, layer.fan_in,
                   Operand<T>{params + layer.w_offset, layer.fan_out, 1},
                   base + packed_offsets_[l], &packed_nonfinite_[l]);
  }
  return base;
}

template <class T>
void Trainer<T>::forward_rows(const Team& team, const BatchView<T>& in, const T* params,
                              index_t r0, index_t rows, const Pass& pass, const T* packed,
                              int* nonfinite) {
  const size_t n_layers = layout_.layers.size();
  for (size_t l = 0; l < n_layers; ++l) {
    const LayerLayout& layer = layout_.layers[l];
    // The output layer's activation is applied together with its loss (loss.h).
    const Activation act = (l + 1 == n_layers) ? Activation::identity : layout_.hidden;
    const T* w = params + layer.w_offset;
    const T* b = params + layer.b_offset;
    const HiddenUnits<T> hidden = hidden_units(l, r0, pass);
    const T* wp = packed != nullptr ? packed + packed_offsets_[l] : nullptr;
    const bool wp_finite =
        packed != nullptr && __atomic_load_n(&packed_nonfinite_[l], __ATOMIC_RELAXED) == 0;
    const index_t split = l == 0 && pass.halves ? forward_halves_split(in.cols) : 0;
    if (split > 0)  // (an epoch's whole batch: r0 = 0; training, never asked for nonfinite)
      dense_forward_halves<T>(team, in, split, w, b, layer.fan_out, act, hidden, out(0, r0),
                              halves_.data(), ws_);
    else if (l == 0)
      dense_forward<T>(team, in, w, b, layer.fan_out, act, hidden, out(0, r0), ws_, wp, nonfinite,
                       wp_finite, pass.zero_steps);
    else
      dense_forward<T>(team, out(l - 1, r0), rows, layer.fan_in, layer.fan_in, w, b,
                       layer.fan_out, act, hidden, out(l, r0), ws_, wp, nullptr, wp_finite,
                       pass.zero_steps);
    team_barrier(team);
  }
}

template <class T>
void Trainer<T>::backward_update(const Team& team, const BatchView<T>& input, T* params,
                                 index_t rows, T alpha, T scale, const OptimizerStep<T>& opt,
                                 const Pass& pass) {
  // On entry delta(last) holds dZ of the output layer. Each layer's dZ for the layer below
  // is formed from its weights before they are updated; every layer has its own dZ buffer,
  // so only that read-before-update needs a barrier.
  index_t sq_row = static_cast<index_t>(sq_rows_.size());  // (the layers' rows, from the last)
  for (size_t l = layout_.layers.size(); l-- > 0;) {
    const LayerLayout& layer = layout_.layers[l];
    sq_row -= layer.fan_in;
    if (l > 0) {
      dense_backward_data<T>(team, delta(l), rows, layer.fan_out, params + layer.w_offset,
                             layer.fan_in, pass.keep_pre ? pre(l - 1) : out(l - 1),
                             pass.keep_pre, layout_.hidden, hidden_units(l - 1, 0, pass),
                             delta(l - 1), ws_);
      team_barrier(team);
    }
    dense_weight_update<T>(team, l == 0 ? &input : nullptr, l == 0 ? nullptr : out(l - 1), rows,
                           delta(l), layer, params, opt, alpha, scale,
                           grad_.data() + layer.w_offset, sq_rows_.data() + sq_row, ws_);
  }
}

template <class T>
void Trainer<T>::backward_sum(const Team& team, const BatchView<T>& input, const T* params,
                              index_t r0, index_t rows, bool accumulate, T* grad,
                              const Pass& pass, const T* wt, index_t split) {
  // the weight gradients' spans of rows: all of them, or the first `split` and the rest
  const index_t span_rows[2] = {split > 0 ? split : rows, split > 0 ? rows - split : 0};
  const BatchView<T> in[2] = {input.slice(r0, span_rows[0]),
                              input.slice(r0 + span_rows[0], span_rows[1])};
  for (size_t l = layout_.layers.size(); l-- > 0;) {
    const LayerLayout& layer = layout_.layers[l];
    for (int s = 0, s0 = 0; s < (split > 0 ? 2 : 1); s0 += static_cast<int>(span_rows[s]), ++s)
      dense_weight_grad_sum<T>(team, l == 0 ? &in[s] : nullptr, l == 0 ? nullptr : out(l - 1, r0 + s0),
                               span_rows[s], delta(l, r0 + s0), layer, accumulate || s > 0, grad,
                               ws_);
    if (l > 0) {
      dense_backward_data<T>(team, delta(l, r0), rows, layer.fan_out, params + layer.w_offset,
                             layer.fan_in, pass.keep_pre ? pre(l - 1, r0) : out(l - 1, r0),
                             pass.keep_pre, layout_.hidden, hidden_units(l - 1, r0, pass),
                             delta(l - 1, r0), ws_, wt != nullptr ? wt + layer.w_offset : nullptr);
      team_barrier(team);
    }
  }
}

template <class T>
bool Trainer<T>::replicated_step() const {
  return layout_.n_params <= kReplicatedStepParams;
}

template <class T>
double* Trainer<T>::block_sq_chunks(int tid) {
  if (tid == 0 || !replicated_step()) return sq_chunks_.data();
  return replica_sq_chunks_.data() + static_cast<size_t>(tid - 1) * sq_chunks_.size();
}

template <class T>
void Trainer<T>::transpose_all(int tid, const T* params) {
  T* wt = wt_.data() + tid * layout_.n_params;
  for (const auto& layer : layout_.layers)
    transpose_weights<T>(layer, params, wt);
}

template <class T>
double Trainer<T>::block_step(const Team& team, T* params, index_t rows, const T* sw,
                              double sw_sum, const EpochOptions& opts, const OptimizerStep<T>& opt,
                              std::vector<double>& block_loss, const Pass& pass,
                              const OwnRows* own, bool& stopped) {
  const index_t n_out = layout_.n_outputs();
  const size_t last = layout_.layers.size() - 1;
  const index_t n_blocks = n_row_blocks(rows);
  const index_t n_params = layout_.n_params;
  const index_t mr = gemm_tile_rows<T>();
  const Team solo = Team::solo(team.slot);
  // A replicated step (replicated_step) has one barrier a batch, after the blocks: the block
  // gradients, the blocks' losses and the split pairs of consecutive batches take two alternating
  // slots (sized by run_epoch), so that a thread may write the next batch's while another one
  // still steps with this batch's. A split step has a second barrier, after the step: the next
  // blocks read the weights every thread stepped.
  const bool replicated = replicated_step();
  const size_t slots = replicated ? 2 : 1, slot = replicated ? (pass.batch & 1) : 0;
  T* const grads = block_grads_.data() + slot * (block_grads_.size() / slots);
  double* const losses = block_loss.data() + slot * (block_loss.size() / slots);
  unsigned char* const split_pairs = split_pairs_.data() + slot * (split_pairs_.size() / slots);
  // Each block: forward, loss, backward to a raw gradient of its own.
  index_t b0, b1;
  team_range(team, n_blocks, b0, b1);  // (a contiguous run of blocks, see block_start)
  BatchView<T> input = batch_.view;
  if (own != nullptr) {
    const index_t r_lo = block_start(rows, b0, mr), r_hi = block_start(rows, b1, mr);
    input = gather_dense_rows<T>(own->data->x, own->idx, rows, r_lo, r_hi, batch_);
    gather_rows<T>(solo, own->data->y, n_out, own->idx + r_lo, r_hi - r_lo,
                   y_batch_.data() + r_lo * n_out);
  }
  // Blocks 2j and 2j + 1 form pair j: a thread that runs both accumulates the second's gradient
  // onto the first's (the products' accumulation: the two sums added, rounded once), and the
  // optimizer pass adds a pair split between two threads the same way, so a pair's sum has the
  // same bits whoever ran its blocks. The pass then reads one gradient per pair that one thread
  // ran, and a thread writes one where it wrote two: half the gradients that go from one core to
  // the other on two threads. (Sparse input sums the first layer's gradient in one chain with
  // the rows before: accumulating would not give the same bits, so each block keeps its own.)
  const bool pairs = !input.sparse;
  if (pairs && team.tid == 0) {  // (read after the barrier below)
    // pair j is split when a thread's run of blocks starts at block 2j + 1 (team_range's split)
    std::fill(split_pairs, split_pairs + (n_blocks + 1) / 2, static_cast<unsigned char>(0));
    for (int t = 1; t < team.nth; ++t) {
      const index_t start = n_blocks * t / team.nth;
      if (start % 2 == 1 && start < n_blocks) split_pairs[start / 2] = 1;
    }
  }
  // A pair whose two blocks this thread runs goes through the forward and the data gradients'
  // products as one span of rows (a row's results never depend on the other rows of a product),
  // and each block's weight gradient is still a product of its own rows, the second block's
  // accumulated onto the first's: the bits of the blocks one after the other, in half the
  // products, each twice as tall (California housing's 8-50-50-50-1, batches of 200 on one
  // thread: a layer's forward and data-gradient products are four of 100 rows instead of eight
  // of 48 or 52).
  for (index_t blk = b0; blk < b1;) {
    const bool whole_pair = pairs && blk % 2 == 0 && blk + 1 < b1;
    const index_t r0 = block_start(rows, blk, mr);
    const index_t r_mid = block_start(rows, blk + 1, mr);
    const index_t r1 = whole_pair ? block_start(rows, blk + 2, mr) : r_mid;
    forward(solo, input, params, r0, r1 - r0, pass);
    for (index_t b = blk, rb0 = r0; rb0 < r1; ++b) {  // (each block's loss: its own sum)
      const index_t rb1 = b == blk ? r_mid : r1;
      losses[b] = output_loss_grad<T>(solo, layout_, out(last, rb0),
                                      y_batch_.data() + rb0 * n_out,
                                      sw != nullptr ? sw + rb0 : nullptr, delta(last, rb0),
                                      rb1 - rb0, n_out);
      rb0 = rb1;
    }
    // (a pair's second block run alone here has its first on another thread: its own gradient)
    backward_sum(solo, input, params, r0, r1 - r0, false, grads + blk * n_params,
                 pass, wt_.data() + team.tid * n_params, whole_pair ? r_mid - r0 : 0);
    blk += whole_pair ? 2 : 1;
  }
  team_barrier(team);
  if (own != nullptr && own->stop->load(std::memory_order_relaxed)) {
    stopped = true;
    return 0.0;
  }
  // (the losses summed before the next barrier after which this slot's are written again)
  double batch_loss = 0.0;
  for (index_t blk = 0; blk < n_blocks; ++blk) batch_loss += losses[blk];
  // The gradients summed in block order, then one optimizer step, split by parameter.
  const T alpha = static_cast<T>(opts.alpha);
  OptimizerPass<T> opt_pass;
  opt_pass.adam = opt.solver == Solver::adam;
  opt_pass.adam_step = opt.adam;
  opt_pass.sgd_step = opt.sgd;
  opt_pass.stride = n_params;
  opt_pass.n_partials = n_blocks;
  if (pairs) opt_pass.split_pairs = split_pairs;
  opt_pass.scale = static_cast<T>(1.0 / sw_sum);
  // The optimizer step. Small networks (replicated_step): every thread steps all the parameters,
  // its own copy of them and of the optimizer's state (thread 0 the caller's, the others their
  // replicas), the same sums in the same order, so the same bits in every copy; split by
  // parameter instead, each thread would write half of the weights the other one reads next, and
  // every one of those lines would move between the cores twice a batch (read by the other
  // core's transpose, then taken back for the next write): only the block gradients cross this
  // way. Larger networks: the step of twice the parameters would cost more than those moves, and
  // the team splits the parameters (whole chunks of weights per thread).
  const Team stepping = replicated ? Team::solo(team.slot) : team;
  double* chunk_sq = block_sq_chunks(team.tid);
  for (const auto& layer : layout_.layers) {
    for (int part = 0; part < 2; ++part) {  // the weights (with the L2 term), then the biases
      const index_t offset = part == 0 ? layer.w_offset : layer.b_offset;
      const index_t count = part == 0 ? layer.fan_in * layer.fan_out : layer.fan_out;
      index_t i0, i1;
      if (part == 0) {  // whole chunks of kSqChunk weights each: their squares in chunk_sq
        const index_t n_chunks = layer_sq_chunks(layer);
        team_range(stepping, n_chunks, i0, i1);
        opt_pass.chunk_sq = chunk_sq + i0;
        chunk_sq += n_chunks;
        i0 = std::min(count, i0 * kSqChunk);
        i1 = std::min(count, i1 * kSqChunk);
      } else {
        team_range(stepping, count, i0, i1);
        opt_pass.chunk_sq = nullptr;
      }
      opt_pass.partial = grads + offset + i0;
      opt_pass.alpha = part == 0 ? static_cast<T>(opts.alpha) : T(0);
      T* s1 = opt.state_1 != nullptr ? opt.state_1 + offset + i0 : nullptr;
      optimizer_pass<T>(params + offset + i0, opt.state_0 + offset + i0, s1, i1 - i0, opt_pass);
    }
  }
  if (!replicated) team_barrier(team);
  transpose_all(team.tid, params);  // (this thread's copy: read only by its next blocks)
  return batch_loss;
}

template <class T>
EpochResult Trainer<T>::run_epoch(const TrainingData<T>& data, const index_t* order,
                                  index_t n_order, T* params, OptimizerState<T>& state,
                                  const EpochOptions& opts, const StopCheck& should_stop) {
  if (opts.batch_size < 1) throw std::invalid_argument("run_epoch: batch_size must be >= 1");
  check_trainable(layout_.hidden);
  const index_t batch_size = std::min(opts.batch_size, std::max<index_t>(n_order, 1));
  const bool blocks = use_row_blocks(batch_size);
  // (row blocks on a gathered dense input without sample weights: each thread gathers its own)
  const bool own_rows = blocks && order != nullptr && data.sample_weight == nullptr &&
                        gathers_dense_rows<T>(data.x, order);
  const int full = blocks ? team_threads(n_threads_) : team_size(batch_size);
  const TrainingRunning running(full);  // (other fits' choosers count its team; threads.h)
  Pass epoch_pass = training_pass(&opts);
  // Layer by layer, a wide dense first layer's forward in two halves of its depth, whatever the
  // team (dense_forward_halves; row blocks run each block's forward on one thread)
  epoch_pass.halves = !blocks && !data.x.sparse && forward_halves_split(data.x.n_cols) > 0;
  prepare_batches<T>(data.x, order, n_order, batch_size, batch_);
  ensure_rows(batch_size, full, epoch_pass.keep_pre, true);
  const size_t half_elems = static_cast<size_t>(batch_size * layout_.layers[0].fan_out);
  if (epoch_pass.halves && halves_.size() < half_elems) halves_.resize(half_elems);
  if (epoch_pass.halves) halves_epochs.fetch_add(1, std::memory_order_relaxed);
  grad_.resize(static_cast<size_t>(layout_.n_params));
  std::vector<double> block_loss;
  if (blocks) {
    const size_t n_blocks = static_cast<size_t>(n_row_blocks(batch_size));
    const size_t slots = replicated_step() ? 2 : 1;  // (block_step)
    block_grads_.resize(slots * n_blocks * static_cast<size_t>(layout_.n_params));
    split_pairs_.resize(slots * ((n_blocks + 1) / 2));
    block_loss.resize(slots * n_blocks);
    wt_.resize(static_cast<size_t>(full * layout_.n_params));
    if (replicated_step()) {
      replicas_.resize(static_cast<size_t>((full - 1) * 3 * layout_.n_params));
      replica_sq_chunks_.resize(static_cast<size_t>(full - 1) * sq_chunks_.size());
    }
  }
  const index_t n_out = layout_.n_outputs();
  const Loss loss = layout_.loss;
  const T alpha = static_cast<T>(opts.alpha);
  const size_t last = layout_.layers.size() - 1;

  OptimizerStep<T> opt;
  opt.solver = opts.solver;
  if (opts.solver == Solver::sgd) {
    opt.sgd = SgdStep<T>{static_cast<T>(opts.learning_rate), static_cast<T>(opts.momentum),
                         opts.nesterov};
    opt.state_0 = state.velocity;
  } else {
    opt.state_0 = state.m;
    opt.state_1 = state.v;
  }

  EpochResult result;
  StopClock stop(should_stop);
  std::atomic<int> stop_flag{0};
  // the stop flag as thread 0 read it at the start of a batch, for the even and the odd batches:
  // every thread of a row-block batch reads it after the batch's first barrier, when thread 0 may
  // already be polling for the next batch (one barrier a batch, block_step)
  std::atomic<int> batch_stop[2] = {0, 0};
  std::atomic<long long> batches_done{0};
  const long long t0 = state.t;
  const long long n_batches = (n_order + batch_size - 1) / batch_size;
  // ||W||^2 of the weights each batch starts from: computed by the first segment, then carried
  // by the updates from batch to batch and segment to segment.
  double carried_sq = 0.0;

  // The epoch in segments, each on the team the chooser picks (threads.h).
  for (long long first = 0; first < n_batches && !stop_flag.load(std::memory_order_relaxed);) {
    // (a one-thread team has nothing to choose: the whole epoch is one segment)
    const int nth = full > 1 ? chooser_.pick(full) : 1;
    const long long end =
        full > 1 ? first + chooser_.segment_batches(nth, batch_size, n_batches - first) : n_batches;
    const auto started = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
      FlushDenormals<T> ftz;
      const Team team{omp_get_thread_num(), omp_get_num_threads()};
      double sq = first == 0 ? start_sq_norm(team, params) : carried_sq;
      OptimizerStep<T> step = opt;  // per-thread copy: the constants below are the same on all
      // Row blocks of a replicated step: threads past the first step replicas of the parameters
      // and of the optimizer's state (block_step), copied here from the caller's, which thread 0
      // steps once the team's first barrier of the segment is passed, and which alone are kept
      // when it ends.
      T* own_params = params;
      if (blocks && team.tid > 0 && replicated_step()) {
        const size_t n = static_cast<size_t>(layout_.n_params);
        T* replica = replicas_.data() + static_cast<size_t>(team.tid - 1) * 3 * n;
        std::copy(params, params + n, replica);
        std::copy(opt.state_0, opt.state_0 + n, replica + n);
        if (opt.state_1 != nullptr) std::copy(opt.state_1, opt.state_1 + n, replica + 2 * n);
        own_params = replica;
        step.state_0 = replica + n;
        step.state_1 = opt.state_1 != nullptr ? replica + 2 * n : nullptr;
      }
      if (blocks) transpose_all(team.tid, own_params);  // (a thread's copy may be a segment old)
      Pass pass = epoch_pass;
      for (long long batch_index = first; batch_index < end; ++batch_index) {
        const index_t start = static_cast<index_t>(batch_index) * batch_size;
        pass.batch = static_cast<std::uint64_t>(batch_index);
        if (team.tid == 0) {
          if (stop.poll()) stop_flag.store(1, std::memory_order_relaxed);
          batch_stop[batch_index & 1].store(stop_flag.load(std::memory_order_relaxed),
                                            std::memory_order_relaxed);
        }
        const index_t rows = std::min(batch_size, n_order - start);
        const index_t* idx = order + start;
        const OwnRows own{&data, idx, &batch_stop[batch_index & 1]};
        if (!own_rows) {
          gather_input<T>(team, data.x, idx, 0, rows, batch_);
          gather_rows<T>(team, data.y, n_out, idx, rows, y_batch_.data());
          if (data.sample_weight != nullptr)
            gather_rows<T>(team, data.sample_weight, 1, idx, rows, w_batch_.data());
          team_barrier(team);
          if (batch_stop[batch_index & 1].load(std::memory_order_relaxed)) break;
        }

        const T* sw = data.sample_weight != nullptr ? w_batch_.data() : nullptr;
        double sw_sum = static_cast<double>(rows);
        if (sw != nullptr) {
          T s = T(0);
          for (index_t i = 0; i < rows; ++i) s += sw[i];
          sw_sum = static_cast<double>(s);
        }

        const double lr = batch_learning_rate(opts, batch_index);
        if (opts.solver == Solver::adam) {
          const long long t = t0 + batch_index + 1;
          step.adam = AdamStep<T>{static_cast<T>(opts.beta_1),
                                  static_cast<T>(1.0 - opts.beta_1),
                                  static_cast<T>(opts.beta_2),
                                  static_cast<T>(1.0 - opts.beta_2),
                                  static_cast<T>(adam_lr_t(lr, opts.beta_1, opts.beta_2, t)),
                                  static_cast<T>(opts.epsilon)};
        } else {
          step.sgd.lr = static_cast<T>(lr);
        }
        double row_loss;
        if (blocks) {
          bool stopped = false;
          row_loss = block_step(team, own_params, rows, sw, sw_sum, opts, step, block_loss, pass,
                                own_rows ? &own : nullptr, stopped);
          if (stopped) break;
        } else {
          forward(team, batch_.view, params, 0, rows, pass);
          output_loss_grad_chunks<T>(team, layout_, out(last), y_batch_.data(), sw, delta(last),
                                     rows, n_out, loss_chunks_.data());
          team_barrier(team);
          // (every thread sums before the next barrier; the next batch writes after it)
          row_loss = sum_in_order(loss_chunks_.data(), loss_chunks(rows));
          backward_update(team, batch_.view, params, rows, alpha, static_cast<T>(1.0 / sw_sum),
                          step, pass);
          team_barrier(team);
        }
        const double loss_value = batch_loss(loss, row_loss, sw_sum, n_out, opts.alpha, sq);
        sq = updated_sq_norm(team, batch_.view, params, blocks);
        if (team.tid == 0) {
          if (opts.batch_losses != nullptr) opts.batch_losses[batch_index] = loss_value;
          result.accumulated_loss += loss_value * static_cast<double>(rows);
          result.samples_seen += rows;
          batches_done.store(batch_index + 1, std::memory_order_relaxed);
        }
      }
      if (team.tid == 0) carried_sq = sq;
    }
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const long long done = batches_done.load(std::memory_order_relaxed);
    if (full > 1)
      chooser_.record(nth, elapsed,
                      std::min<long long>(done * batch_size, n_order) -
                          std::min<long long>(first * batch_size, n_order));
    first = std::max(end, done);
  }
  if (opts.solver == Solver::adam) state.t = t0 + batches_done.load();
  result.interrupted = stop_flag.load() != 0;
  return result;
}

namespace {

// The sum of the sample weights (the row count when unweighted), in double: a float32 sum stops
// growing at 2^24.
template <class T>
double weight_sum(const TrainingData<T>& data) {
  if (data.sample_weight == nullptr) return static_cast<double>(data.x.n_rows);
  double total = 0.0;
  for (index_t i = 0; i < data.x.n_rows; ++i) total += static_cast<double>(data.sample_weight[i]);
  return total;
}

}  // namespace

template <class T>
double Trainer<T>::loss_grad(const TrainingData<T>& data, const T* params, double alpha, T* grad,
                             const StopCheck& should_stop) {
  check_trainable(layout_.hidden);
  return objective(data, params, alpha, grad, nullptr, should_stop);
}

template <class T>
double Trainer<T>::evaluate(const TrainingData<T>& data, const T* params, double alpha, double* result,
                            const StopCheck& should_stop) {
  return objective(data, params, alpha, nullptr, result, should_stop);
}

template <class T>
double Trainer<T>::objective(const TrainingData<T>& data, const T* params, double alpha, T* grad,
                             double* result, const StopCheck& should_stop) {
  const index_t n = data.x.n_rows;
  const index_t chunk = chunk_rows(layout_, n);
  const int nth = team_size(chunk);
  const TrainingRunning running(nth);  // (other fits' choosers count its team; threads.h)
  // the whole-data objective: no dropout; without a gradient, prediction's forward pass
  Pass pass = grad != nullptr ? training_pass(nullptr) : Pass{};
  pass.zero_steps = grad == nullptr;
  prepare_batches<T>(data.x, nullptr, n, chunk, batch_);
  ensure_rows(chunk, nth, pass.keep_pre, true);  // (the loss writes dZ)
  const index_t n_out = layout_.n_outputs();
  const size_t last = layout_.layers.size() - 1;
  StopClock stop(should_stop);
  std::atomic<int> stop_flag{0};
  double total_loss = 0.0, sq = 0.0;  // (thread 0's: every thread sums the same slots)

  const double sw_sum = weight_sum(data);
  const T scale = static_cast<T>(1.0 / sw_sum);

#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    FlushDenormals<T> ftz;
    const Team team{omp_get_thread_num(), omp_get_num_threads()};
    for (index_t start = 0; start < n; start += chunk) {
      if (team.tid == 0 && stop.poll()) stop_flag.store(1, std::memory_order_relaxed);
      const index_t rows = std::min(chunk, n - start);
      gather_input<T>(team, data.x, nullptr, start, rows, batch_);
      team_barrier(team);
      if (stop_flag.load(std::memory_order_relaxed)) break;
      forward(team, batch_.view, params, 0, rows, pass);
      if (result != nullptr) {
        output_activation<T>(team, layout_, out(last), result + start * n_out, rows, n_out);
        team_barrier(team);  // (the loss turns z into the output activation in place)
      }
      const T* sw = data.sample_weight != nullptr ? data.sample_weight + start : nullptr;
      output_loss_grad_chunks<T>(team, layout_, out(last), data.y + start * n_out, sw,
                                 delta(last), rows, n_out, loss_chunks_.data());
      team_barrier(team);
      // (summed before the next chunk's barrier, after which its losses are written)
      const double chunk_loss = sum_in_order(loss_chunks_.data(), loss_chunks(rows));
      if (team.tid == 0) total_loss += chunk_loss;
      if (grad != nullptr) {
        backward_sum(team, batch_.view, params, 0, rows, start > 0, grad, pass);
        team_barrier(team);
      }
    }
    if (!stop_flag.load(std::memory_order_relaxed)) {
      if (grad != nullptr)
        for (const auto& layer : layout_.layers)
          finish_weight_grad<T>(team, layer, params, static_cast<T>(alpha), scale, grad);
      const double norm = start_sq_norm(team, params);
      if (team.tid == 0) sq = norm;
    }
  }
  if (stop_flag.load()) throw std::runtime_error("interrupted");
  return batch_loss(layout_.loss, total_loss, sw_sum, n_out, alpha, sq);
}

template <class T>
bool Trainer<T>::predict(const InputMatrix& x, const T* params, double* result,
                         const StopCheck& should_stop, bool* nonfinite, std::intptr_t* labels,
                         bool* labels_nonfinite) {
  const index_t n = x.n_rows;
  const index_t chunk = chunk_rows(layout_, n);
  // The team, or one thread when the team's cores proved slower (busy with other work): for
  // calls of a kept engine's sizes, learnt by timing (one call, one segment of TeamChooser's,
  // threads.h); longer calls, each on a new engine, ask whether the machine is oversubscribed
  // (one reading: a wrong answer costs one call at most the team's speed-up). Calls in slices
  // of at least 4 slices per thread instead always run on the team: a thread descheduled by
  // other work holds up the others for at most one slice at the end, where one thread alone
  // would have had half the CPU time of two.
  //
  // The longer calls run in slices (dense input: calls of at least 2 slices per thread, where
  // slices measured faster than the layer-by-layer split, bench/RESULTS.md; sparse input: calls
  // of at least 4 slices per thread): each thread takes the next slice of rows through the
  // whole network alone (no barrier between the layers; a row's outputs do not depend on the
  // rows computed with it). A slice is at most 4 times the rows whose products read the weights
  // in place (gemm_in_place_rows). A dense input's slices are the whole call's: equal slices of
  // whole tiles (the last one shorter), about a multiple of the team in number, each thread
  // taking the next one into buffers of its own (its rows gathered there when they are not read
  // in place), after the team has packed the weights once for all of them (one barrier), so
  // that the threads end together and wait for each other only once more. Sparse input goes in
  // chunks gathered by the team, a barrier after each, each chunk's rows in slices of the
  // maximal size (each packing the weights itself). Other calls split each product between the
  // threads of the team, a barrier after each layer.
  const int full = team_size(chunk);
  const bool learnt = n <= kLearntCallRows;
  TeamChooser& chooser = predict_choosers_[static_cast<size_t>(predict_class(std::min(n, kLearntCallRows)))];
  const index_t max_slice = 4 * static_cast<index_t>(gemm_in_place_rows<T>());
  const bool long_call = n >= 4 * max_slice * full;
  const bool own_slices = full > 1 && !x.sparse && n >= 2 * max_slice * full;
  const bool slices = own_slices || (full > 1 && long_call && chunk >= 2 * max_slice * full);
  const bool team_always = slices && long_call;
  index_t slice = max_slice;
  long long n_slices = 0;
  if (own_slices) {
    // (the team's buffers hold at most a chunk's rows, the bound of a wide network's activation
    // memory: its slices are shorter, the weights being packed once whatever their number)
    const index_t mr = gemm_tile_rows<T>();
    const index_t most =
        std::max<index_t>(mr, std::min<index_t>(max_slice, chunk / full / mr * mr));
    const index_t per_round = most * full;
    const index_t count = full * ((n + per_round - 1) / per_round);
    slice = ((n + count - 1) / count + mr - 1) / mr * mr;  // <= most: a multiple of mr
    n_slices = (n + slice - 1) / slice;
  }
  int nth = full;
  if (full > 1 && !team_always)
    nth = learnt ? chooser.pick(full) : (machine_oversubscribed(full, 1) ? 1 : full);
  std::atomic<long long> next_slice{0};  // (of the call: chunk after chunk)
  const auto started = std::chrono::steady_clock::now();
  // (own slices: each thread's rows at tid * slice of the buffers)
  const index_t buffer_rows = own_slices ? slice * nth : chunk;
  prepare_batches<T>(x, nullptr, n, buffer_rows, batch_);
  ensure_rows(buffer_rows, nth, false, false);  // prediction: no backward pass
  if (own_slices) ensure_packed_weights();
  const index_t n_out = layout_.n_outputs();
  const size_t last = layout_.layers.size() - 1;
  Pass pass;  // prediction: no pre-activations, no dropout
  pass.zero_steps = true;
  StopClock stop(should_stop);
  std::atomic<int> stop_flag{0};
  // A dense input's check for NaN and infinities: by the first layer's products, as they read
  // its rows (Epilogue::a_nonfinite: blocks already in cache, where a pass of its own before
  // them was the input's first read from memory, 8% of a 10,000-row Fashion-MNIST call,
  // bench/RESULTS.md). The rows are computed either way; the call then reports them.
  int bad = 0;
  int* const check = nonfinite != nullptr && !x.sparse ? &bad : nullptr;
  // rows [r0, r0 + rows) of the call, their last layer's pre-activations at z, to their outputs
  // or (labels) their classes, on team t
  std::atomic<int> labels_bad{0};
  auto finish_rows = [&](const Team& t, const T* z, index_t r0, index_t rows) {
    if (labels == nullptr)
      output_activation<T>(t, layout_, z, result + r0 * n_out, rows, n_out);
    else if (output_labels<T>(t, z, labels + r0, rows, n_out))
      labels_bad.store(1, std::memory_order_relaxed);
  };

  // (the region's body: on one thread it runs on the calling thread alone, outside OpenMP,
  // whose region of one thread still ends with a futex system call, a small call's cost; as a
  // team of one of its own, also when called from within another OpenMP region)
  auto region = [&](const Team& team) {
    FlushDenormals<T> ftz;
    const Team solo = Team::solo(team.slot);
    if (own_slices) {
      // the weights packed once for all the slices (each slice's products would pack them)
      const T* packed = pack_weights(team, params);
      team_barrier(team);
      const index_t b0 = team.tid * slice;  // this thread's rows of the buffers
      T* own =
          gathers_dense_rows<T>(x, nullptr) ? batch_.dense_storage.data() + b0 * x.n_cols : nullptr;
      for (;;) {
        if (team.tid == 0 && stop.poll()) stop_flag.store(1, std::memory_order_relaxed);
        if (stop_flag.load(std::memory_order_relaxed)) break;
        const long long s = next_slice.fetch_add(1, std::memory_order_relaxed);
        if (s >= n_slices) break;
        const index_t r0 = static_cast<index_t>(s) * slice;
        const index_t rs = std::min(slice, n - r0);
        const BatchView<T> in = dense_rows<T>(x, r0, rs, own);
        forward_rows(solo, in, params, b0, rs, pass, packed, check);
        finish_rows(solo, out(last, b0), r0, rs);
      }
    } else {
      long long first_slice = 0;  // the chunk's first slice number
      index_t start = 0;
      // A dense input read in place: each thread takes its own view of a chunk's rows, and the
      // first chunk (a short call's only one) starts without a barrier, its stop check
      // skipped (StopClock's first poll comes 20 ms after the clock started: a no-op here).
      // A one-row call then waits for the team 4 times instead of 6.
      const bool own_view = !x.sparse && !gathers_dense_rows<T>(x, nullptr);
      BatchView<T> view;
      // rows [r0, r0 + rs) of the chunk at `start` through the network on team t
      auto predict_rows = [&](const Team& t, index_t r0, index_t rs) {
        forward(t, view, params, r0, rs, pass, check);
        finish_rows(t, out(last, r0), start + r0, rs);
      };
      for (; start < n; start += chunk) {
        const index_t rows = std::min(chunk, n - start);
        // (the end of the parallel region waits for the team after the last chunk)
        const bool last_chunk = n - start <= chunk;
        if (!own_view || start > 0) {
          if (team.tid == 0 && stop.poll()) stop_flag.store(1, std::memory_order_relaxed);
          if (!own_view) gather_input<T>(team, x, nullptr, start, rows, batch_);
          team_barrier(team);
          if (stop_flag.load(std::memory_order_relaxed)) break;
        }
        view = own_view ? dense_rows<T>(x, start, rows, nullptr) : batch_.view;
        if (slices) {
          const long long end = first_slice + (rows + slice - 1) / slice;
          for (;;) {
            long long s = next_slice.load(std::memory_order_relaxed);
            while (s < end && !next_slice.compare_exchange_weak(s, s + 1, std::memory_order_relaxed)) {
            }
            if (s >= end) break;
            const index_t r0 = static_cast<index_t>(s - first_slice) * slice;
            predict_rows(solo, r0, std::min(slice, rows - r0));
          }
          first_slice = end;
          if (!last_chunk) team_barrier(team);  // (before the next chunk's rows are gathered)
          continue;
        }
        predict_rows(team, 0, rows);
        if (!last_chunk) team_barrier(team);
      }
    }
  };
  if (nth > 1) {
#pragma omp parallel num_threads(nth)
    region(Team{omp_get_thread_num(), omp_get_num_threads()});
  } else {
    region(Team{0, 1});
  }
  if (full > 1 && stop_flag.load() == 0) {
    if (learnt)
      chooser.record(nth, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), n);
    else
      predictions_run[nth > 1 ? 1 : 0].fetch_add(1, std::memory_order_relaxed);
  }
  if (nonfinite != nullptr) *nonfinite = bad != 0;  // (the region's end: its writes seen)
  if (labels_nonfinite != nullptr) *labels_nonfinite = labels_bad.load() != 0;
  return stop_flag.load() == 0;
}

template class Trainer<float>;
template class Trainer<double>;

}  // namespace cpu
}  // namespace fusedmlp
