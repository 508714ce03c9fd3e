// The GEMM compiled for the generic instruction set (see CMakeLists.txt for its flags).
#define FUSEDMLP_ISA_NS isa_generic
#include "cpu/gemm/ukernel_generic.h"
#include "cpu/gemm/gemm_impl.h"

namespace fusedmlp {
namespace cpu {
namespace isa_generic {

template <class T>
void gemm(index_t m, index_t n, index_t k, Operand<T> a, Operand<T> b, T* c, index_t ldc,
          const Epilogue<T>& ep, bool accumulate, int n_threads, GemmWorkspace& ws) {
  gemm_run<T, Kernel<T>>(m, n, k, a, b, c, ldc, ep, accumulate, n_threads, ws);
}

template void gemm<float>(index_t, index_t, index_t, Operand<float>, Operand<float>, float*,
                          index_t, const Epilogue<float>&, bool, int, GemmWorkspace&);
template void gemm<double>(index_t, index_t, index_t, Operand<double>, Operand<double>, double*,
                           index_t, const Epilogue<double>&, bool, int, GemmWorkspace&);

}  // namespace isa_generic
}  // namespace cpu
}  // namespace fusedmlp
