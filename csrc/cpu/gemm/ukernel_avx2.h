// AVX2 + FMA micro-kernels. Same contract as ukernel_avx512.h.
#pragma once

#include <immintrin.h>

#include "cpu/gemm/blocking.h"

namespace fusedmlp {
namespace cpu {
namespace isa_avx2 {

template <class T>
struct Kernel;

template <>
struct Kernel<float> : BlockingAvx2F32 {  // 6 x 16: 12 accumulators, 2 B vectors
  static void run(index_t kc, const float* a, index_t a_ks, const float* b, float* tile) {
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm256_setzero_ps();
      c1[i] = _mm256_setzero_ps();
    }
    for (index_t p = 0; p < kc; ++p) {
      const __m256 b0 = _mm256_load_ps(b);
      const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        const __m256 ai = _mm256_broadcast_ss(a + i);
        c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
        c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
      }
      a += a_ks;
      b += NR;
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      _mm256_store_ps(tile + i * NR, c0[i]);
      _mm256_store_ps(tile + i * NR + 8, c1[i]);
    }
  }
};

template <>
struct Kernel<double> : BlockingAvx2F64 {  // 6 x 8
  static void run(index_t kc, const double* a, index_t a_ks, const double* b, double* tile) {
    __m256d c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm256_setzero_pd();
      c1[i] = _mm256_setzero_pd();
    }
    for (index_t p = 0; p < kc; ++p) {
      const __m256d b0 = _mm256_load_pd(b);
      const __m256d b1 = _mm256_load_pd(b + 4);
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        const __m256d ai = _mm256_broadcast_sd(a + i);
        c0[i] = _mm256_fmadd_pd(ai, b0, c0[i]);
        c1[i] = _mm256_fmadd_pd(ai, b1, c1[i]);
      }
      a += a_ks;
      b += NR;
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      _mm256_store_pd(tile + i * NR, c0[i]);
      _mm256_store_pd(tile + i * NR + 4, c1[i]);
    }
  }
};

}  // namespace isa_avx2
}  // namespace cpu
}  // namespace fusedmlp
