// Portable micro-kernels in plain C++: the compiler vectorizes the j loop for whatever the
// baseline instruction set is (SSE2 on x86-64, NEON on aarch64). Same contract as
// ukernel_avx512.h.
#pragma once

#include "cpu/gemm/blocking.h"

namespace fusedmlp {
namespace cpu {
namespace isa_generic {

template <class T, class B>
struct PortableKernel : B {
  static constexpr int MR = B::MR;
  static constexpr int NR = B::NR;

  // The multiply-add of the micro-kernel's chains (a separate multiply and add here).
  static T madd(T a, T b, T c) { return a * b + c; }

  // NV = 1: only the first NR / 2 columns of the tile (an edge panel at most half as wide).
  template <bool ROW_A, int NV = 2>
  static void run(index_t kc, const T* a, index_t lda, const T* b, index_t ldb, T* tile, const T*,
                  index_t, LinePrefetch pf = {}) {
    run_steps(0, pf, [] {});  // (all at once: this kernel is not tuned)
    constexpr int W = NR * NV / 2;
    T acc[MR][W];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < W; ++j) acc[i][j] = T(0);
    for (index_t p = 0; p < kc; ++p) {
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const T ai = ROW_A ? a[i * lda + p] : a[p * lda + i];
#pragma omp simd
        for (int j = 0; j < W; ++j) acc[i][j] += ai * b[j];
      }
      b += ldb;
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < W; ++j) tile[i * NR + j] = acc[i][j];
  }
};

template <class T>
struct Kernel;
template <>
struct Kernel<float> : PortableKernel<float, BlockingGenericF32> {};
template <>
struct Kernel<double> : PortableKernel<double, BlockingGenericF64> {};

}  // namespace isa_generic
}  // namespace cpu
}  // namespace fusedmlp
