// AVX2 + FMA micro-kernels. Same contract as ukernel_avx512.h.
#pragma once

#include <immintrin.h>

#include "cpu/gemm/blocking.h"

namespace fusedmlp {
namespace cpu {
namespace isa_avx2 {

template <class T>
struct Vec;
template <>
struct Vec<float> {
  using type = __m256;
  static constexpr int width = 8;
  static __m256 zero() { return _mm256_setzero_ps(); }
  static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
  static __m256 bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static __m256 fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
  static __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
  // (the second operand when either is NaN or both are zeros, as the instruction does)
  static __m256 max(__m256 a, __m256 b) { return _mm256_max_ps(a, b); }
  // v, with +0 in the lanes where s == 0 (-0 too; NaN is not)
  static __m256 zero_where_zero(__m256 v, __m256 s) {
    return _mm256_andnot_ps(_mm256_cmp_ps(s, zero(), _CMP_EQ_OQ), v);
  }
  static void store(float* p, __m256 v) { _mm256_store_ps(p, v); }
  static void storeu(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
  // the first n (< width) elements, zeros after them (nothing past them is read)
  static __m256 load_first(const float* p, int n) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes));
  }
};
template <>
struct Vec<double> {
  using type = __m256d;
  static constexpr int width = 4;
  static __m256d zero() { return _mm256_setzero_pd(); }
  static __m256d load(const double* p) { return _mm256_loadu_pd(p); }
  static __m256d bcast(const double* p) { return _mm256_broadcast_sd(p); }
  static __m256d fma(__m256d a, __m256d b, __m256d c) { return _mm256_fmadd_pd(a, b, c); }
  static __m256d add(__m256d a, __m256d b) { return _mm256_add_pd(a, b); }
  // (the second operand when either is NaN or both are zeros, as the instruction does)
  static __m256d max(__m256d a, __m256d b) { return _mm256_max_pd(a, b); }
  // v, with +0 in the lanes where s == 0 (-0 too; NaN is not)
  static __m256d zero_where_zero(__m256d v, __m256d s) {
    return _mm256_andnot_pd(_mm256_cmp_pd(s, zero(), _CMP_EQ_OQ), v);
  }
  static void store(double* p, __m256d v) { _mm256_store_pd(p, v); }
  static void storeu(double* p, __m256d v) { _mm256_storeu_pd(p, v); }
  static __m256d load_first(const double* p, int n) {
    const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), lanes));
  }
};

// The 128-bit halves of those vectors, for an edge panel of at most a quarter of NR columns: on
// cores that split a 256-bit multiply-add into two 128-bit operations (first-generation Zen) half
// the cost, elsewhere the same throughput per instruction. Each lane's chain is the same.
template <class T>
struct Vec128;
template <>
struct Vec128<float> {
  using type = __m128;
  static constexpr int width = 4;
  static __m128 zero() { return _mm_setzero_ps(); }
  static __m128 load(const float* p) { return _mm_loadu_ps(p); }
  static __m128 bcast(const float* p) { return _mm_broadcast_ss(p); }
  static __m128 fma(__m128 a, __m128 b, __m128 c) { return _mm_fmadd_ps(a, b, c); }
  static void store(float* p, __m128 v) { _mm_store_ps(p, v); }
};
template <>
struct Vec128<double> {
  using type = __m128d;
  static constexpr int width = 2;
  static __m128d zero() { return _mm_setzero_pd(); }
  static __m128d load(const double* p) { return _mm_loadu_pd(p); }
  static __m128d bcast(const double* p) { return _mm_loaddup_pd(p); }
  static __m128d fma(__m128d a, __m128d b, __m128d c) { return _mm_fmadd_pd(a, b, c); }
  static void store(double* p, __m128d v) { _mm_store_pd(p, v); }
};

