// AVX-512 micro-kernels.
//
// Contract: tile[i * NR + j] := sum_{p < kc} a[p * a_ks + i] * b[p * NR + j] for the full
// MR x NR tile. a is an A panel with MR consecutive rows per k step (a_ks = MR when packed,
// the leading dimension when read in place); b is a packed B panel, 64-byte aligned, NR
// consecutive columns per k step. tile is 64-byte aligned. Edges are zero-padded by packing;
// the write-back (gemm_impl.h) stores only the valid m x n part. Every element is summed in
// the same k order whatever its position, so a row's result never depends on the other rows.
#pragma once

#include <immintrin.h>

#include "cpu/gemm/blocking.h"

namespace fusedmlp {
namespace cpu {
namespace isa_avx512 {

template <class T>
struct Kernel;

template <>
struct Kernel<float> : BlockingAvx512F32 {  // 12 x 32: 24 accumulators, 2 B vectors
  static void run(index_t kc, const float* a, index_t a_ks, const float* b, float* tile) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm512_setzero_ps();
      c1[i] = _mm512_setzero_ps();
    }
    for (index_t p = 0; p < kc; ++p) {
      const __m512 b0 = _mm512_load_ps(b);
      const __m512 b1 = _mm512_load_ps(b + 16);
      _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR), _MM_HINT_T0);
#pragma GCC unroll 12
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i]);
        c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
        c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
      }
      a += a_ks;
      b += NR;
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      _mm512_store_ps(tile + i * NR, c0[i]);
      _mm512_store_ps(tile + i * NR + 16, c1[i]);
    }
  }
};

template <>
struct Kernel<double> : BlockingAvx512F64 {  // 12 x 16
  static void run(index_t kc, const double* a, index_t a_ks, const double* b, double* tile) {
    __m512d c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm512_setzero_pd();
      c1[i] = _mm512_setzero_pd();
    }
    for (index_t p = 0; p < kc; ++p) {
      const __m512d b0 = _mm512_load_pd(b);
      const __m512d b1 = _mm512_load_pd(b + 8);
      _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR), _MM_HINT_T0);
#pragma GCC unroll 12
      for (int i = 0; i < MR; ++i) {
        const __m512d ai = _mm512_set1_pd(a[i]);
        c0[i] = _mm512_fmadd_pd(ai, b0, c0[i]);
        c1[i] = _mm512_fmadd_pd(ai, b1, c1[i]);
      }
      a += a_ks;
      b += NR;
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      _mm512_store_pd(tile + i * NR, c0[i]);
      _mm512_store_pd(tile + i * NR + 8, c1[i]);
    }
  }
};

}  // namespace isa_avx512
}  // namespace cpu
}  // namespace fusedmlp
