// The CPU trainer: whole epochs of mini-batch training, the whole-data loss and gradient for
// L-BFGS, and prediction, each one call from Python with the GIL released.
//
// Each call runs one team of OpenMP threads for its whole duration (one parallel region per
// call, not per operation), except epochs: they run in segments of a few milliseconds, each
// on the full team or on one thread, whichever the timing of earlier segments says is faster
// (TeamChooser, threads.h: a team whose cores are busy with other work is far slower than one
// thread). Two ways to share a batch:
// - layer by layer: every GEMM and element-wise pass is split across the team, with a
//   barrier between dependent steps (networks with many parameters);
// - row blocks (small networks, whose GEMMs are too small to split): fixed blocks of about
//   kBlockRows rows (half of them in each half of the batch's rows) go through the whole
//   network on one thread each, their gradients are
//   summed in block order (each pair of blocks first, see block_step), then the optimizer is
//   applied: by every thread to its own copy of the parameters (the same bits in every copy)
//   in the smallest networks, split across the team in the others. The blocks do not depend on
//   the thread count, so neither does the model.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "cpu/dense.h"
#include "cpu/gemm/gemm.h"
#include "cpu/stop_clock.h"
#include "cpu/threads.h"
#include "fusedmlp/dropout.h"
#include "fusedmlp/network.h"
#include "fusedmlp/optimizer.h"
#include "fusedmlp/training.h"

namespace fusedmlp {
namespace cpu {

// The row blocks of a batch of `rows` rows for a kernel of `mr`-row panels: the first row of
// each block, then `rows` (the blocks of row-block mode; for tests).
std::vector<index_t> row_block_bounds(index_t rows, index_t mr);

// Epochs whose first layer's forward pass ran in two halves of its depth (Trainer::Pass::halves),
// so far in this process (fusedmlp._cpu._halves_epochs(), for tests)
inline std::atomic<long long> halves_epochs{0};

template <class T>
struct TrainingData {
  InputMatrix x;
  const T* y = nullptr;              // n_rows x n_outputs, C-contiguous
  const T* sample_weight = nullptr;  // n_rows, or null
};

template <class T>
class Trainer {
 public:
  Trainer(NetworkLayout layout, int n_threads);

  const NetworkLayout& layout() const { return layout_; }

  // One epoch over the rows order[0..n_order) in mini-batches of opts.batch_size.
  EpochResult run_epoch(const TrainingData<T>& data, const index_t* order, index_t n_order,
                        T* params, OptimizerState<T>& state, const EpochOptions& opts,
                        const StopCheck& should_stop);

  // scikit-learn's full-batch objective and gradient (the L-BFGS path): returns the loss and
  // writes d loss / d params into grad (the flat layout). Throws std::runtime_error
  // ("interrupted") when should_stop() says so.
  double loss_grad(const TrainingData<T>& data, const T* params, double alpha, T* grad,
                   const StopCheck& should_stop);

  // out (n_rows x n_outputs) = the network's output, the output activation applied in
  // float64. Returns false, with out partly written, when should_stop() said so. With
  // `nonfinite`, dense input is also checked: *nonfinite says whether any value of X (as
  // converted to T) is NaN or infinite, found by the first layer's products as they read X's
  // rows (Epilogue::a_nonfinite). With `labels` (a softmax head, dense.h's output_labels), each
  // row's class index goes there instead and out is not written (it may be null);
  // *labels_nonfinite then says whether any row's outputs were not all finite.
  bool predict(const InputMatrix& x, const T* params, double* out, const StopCheck& should_stop,
               bool* nonfinite = nullptr, std::intptr_t* labels = nullptr,
               bool* labels_nonfinite = nullptr);

  // One forward pass over the data: out (n_rows x n_outputs) = the outputs as predict gives
  // them, and the return value is loss_grad's objective (loss and L2 term), without a gradient
  // (early stopping's validation). Throws std::runtime_error("interrupted") as loss_grad does.
  double evaluate(const TrainingData<T>& data, const T* params, double alpha, double* out,
                  const StopCheck& should_stop);

 private:
  // loss_grad (grad: the gradient, written) and evaluate (result: the outputs, written): the
  // objective over the whole data in chunks, from one forward pass.
  double objective(const TrainingData<T>& data, const T* params, double alpha, T* grad, double* result,
                   const StopCheck& should_stop);

