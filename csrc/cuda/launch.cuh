// The one way kernels are launched: kernel<<<grid, block, smem, stream>>>(args...) under nvcc,
// the simulator otherwise (same kernel source, same arguments, passed by value).
#pragma once

#include "cuda/runtime.h"

namespace fusedmlp {
namespace cuda {

template <class... KernelArgs, class... Args>
void launch(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, std::size_t smem,
            cudaStream_t stream, Args... args) {
#if defined(__CUDACC__)
  kernel<<<grid, block, smem, stream>>>(args...);
#else
  (void)smem;  // the simulator has no dynamic shared memory; kernels use static tiles
  sim::launch(reinterpret_cast<const void*>(kernel), grid, block, stream, [=] { kernel(args...); });
#endif
  FUSEDMLP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda
}  // namespace fusedmlp
