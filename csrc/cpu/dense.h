// Fused dense layers of the CPU engine: the forward pass (X W + b and the activation in the
// GEMM's write-back), the backward pass (activation derivative from the stored outputs folded
// into dZ, dW with its L2 term, db in the same pass), the fused output loss, and the optimizer
// pass over the flat parameter buffer. trainer.cpp strings them into whole epochs.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/gemm/gemm.h"
#include "fusedmlp/common.h"
#include "fusedmlp/network.h"
#include "fusedmlp/optimizer.h"

namespace fusedmlp {
namespace cpu {

enum class ScalarType : int { f32 = 0, f64 = 1 };

// The training or prediction input as the user gave it: dense with any strides and either
// float type (converted while gathering, never copied as a whole), or CSR.
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

// One mini-batch of input rows in the compute type: a dense row-major buffer, or CSR.
template <class T>
struct BatchInput {
  index_t rows = 0;
  index_t cols = 0;
  bool sparse = false;
  const T* dense = nullptr;  // rows x cols, row stride ld
  index_t ld = 0;
  std::vector<index_t> indptr;  // sparse batch
  std::vector<index_t> indices;
  std::vector<T> values;
  std::vector<T> dense_storage;
};

// Gathers rows rows[0..count) of the input (or rows first..first+count when rows is null)
// into batch, converting to T. Reads a dense, C-contiguous input of type T in place.
template <class T>
void gather_input(const InputMatrix& x, const index_t* rows, index_t first, index_t count,
                  BatchInput<T>& batch, int n_threads);

// out (rows x fan_out) = act(input W + b) for a dense or sparse batch.
template <class T>
void dense_forward(const BatchInput<T>& input, const T* w, const T* b, index_t fan_out,
                   Activation act, T* out, int n_threads, GemmWorkspace& ws);

// Same for a hidden-layer input already in the compute type (rows x fan_in, row stride ld).
template <class T>
void dense_forward(const T* input, index_t rows, index_t fan_in, index_t ld, const T* w,
                   const T* b, index_t fan_out, Activation act, T* out, int n_threads,
                   GemmWorkspace& ws);

// dW = (input^T dz [+ dW if accumulate] + alpha W) * scale  (L2 term and scale only when
// finish), db = colsum(dz) * scale (accumulated likewise). With finish = false the raw sums
// are accumulated so the whole-data gradient can be built chunk by chunk.
template <class T>
void dense_weight_grad(const BatchInput<T>& input, const T* dz, index_t fan_out, const T* w,
                       T alpha, T scale, bool accumulate, bool finish, T* dw, T* db,
                       int n_threads, GemmWorkspace& ws);
template <class T>
void dense_weight_grad(const T* input, index_t rows, index_t fan_in, index_t ld, const T* dz,
                       index_t fan_out, const T* w, T alpha, T scale, bool accumulate,
                       bool finish, T* dw, T* db, int n_threads, GemmWorkspace& ws);

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
// goes from the GEMM's registers into the update (dense input), b's from the fused column sum.
// Adds sum(W_new^2) to *sq_norm. params and the optimizer state are the flat buffers;
// scratch holds at least the layer's fan_in x fan_out + fan_out elements.
template <class T>
void dense_weight_update(const BatchInput<T>* input, const T* dense_input, index_t rows,
                         const T* dz, const LayerLayout& layer, T* params,
                         const OptimizerStep<T>& opt, T alpha, T scale, T* scratch,
                         double* sq_norm, int n_threads, GemmWorkspace& ws);

// Completes accumulated raw sums: dW = (dW + alpha W) * scale, db *= scale.
template <class T>
void finish_weight_grad(T* dw, T* db, const T* w, index_t fan_in, index_t fan_out, T alpha,
                        T scale, int n_threads);

// dz_prev (rows x fan_in) = (dz W^T) * act'(a_prev), the derivative taken from the stored
// outputs a_prev of the previous layer.
template <class T>
void dense_backward_data(const T* dz, index_t rows, index_t fan_out, const T* w, index_t fan_in,
                         const T* a_prev, Activation act, T* dz_prev, int n_threads,
                         GemmWorkspace& ws);

// Output layer: z (rows x n_out) becomes the output activation in place, delta = (a - y) * w.
// Returns the sum of the weighted per-sample losses (not yet divided).
template <class T>
double output_loss_grad(Loss loss, T* z, const T* y, const T* sample_weight, T* delta,
                        index_t rows, index_t n_out);

// Applies the output activation in place (prediction).
template <class T>
void output_activation(Loss loss, T* z, index_t rows, index_t n_out);

// Sum of squares of every weight matrix (not the biases): the L2 penalty's norm.
template <class T>
double weights_sq_norm(const NetworkLayout& layout, const T* params, int n_threads);

// One optimizer step over a range of the flat buffer (offset..offset+n of params, state and
// grad); returns sum(p_new^2) when want_norm.
template <class T>
double optimizer_update(T* params, const T* grad, index_t offset, index_t n,
                        const OptimizerStep<T>& opt, bool want_norm, int n_threads);

}  // namespace cpu
}  // namespace fusedmlp