// MR = 6 rows x NR = two vectors: 12 accumulators, 2 B vectors, 1 broadcast (16 registers).
template <class T, class Blocking>
struct Kernel6x2 : Blocking {
  using V = Vec<T>;
  using R = typename V::type;
  static constexpr int MR = Blocking::MR;
  static constexpr int NR = Blocking::NR;
  static_assert(MR == 6 && NR == 2 * V::width, "tile shape");
  // short_rows (gemm_impl.h): up to 5 rows of a short A per pass over B (every short A: MR is
  // 6), and the vectors of columns each group of rows keeps in registers (at most 13 of the 16:
  // 9 accumulators, 3 B vectors and a broadcast for 3 rows, 10, 2 and 1 for 5; one row 12
  // vectors, B read by the multiply-adds)
  static constexpr int SHORT_ROWS = 5;
  static constexpr int short_vecs(int rows) {
    return rows == 1 ? 12 : (rows == 2 ? 4 : (rows == 3 ? 3 : 2));
  }

  // The multiply-add of the micro-kernel's chains, for code that reproduces them element-wise.
  static T madd(T a, T b, T c) {
    if constexpr (sizeof(T) == 4)
      return __builtin_fmaf(a, b, c);
    else
      return __builtin_fma(a, b, c);
  }

  // An edge panel of ROWS < MR rows runs the kernel on those rows alone (gemm_impl.h): A read in
  // place, no rows of zeros multiplied, each row's chains the full tile's.
  static constexpr bool EDGE_ROWS = true;

  // NV = 1: only the tile's first vector of columns (an edge panel at most half as wide), the
  // same chains for those columns, half the multiply-adds; NV = 0: its first 128-bit half (an
  // edge panel at most a quarter as wide, QUARTER_EDGE). ROWS: the tile's first ROWS rows (A's
  // other rows are not read, the tile's not written).
  static constexpr bool QUARTER_EDGE = true;
  static_assert(NR / 4 <= Vec128<T>::width, "a quarter-width edge fits a 128-bit vector");
  // TO other than SumsTo::tile (a whole tile: NV = 2, ROWS = MR): the sums go to C itself
  // (blocking.h: C added when c_acc, then the bias and relu, or relu's backward pass; ep and
  // ld_ep: the bias, or the stored activations), instead of to the tile (DIRECT_C in
  // gemm_impl.h: the same bits as the tile's write-back, its additions in the same order).
  static constexpr bool DIRECT_C = true;
  // An edge panel at most a quarter as wide of a column-major A: by row vectors, 2 columns a pass
  // over 6 vectors of rows (gemm_impl.h).
  static constexpr int ROW_EDGE_PASS = 2;
  // SKIP: kc steps kept of a panel without its all-zero steps, ks[q] step q's offset from b of
  // its row of B (A packed, lda = MR: compact_zero_steps, gemm_impl.h), or its index p (A
  // row-major in place: row_panel_kept_steps), A(i, p) and B's row p (B packed, ldb = NR).
  static constexpr bool SKIP_STEPS = true;
  // (always inlined: since the epilogue variants, GCC left the column-major whole-tile and
  // edge-row variants out of line, and the weight gradients' plain products of 50 x 50 x 50 to
  // 300 x 200 x 100 ran 1-5% slower; inlined, 0.4-2.2% of that back, bench/RESULTS.md)
  template <bool ROW_A, int NV = 2, int ROWS = MR, SumsTo TO = SumsTo::tile, bool SKIP = false>
  FUSEDMLP_ALWAYS_INLINE static void run(index_t kc, const T* a, index_t lda, const T* b,
                                         index_t ldb, T* tile, T* c, index_t ldc,
                                         LinePrefetch pf = {}, bool c_acc = false,
                                         const T* ep = nullptr, index_t ld_ep = 0,
                                         const std::int32_t* ks = nullptr) {
    static_assert(NV >= 0 && NV <= 2, "a half vector, one or two vectors of columns");
    static_assert(ROWS >= 1 && ROWS <= MR, "rows of the tile");
    static_assert(TO == SumsTo::tile || (NV == 2 && ROWS == MR),
                  "C written directly by whole tiles only");
    if constexpr (NV == 0)
      chains<Vec128<T>, ROW_A, 1, ROWS, SumsTo::tile, SKIP>(kc, a, lda, b, ldb, tile, c, ldc, pf,
                                                            c_acc, ep, ld_ep, ks);
    else
      chains<V, ROW_A, NV, ROWS, TO, SKIP>(kc, a, lda, b, ldb, tile, c, ldc, pf, c_acc, ep, ld_ep,
                                           ks);
  }