  // What a pass through the hidden layers does besides computing them: keep the
  // pre-activations (training a from_input activation, or under dropout) and drop units (the
  // dropout key's seed, epoch and batch; training only).
  struct Pass {
    bool keep_pre = false;
    bool dropout = false;
    // the first layer's forward in two halves of its depth (dense_forward_halves): an epoch's
    // layer-by-layer batches on a dense input of at least kHalvesMinDepth columns
    bool halves = false;
    // a prediction's (or an evaluation's) forward products: a row-major input's all-zero steps
    // left out where the weights are finite (Operand::zero_steps). An epoch's products do not
    // ask: their hidden layers' rows have few such steps, and finding them measured 1% slower
    // California housing and MNIST epochs (bench/RESULTS.md).
    bool zero_steps = false;
    std::uint64_t seed = 0, epoch = 0, batch = 0;
  };
  Pass training_pass(const EpochOptions* opts) const;
  HiddenUnits<T> hidden_units(size_t layer, index_t r0, const Pass& pass);

  // Buffers for passes over `rows` rows: the outputs always, the pre-activations when kept,
  // the deltas when a backward pass follows.
  void ensure_rows(index_t rows, int n_threads, bool keep_pre, bool backward);
  int team_size(index_t rows) const;
  // Rows [r0, r0 + rows) of the batch through the network; with a team, a barrier after each
  // layer.
  // nonfinite, optional: *nonfinite := 1 when an element of a dense input's rows is NaN or
  // infinite (checked by the first layer's product as it reads them: dense_forward).
  void forward(const Team& team, const BatchView<T>& input, const T* params, index_t r0,
               index_t rows, const Pass& pass, int* nonfinite = nullptr);
  // ... from `in`, the rows' own view, into the buffers' rows [r0, r0 + rows); with packed,
  // every layer's W read from its panels packed beforehand (pack_weights)
  void forward_rows(const Team& team, const BatchView<T>& in, const T* params, index_t r0,
                    index_t rows, const Pass& pass, const T* packed = nullptr,
                    int* nonfinite = nullptr);
  // Every layer's W packed for the active kernels into packed_w_ (the team's share; a barrier
  // before use); returns the buffer, 64-byte aligned, each layer's at packed_offsets_[layer],
  // packed_nonfinite_[layer] set when its W is not all finite (ensure_packed_weights clears them).
  const T* pack_weights(const Team& team, const T* params);
  void ensure_packed_weights();
  void backward_update(const Team& team, const BatchView<T>& input, T* params, index_t rows,
                       T alpha, T scale, const OptimizerStep<T>& opt, const Pass& pass);
  // (wt: every layer's W^T at its w_offset, as wt_, or null to read W^T from params; split > 0:
  // each weight gradient is the product of the first `split` rows, then the other rows' product
  // accumulated onto it, the bits of two calls over the two spans of rows)
  void backward_sum(const Team& team, const BatchView<T>& input, const T* params, index_t r0,
                    index_t rows, bool accumulate, T* grad, const Pass& pass,
                    const T* wt = nullptr, index_t split = 0);
  // Row-block epochs on a dense input that is gathered, without sample weights: each thread
  // gathers its own blocks' rows of the batch in block_step, so no barrier precedes the blocks,
  // and the stop flag is read after the blocks' barrier (one value on every thread).
  struct OwnRows {
    const TrainingData<T>* data;
    const index_t* idx;  // the batch's rows of the input
    const std::atomic<int>* stop;
  };
  // The small-network epoch step: row blocks through the whole network, one thread each.
  // Returns the batch's summed per-sample losses; writes the new weights' squares to
  // block_sq_chunks(team.tid). With own, sets stopped instead (and updates nothing) when
  // own->stop is set. block_loss: n_row_blocks(batch size) slots, twice over for a replicated
  // step (the slots of odd and even batches).
  double block_step(const Team& team, T* params, index_t rows, const T* sw, double sw_sum,
                    const EpochOptions& opts, const OptimizerStep<T>& opt,
                    std::vector<double>& block_loss, const Pass& pass, const OwnRows* own,
                    bool& stopped);
  // Row-block mode: whether every thread steps its own copy of all the parameters (block_step),
  // networks of at most kReplicatedStepParams parameters. California housing's 8-50-50-50-1
  // (5,651) gained 3% an epoch on two threads, 8-100-100-1 (11,101) 1%, 8-200-200-1 (42,201)
  // lost 6.5% (bench/RESULTS.md).
  static constexpr index_t kReplicatedStepParams = index_t(1) << 13;
  bool replicated_step() const;
  // Where thread tid's optimizer step writes its new weights' squares per chunk in row-block
  // mode: sq_chunks_, or its replica's own chunks for threads past the first of a replicated
  // step.
  double* block_sq_chunks(int tid);
  // Thread tid's copy of every layer's W^T (wt_) from params.
  void transpose_all(int tid, const T* params);
  // sum(W^2) after the batch's updates (read after the team's barrier): layer by layer from
  // sq_rows_, or from sq_chunks_ in row-block mode; the same bits on any team.
  double updated_sq_norm(const Team& team, const BatchView<T>& input, const T* params,
                         bool blocks);
  // sum(W^2) of params at the start of a pass (weights_sq_chunks, a barrier, the sum).
  double start_sq_norm(const Team& team, const T* params);
  bool use_row_blocks(index_t batch_rows) const;
  T* out(size_t layer, index_t r0 = 0) {
    return acts_.data() + act_offsets_[layer] + r0 * layout_.layers[layer].fan_out;
  }
  T* delta(size_t layer, index_t r0 = 0) {
    return deltas_.data() + act_offsets_[layer] + r0 * layout_.layers[layer].fan_out;
  }
  T* pre(size_t layer, index_t r0 = 0) {
    return pres_.data() + act_offsets_[layer] + r0 * layout_.layers[layer].fan_out;
  }

