// The GEMM compiled for the generic instruction set (see CMakeLists.txt for its flags).
#define FUSEDMLP_ISA_NS isa_generic
#include "cpu/gemm/ukernel_generic.h"
#include "cpu/gemm/gemm_impl.h"

namespace fusedmlp {
namespace cpu {
namespace isa_generic {

template <class T>
void gemm_team(const Team& team, index_t m, index_t n, index_t k, Operand<T> a, Operand<T> b,
               T* c, index_t ldc, const Epilogue<T>& ep, bool accumulate, GemmWorkspace& ws) {
  gemm_team_run<T, Kernel<T>>(team, m, n, k, a, b, c, ldc, ep, accumulate, ws);
}

template <class T>
std::size_t gemm_scratch_bytes(index_t m, index_t n, index_t k, bool b_row_major) {
  return sizeof(T) * static_cast<std::size_t>(gemm_scratch_elems<T, Kernel<T>>(m, n, k, b_row_major));
}

template <class T>
double optimizer_pass(T* params, T* state_0, T* state_1, index_t n, const OptimizerPass<T>& pass) {
  return pass.adam ? optimizer_pass_run<T, true>(params, state_0, state_1, n, pass)
                   : optimizer_pass_run<T, false>(params, state_0, state_1, n, pass);
}

#define FUSEDMLP_INSTANTIATE(T)                                                                 \
  template void gemm_team<T>(const Team&, index_t, index_t, index_t, Operand<T>, Operand<T>, T*, \
                             index_t, const Epilogue<T>&, bool, GemmWorkspace&);                \
  template std::size_t gemm_scratch_bytes<T>(index_t, index_t, index_t, bool);                 \
  template double optimizer_pass<T>(T*, T*, T*, index_t, const OptimizerPass<T>&);
FUSEDMLP_INSTANTIATE(float)
FUSEDMLP_INSTANTIATE(double)
#undef FUSEDMLP_INSTANTIATE

}  // namespace isa_generic
}  // namespace cpu
}  // namespace fusedmlp
