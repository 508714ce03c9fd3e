// Fused dense layers of the CPU engine: the forward pass (X W + b and the activation in the
// GEMM's write-back), the backward pass (activation derivative from the stored outputs folded
// into dZ; the weight gradient handed from the GEMM's registers to the optimizer; the bias
// gradient summed while dZ is packed), the fused output loss, and the optimizer pass over the
// flat parameter buffer. trainer.cpp strings them into whole epochs.
//
// Every function here is one member's share of a team (see gemm.h): it splits its work by
// team.tid, never synchronises and never throws; the caller puts barriers between dependent
// steps and prepares every buffer beforehand.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/gemm/gemm.h"
#include "fusedmlp/common.h"
#include "fusedmlp/dropout.h"
#include "fusedmlp/network.h"
#include "fusedmlp/optimizer.h"

namespace fusedmlp {
namespace cpu {

enum class ScalarType : int { f32 = 0, f64 = 1 };

// The training or prediction input as the Python side passes it: dense with any strides and
// either float type (converted while gathering, not copied as a whole; training gets a copy in
// rows of a small X whose rows are not contiguous, _engine.as_engine_input), or CSR.
struct InputMatrix {
  index_t n_rows = 0;
  index_t n_cols = 0;
  bool sparse = false;
  ScalarType type = ScalarType::f64;
  // dense: element (i, j) = data[i * rs + j * cs]
  const void* data = nullptr;
  index_t rs = 0, cs = 0;
  // CSR: row i holds values[indptr[i] .. indptr[i+1]) at columns indices[...]
  const std::int64_t* indptr = nullptr;
  const std::int32_t* indices32 = nullptr;
  const std::int64_t* indices64 = nullptr;
};

// Rows of the network's input in the compute type: a dense row-major block, or CSR. A view:
// the storage belongs to a BatchInput.
template <class T>
struct BatchView {
  index_t rows = 0;
  index_t cols = 0;
  bool sparse = false;
  const T* dense = nullptr;  // rows x cols, row stride ld
  index_t ld = 0;
  const index_t* indptr = nullptr;  // rows + 1 absolute offsets into indices/values
  const index_t* indices = nullptr;
  const T* values = nullptr;