  NetworkLayout layout_;
  int n_threads_;
  GemmWorkspace ws_;
  BatchInput<T> batch_;
  index_t capacity_rows_ = 0;
  std::vector<index_t> act_offsets_;  // each layer's rows x fan_out block in acts_ and deltas_
  std::vector<T> acts_;
  std::vector<T> deltas_;
  std::vector<T> pres_;  // the hidden layers' pre-activations, only for passes that keep them
  std::vector<T> halves_;  // the first layer's second half-product (Pass::halves)
  std::vector<T> y_batch_;
  std::vector<T> w_batch_;
  std::vector<T> grad_;
  // row-block mode: a raw gradient per block of the batch (a pair's second block, when the
  // thread of its first one runs it, adds its own to the first's)
  std::vector<T> block_grads_;
  // row-block mode: the pairs of blocks split between threads (block_step)
  std::vector<unsigned char> split_pairs_;
  // Sums whose bits do not depend on the team: each term in a fixed slot, the slots summed in
  // order. The new weights' squares per row of each layer (layer after layer), per chunk of
  // kSqChunk weights (weight_sq_chunks), and the loss per chunk of kLossRows rows of a batch.
  std::vector<double> sq_rows_;
  std::vector<double> sq_chunks_;
  std::vector<double> loss_chunks_;
  // Row-block mode: each layer's W^T (fan_out x fan_in, row-major) at its w_offset, so that the
  // blocks' backward products read it in place instead of each block packing the columns of W
  // again; one copy per thread (n_params apart, thread tid's at tid * n_params), written by that
  // thread alone at the start of an epoch segment and after every optimizer step: a shared copy,
  // each thread transposing the weights it stepped, had every line written by both cores.
  std::vector<T> wt_;
  // Row-block mode, replicated step: threads 1.. of the team step their own copy of the
  // parameters and of the optimizer's state (3 * n_params each, thread tid's at (tid - 1) * 3 *
  // n_params: parameters, state_0, state_1), and their own new weights' squares per chunk
  // (block_step)
  std::vector<T> replicas_;
  std::vector<double> replica_sq_chunks_;
  // Prediction in slices: every layer's W packed once per call for the slices' products
  std::vector<T> packed_w_;
  std::vector<index_t> packed_offsets_;
  std::vector<int> packed_nonfinite_;  // (gemm_pack_b's report per layer: Operand::packed_finite)
  TeamChooser chooser_;          // the team of each epoch segment, learnt across epochs
  // The team of each prediction call of at most kLearntCallRows rows (the calls a kept engine
  // serves), learnt across the calls of one size class: every size up to 16 rows, then powers
  // of two (a call's time per row depends on its rows: a short call streams all the weights
  // for a few rows)
  static constexpr index_t kLearntCallRows = 256;
  static constexpr int kPredictClasses = 20;
  static int predict_class(index_t rows);
  std::vector<TeamChooser> predict_choosers_ =
      std::vector<TeamChooser>(kPredictClasses, TeamChooser(TeamChooser::Kind::prediction));
};

}  // namespace cpu
}  // namespace fusedmlp
