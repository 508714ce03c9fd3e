// CPU GEMM with fused epilogues: the one matrix-multiply entry point of the CPU engine.
//
//   C (m x n, row stride ldc) := epilogue(A (m x k) * B (k x n) [+ C if accumulate])
//
// Operands are strided views, so the three training products X W, A^T dZ and dZ W^T need no
// explicit transposes: packing reads whichever layout it is given. The work is split into
// three layers (BLIS): packing (gemm_impl.h), one micro-kernel per instruction set
// (ukernel_*.h) and the blocking loops (gemm_impl.h), compiled once per instruction set and
// chosen at run time (dispatch.cpp). Block sizes live in one table (blocking.h).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "fusedmlp/activation.h"
#include "fusedmlp/common.h"
#include "fusedmlp/optimizer.h"

namespace fusedmlp {
namespace cpu {

// element (i, p) = data[i * rs + p * cs]
template <class T>
struct Operand {
  const T* data;
  index_t rs;
  index_t cs;
};

enum class EpilogueKind : int {
  none = 0,             // C = AB
  bias_activation = 1,  // C = act(AB + bias[j])                      forward
  weight_grad = 2,      // C = (AB + alpha * aux[i, j]) * scale       dW with the L2 term
  activation_grad = 3,  // C = AB * act'(from output aux[i, j])       dA_prev -> dZ_prev
  // g = (AB + alpha * W[i, j]) * scale applied at once by the optimizer to W (= aux, updated
  // in place) and its state; g itself is not stored (C is only scratch between k blocks).
  // Adds sum(W_new^2) to *sq_norm. The weight gradient fused with the optimizer step.
  weight_update_adam = 4,
  weight_update_sgd = 5,
};

template <class T>
struct Epilogue {
  EpilogueKind kind = EpilogueKind::none;
  Activation act = Activation::identity;
  const T* bias = nullptr;
  const T* aux = nullptr;  // same shape as C, row stride ld_aux
  index_t ld_aux = 0;
  T alpha = T(0);
  T scale = T(1);
  // Optional fused column sum of B over k (the bias gradient when B = dZ):
  // colsum_b[j] (+)= colsum_scale * sum_p B(p, j), '+=' when accumulate.
  T* colsum_b = nullptr;
  T colsum_scale = T(1);
  // weight_update_*: the weights (aux, writable), optimizer state with the same layout as C
  T* w_update = nullptr;
  T* state_0 = nullptr;  // adam: m, sgd: velocity
  T* state_1 = nullptr;  // adam: v
  AdamStep<T> adam{};
  SgdStep<T> sgd{};
  double* sq_norm = nullptr;
};

// Scratch memory for packing, owned by the caller (one per trainer or per call), never global.
class GemmWorkspace {
 public:
  GemmWorkspace();
  ~GemmWorkspace();
  GemmWorkspace(const GemmWorkspace&) = delete;
  GemmWorkspace& operator=(const GemmWorkspace&) = delete;
  // 64-byte aligned buffers of at least `bytes`; contents are not preserved when they grow.
  void* shared(std::size_t bytes);
  void* per_thread(int thread, std::size_t bytes);
  void reserve_threads(int n_threads);

 private:
  struct Buffer;
  std::unique_ptr<Buffer> shared_;
  std::vector<std::unique_ptr<Buffer>> threads_;
};

template <class T>
void gemm(index_t m, index_t n, index_t k, Operand<T> a, Operand<T> b, T* c, index_t ldc,
          const Epilogue<T>& ep, bool accumulate, int n_threads, GemmWorkspace& ws);

// Instruction sets with their own micro-kernels.
enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

Isa best_supported_isa();  // what this CPU can run
Isa active_isa();          // what gemm() uses now
void set_active_isa(Isa isa);  // throws if the CPU cannot run it (tests, benchmarks)
std::string isa_name(Isa isa);
Isa isa_from_name(const std::string& name);

}  // namespace cpu
}  // namespace fusedmlp