  // rows [first, first + count) of this view
  BatchView slice(index_t first, index_t count) const {
    BatchView v = *this;
    v.rows = count;
    if (sparse)
      v.indptr = indptr + first;
    else
      v.dense = dense + first * ld;
    return v;
  }
};

// One mini-batch gathered from the user's input: its storage and the view of it.
template <class T>
struct BatchInput {
  BatchView<T> view;
  std::vector<index_t> indptr;
  std::vector<index_t> indices;
  std::vector<T> values;
  std::vector<T> dense_storage;
};

// Sizes batch's buffers for every batch of `order` (or of consecutive chunks of batch_rows
// when order is null), outside any team: gathering then never allocates.
template <class T>
void prepare_batches(const InputMatrix& x, const index_t* order, index_t n_order,
                     index_t batch_rows, BatchInput<T>& batch);

// Rows rows[0..count) of the input (or first..first+count when rows is null) into batch, in
// the compute type; a dense C-contiguous input of type T is read in place. Dense rows are
// split across the team; a sparse batch is built by thread 0. Barrier before use.
template <class T>
void gather_input(const Team& team, const InputMatrix& x, const index_t* rows, index_t first,
                  index_t count, BatchInput<T>& batch);

// Whether gather_input copies the rows of a dense input (not sparse, not read in place), which
// then gather_dense_rows can do a range at a time.
template <class T>
bool gathers_dense_rows(const InputMatrix& x, const index_t* rows);

// Rows [i0, i1) of the `count`-row batch gather_input would build from x's rows rows[0..count)
// (rows not null, gathers_dense_rows), copied by the calling thread alone into the batch's storage: the part a
// row-block epoch's thread uses. Returns the whole batch's view; batch.view is not touched.
template <class T>
BatchView<T> gather_dense_rows(const InputMatrix& x, const index_t* rows, index_t count, index_t i0,
                               index_t i1, BatchInput<T>& batch);

// Rows [first, first + count) of a dense input as a view in the compute type, for the calling
// thread alone: x itself where gather_input reads it in place, else a copy in dst (count x
// n_cols, row-major).
template <class T>
BatchView<T> dense_rows(const InputMatrix& x, index_t first, index_t count, T* dst);

// dst[i, :] = src[rows[i], :] for rows split across the team.
template <class T>
void gather_rows(const Team& team, const T* src, index_t width, const index_t* rows, index_t count,
                 T* dst);

// out (rows x fan_out) = act(input W + b), for the network's input (dense or sparse); `hidden`
// carries the activation's parameter and, in training, where z goes and the dropout mask.
// w_packed, optional: W as gemm_pack_b packed it (Operand::packed), w_packed_finite its report that
// W is all finite (Operand::packed_finite). zero_steps (a prediction's): the product leaves out the
// input's all-zero steps where W is finite (Operand::zero_steps). nonfinite, optional (dense input
// only; a sparse input is not checked): *nonfinite := 1 when an element of the input is NaN or
// infinite, checked by the product as it reads it (Epilogue::a_nonfinite).
template <class T>
void dense_forward(const Team& team, const BatchView<T>& input, const T* w, const T* b,
                   index_t fan_out, Activation act, const HiddenUnits<T>& hidden, T* out,
                   GemmWorkspace& ws, const T* w_packed = nullptr, int* nonfinite = nullptr,
                   bool w_packed_finite = false, bool zero_steps = false);

// ... and for a hidden layer's input (rows x fan_in, row stride ld)
template <class T>
void dense_forward(const Team& team, const T* input, index_t rows, index_t fan_in, index_t ld,
                   const T* w, const T* b, index_t fan_out, Activation act,
                   const HiddenUnits<T>& hidden, T* out, GemmWorkspace& ws,
                   const T* w_packed = nullptr, int* nonfinite = nullptr,
                   bool w_packed_finite = false, bool zero_steps = false);

// Where dense_forward_halves splits the depth of a first layer of fan_in inputs: at the first
// row of W that the second thread of a team of two steps in the fused weight update (for the
// 6- and 4-row kernels up to a panel before it), so that each half of the forward pass reads the
// rows of W its own thread wrote. 0 below kHalvesMinDepth inputs: no split. (Half of the 12-row
// panels: gemm_team's row split on two threads for the 12-row kernels; one split for every
// instruction set, so that the split adds no difference between them.)
constexpr index_t kHalvesMinDepth = 512;
constexpr index_t forward_halves_split(index_t fan_in) {
  return fan_in < kHalvesMinDepth ? 0 : (fan_in + 11) / 12 / 2 * 12;
}

// A dense first layer's forward pass in two halves of its depth (split = forward_halves_split):
// out = act((X[:, :split] W[:split, :] + X[:, split:] W[split:, :]) + b), hidden as for
// dense_forward. The first half's product goes to out, the second's to `second` (rows x fan_out),
// computed by the two halves of an even team at once (an odd team computes one after the other);
// a barrier, then the sum, the bias and the write-back of hidden, row by row over the team. On a
// team of two each half's product reads only the rows of W its own thread stepped in the last
// fused update, and the halves cost the same; the bits do not depend on the team. A barrier
// before out is read.
template <class T>
void dense_forward_halves(const Team& team, const BatchView<T>& input, index_t split, const T* w,
                          const T* b, index_t fan_out, Activation act,
                          const HiddenUnits<T>& hidden, T* out, T* second, GemmWorkspace& ws);

// dz_prev (rows x fan_in) = (dz W^T) [* dropout mask] * act'(stored), the derivative taken
// from the previous layer's outputs a_prev, or from its pre-activations when stored_is_pre.
// W^T is read from w (fan_in x fan_out), or from wt (fan_out x fan_in, row-major) when given:
// a row-major W^T is read in place by the GEMM where w's columns would be packed (the same
// sums, bit for bit).
template <class T>
void dense_backward_data(const Team& team, const T* dz, index_t rows, index_t fan_out, const T* w,
                         index_t fan_in, const T* stored, bool stored_is_pre, Activation act,
                         const HiddenUnits<T>& hidden, T* dz_prev, GemmWorkspace& ws,
                         const T* wt = nullptr);

// One optimizer step over flat arrays: which solver, its constants, and its state (same layout
// as the parameters).
template <class T>
struct OptimizerStep {
  Solver solver = Solver::adam;
  AdamStep<T> adam{};
  SgdStep<T> sgd{};
  T* state_0 = nullptr;  // adam: m, sgd: velocity
  T* state_1 = nullptr;  // adam: v
};

// The weight and bias gradients of one layer, applied at once by the optimizer: W's gradient
// goes from the GEMM's registers into the update, b's from the column sum fused into packing
// dz. sq_rows[r] := sum_j W_new(r, j)^2 for each of the fan_in rows (Epilogue::sq_rows), except
// with sparse input (weight_rows_sq after the team's barrier). The layer input is `input` (the
// network's input) or, when that is null, dense_input (rows x fan_in). scratch holds fan_in x
// fan_out + fan_out elements at the layer's offsets (used between k blocks, and for sparse input).
template <class T>
void dense_weight_update(const Team& team, const BatchView<T>* input, const T* dense_input,
                         index_t rows, const T* dz, const LayerLayout& layer, T* params,
                         const OptimizerStep<T>& opt, T alpha, T scale, T* scratch,
                         double* sq_rows, GemmWorkspace& ws);

// Raw gradient sums: dW (+)= input^T dz, db (+)= colsum(dz) at the layer's offsets in grad
// (the L-BFGS path chunk by chunk, and the row blocks of small networks).
template <class T>
void dense_weight_grad_sum(const Team& team, const BatchView<T>* input, const T* dense_input,
                           index_t rows, const T* dz, const LayerLayout& layer, bool accumulate,
                           T* grad, GemmWorkspace& ws);

// Completes the sums: dW = (dW + alpha W) * scale, db *= scale.
template <class T>
void finish_weight_grad(const Team& team, const LayerLayout& layer, const T* params, T alpha,
                        T scale, T* grad);

// Output layer, the layout's head (loss.h): z (rows x n_out) becomes the output activation in
// place, delta = d loss / d z (times the sample weight). Returns this thread's sum of weighted
// per-sample losses (not yet divided).
template <class T>
double output_loss_grad(const Team& team, const NetworkLayout& layout, T* z, const T* y,
                        const T* sample_weight, T* delta, index_t rows, index_t n_out);

// The same over fixed chunks of kLossRows rows, this thread's share of them: chunk_loss[c] := the
// sum over chunk c's rows, whatever the team, for a total summed over the chunks in order.
constexpr index_t kLossRows = 16;
inline index_t loss_chunks(index_t rows) { return (rows + kLossRows - 1) / kLossRows; }
template <class T>
void output_loss_grad_chunks(const Team& team, const NetworkLayout& layout, T* z, const T* y,
                             const T* sample_weight, T* delta, index_t rows, index_t n_out,
                             double* chunk_loss);

// Applies the output activation to rows of z in float64 into out (prediction).
template <class T>
void output_activation(const Team& team, const NetworkLayout& layout, const T* z, double* out,
                       index_t rows, index_t n_out);

// A softmax head's class of each row of z (rows x n_out, the pre-activations): labels[i] := the
// index numpy's argmax gives on the row output_activation writes (the first of equal largest
// values, the first NaN). The softmax is run only on rows where it could change the order: those
// with a value that is not finite, or an earlier output within kLabelGap below the row's largest
// (exp(0) is 1 exactly; an output at least kLabelGap below it has exp at most 1 - 2^-42 even
// with exp's error of an ulp, and both divided by the row's sum stay in that order), so the
// label is the largest logit's index elsewhere. Returns whether any row's outputs were not all
// finite (a row with an infinite or NaN value: its softmax, run, has NaN throughout, or is finite
// when the only such values are -inf).
constexpr double kLabelGap = 0x1p-40;
template <class T>
bool output_labels(const Team& team, const T* z, std::intptr_t* labels, index_t rows,
                   index_t n_out);

// The sum of squares of every weight matrix (not the biases) in chunks of kSqChunk weights of
// one layer (a layer's last chunk shorter): their number, and this thread's share of them,
// chunk_sq[c] := chunk c's sum, for a total summed over the chunks in order (sum_in_order),
// whose bits do not depend on the team.
inline index_t layer_sq_chunks(const LayerLayout& layer) {
  return (layer.fan_in * layer.fan_out + kSqChunk - 1) / kSqChunk;
}
index_t weight_sq_chunks(const NetworkLayout& layout);
template <class T>
void weights_sq_chunks(const Team& team, const NetworkLayout& layout, const T* params,
                       double* chunk_sq);

// sq_rows[r] := sum_j W(r, j)^2 for this thread's share of a layer's rows.
template <class T>
void weight_rows_sq(const Team& team, const LayerLayout& layer, const T* params, double* sq_rows);

// v[0] + v[1] + ... + v[n - 1], in that order.
inline double sum_in_order(const double* v, index_t n) {
  double s = 0.0;
  for (index_t i = 0; i < n; ++i) s += v[i];
  return s;
}

// The team's barrier (nothing for a team of one).
void team_barrier(const Team& team);

// [begin, end) of `count` items for this thread.
inline void team_range(const Team& team, index_t count, index_t& begin, index_t& end) {
  begin = count * team.tid / team.nth;
  end = count * (team.tid + 1) / team.nth;
}

}  // namespace cpu
}  // namespace fusedmlp
