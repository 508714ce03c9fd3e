// Shared definitions for every engine: the host+device marker and index types.
#pragma once

#include <cstdint>

// Every function in csrc/include/fusedmlp/ is FUSEDMLP_HD: __host__ __device__ under nvcc.
// On the host it is also always_inline: the CPU GEMM compiles these headers once per
// instruction set (AVX-512, AVX2, generic); forcing inlining keeps an AVX-512 copy from being
// shared, through the linker, with code that must run on a machine without AVX-512.
#if defined(__CUDACC__)
#define FUSEDMLP_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define FUSEDMLP_HD inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define FUSEDMLP_HD __forceinline
#else
#define FUSEDMLP_HD inline
#endif

namespace fusedmlp {

using index_t = std::int64_t;

}  // namespace fusedmlp