 private:
  template <class W, bool ROW_A, int NV, int ROWS, SumsTo TO, bool SKIP>
  // (inlined into run: one function per kernel variant, as before)
  FUSEDMLP_ALWAYS_INLINE static void chains(index_t kc, const T* a, index_t lda, const T* b,
                                            index_t ldb, T* tile, T* c, index_t ldc,
                                            LinePrefetch pf, bool c_acc,
                                            const T* ep, index_t ld_ep, const std::int32_t* ks) {
    using Reg = typename W::type;
    for (int i = 0; i < ROWS; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    Reg c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int i = 0; i < ROWS; ++i) {
      c0[i] = W::zero();
      if constexpr (NV == 2) c1[i] = W::zero();
    }
    const T* a0 = a;
    const T* a3 = ROWS > 3 ? a + 3 * lda : a;  // (no pointer past the rows an edge panel has)
    const index_t l1 = lda, l2 = 2 * lda;
    auto k_step = [&]() __attribute__((always_inline)) {
      // (SKIP: the step's row of B at its offset, or, A row-major, at its index)
      const index_t kp = SKIP ? *ks++ : 0;
      // (ROW_A: B packed, ldb = NR, a shift; a multiply by ldb a step made AVX2's products with
      // a quarter of their steps left out 16% slower, Fashion-MNIST's 11%, bench/RESULTS.md)
      const T* bk = SKIP ? b + (ROW_A ? kp * NR : kp) : b;
      const Reg b0 = W::load(bk);
      const Reg b1 = NV == 2 ? W::load(bk + W::width) : b0;
      if constexpr (ROW_A) {
        const T* g0 = SKIP ? a0 + kp : a0;
        const T* g3 = SKIP ? a3 + kp : a3;
        const T* rows[MR] = {g0, ROWS > 1 ? g0 + l1 : g0, ROWS > 2 ? g0 + l2 : g0,
                             g3, ROWS > 4 ? g3 + l1 : g3, ROWS > 5 ? g3 + l2 : g3};
#pragma GCC unroll 6
        for (int i = 0; i < ROWS; ++i) {
          const Reg ai = W::bcast(rows[i]);
          c0[i] = W::fma(ai, b0, c0[i]);
          if constexpr (NV == 2) c1[i] = W::fma(ai, b1, c1[i]);
        }
        if constexpr (!SKIP) {
          ++a0;
          ++a3;
        }
      } else {
#pragma GCC unroll 6
        for (int i = 0; i < ROWS; ++i) {
          const Reg ai = W::bcast(a + i);
          c0[i] = W::fma(ai, b0, c0[i]);
          if constexpr (NV == 2) c1[i] = W::fma(ai, b1, c1[i]);
        }
        a += lda;
      }
      if constexpr (!SKIP) b += ldb;
    };
    run_steps(kc, pf, k_step);
    if constexpr (TO != SumsTo::tile) {
      sums_to_c<W, TO>(c0, c1, c, ldc, c_acc, ep, ld_ep);
    } else {
#pragma GCC unroll 6
      for (int i = 0; i < ROWS; ++i) {
        W::store(tile + i * NR, c0[i]);
        if constexpr (NV == 2) W::store(tile + i * NR + W::width, c1[i]);
      }
    }
  }
};

template <class T>
struct Kernel;
template <>
struct Kernel<float> : Kernel6x2<float, BlockingAvx2F32> {};
template <>
struct Kernel<double> : Kernel6x2<double, BlockingAvx2F64> {};

}  // namespace isa_avx2
}  // namespace cpu
}  // namespace fusedmlp
