// AVX-512 micro-kernels.
//
// Contract: tile[i * NR + j] := sum_{p < kc} A(i, p) * b[p * ldb + j] for the full MR x NR tile.
// B is a panel of NR columns with row stride ldb: packed (ldb = NR, 64-byte aligned) or a
// row-major matrix read in place. A is read in one of two layouts (template argument ROW_A):
//   ROW_A = false: A(i, p) = a[p * lda + i]  (a packed panel with lda = MR, or a column-major
//                  matrix read in place)
//   ROW_A = true:  A(i, p) = a[i * lda + p]  (a row-major matrix read in place)
// The run's rows (ROWS, the first ROWS of the tile: a short edge panel is read in place) and
// the columns its vectors cover (NV: a half, one, one and a half or two vectors) must be
// readable; only those are read and written. tile is 64-byte aligned;
// c (the destination tile, row stride ldc) is prefetched, and read and written by whole tiles
// that go to C (SumsTo, blocking.h, with the bias or stored activations it names); pf's lines (a
// fused update's next tile) are requested spread over the k steps. Every element is summed in the
// same k order whatever its position, so a row's result never depends on the other rows.
// SKIP: the sum runs over the kc steps kept of a panel's steps (its steps whose values are not
// all zeros), the same sums but for a zero's sign; a NaN or infinity of B on a skipped step then
// does not reach C, so for such a B a row's result depends on the values of the panel's other
// rows. ROW_A = false: a packed panel without those steps (compact_zero_steps in gemm_impl.h),
// step q's row of B at b + ks[q]. ROW_A = true: the steps kept of A read in place
// (row_panel_kept_steps in gemm_impl.h), step q's column ks[q] of A and row ks[q] of B, packed
// (ldb = NR).
#pragma once

#include <immintrin.h>

#include <type_traits>

#include "cpu/gemm/blocking.h"

namespace fusedmlp {
namespace cpu {
namespace isa_avx512 {

template <class T>
struct Vec;
template <>
struct Vec<float> {
  using type = __m512;
  static constexpr int width = 16;
  static __m512 zero() { return _mm512_setzero_ps(); }
  static __m512 load(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 bcast(const float* p) { return _mm512_set1_ps(*p); }
  static __m512 fma(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
  static __m512 add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
  // (the second operand when either is NaN or both are zeros, as the instruction does)
  static __m512 max(__m512 a, __m512 b) { return _mm512_max_ps(a, b); }
  // v, with +0 in the lanes where s == 0 (-0 too; NaN is not)
  static __m512 zero_where_zero(__m512 v, __m512 s) {
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(s, zero(), _CMP_EQ_OQ), zero());
  }
  static void store(float* p, __m512 v) { _mm512_store_ps(p, v); }
  static void storeu(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
  // the first n (< width) elements, zeros after them (nothing past them is read)
  static __m512 load_first(const float* p, int n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
  }
};
template <>
struct Vec<double> {
  using type = __m512d;
  static constexpr int width = 8;
  static __m512d zero() { return _mm512_setzero_pd(); }
  static __m512d load(const double* p) { return _mm512_loadu_pd(p); }
  static __m512d bcast(const double* p) { return _mm512_set1_pd(*p); }
  static __m512d fma(__m512d a, __m512d b, __m512d c) { return _mm512_fmadd_pd(a, b, c); }
  static __m512d add(__m512d a, __m512d b) { return _mm512_add_pd(a, b); }
  // (the second operand when either is NaN or both are zeros, as the instruction does)
  static __m512d max(__m512d a, __m512d b) { return _mm512_max_pd(a, b); }
  // v, with +0 in the lanes where s == 0 (-0 too; NaN is not)
  static __m512d zero_where_zero(__m512d v, __m512d s) {
    return _mm512_mask_mov_pd(v, _mm512_cmp_pd_mask(s, zero(), _CMP_EQ_OQ), zero());
  }
  static void store(double* p, __m512d v) { _mm512_store_pd(p, v); }
  static void storeu(double* p, __m512d v) { _mm512_storeu_pd(p, v); }
  static __m512d load_first(const double* p, int n) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1u), p);
  }
};

// The 256-bit halves of those vectors, for an edge panel whose last vector of columns is at most
// half used: on cores that run a 512-bit multiply-add as two 256-bit halves (Zen 4) half the
// cost of a full vector, elsewhere the same throughput per instruction. Each lane's chain is the
// same.
template <class T>
struct Vec256;
template <>
struct Vec256<float> {
  using type = __m256;
  static constexpr int width = 8;
  static __m256 zero() { return _mm256_setzero_ps(); }
  static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
  static __m256 bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static __m256 low(__m512 v) { return _mm512_castps512_ps256(v); }
  static __m256 fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
  static void store(float* p, __m256 v) { _mm256_store_ps(p, v); }
};
template <>
struct Vec256<double> {
  using type = __m256d;
  static constexpr int width = 4;
  static __m256d zero() { return _mm256_setzero_pd(); }
  static __m256d load(const double* p) { return _mm256_loadu_pd(p); }
  static __m256d bcast(const double* p) { return _mm256_broadcast_sd(p); }
  static __m256d low(__m512d v) { return _mm512_castpd512_pd256(v); }
  static __m256d fma(__m256d a, __m256d b, __m256d c) { return _mm256_fmadd_pd(a, b, c); }
  static void store(double* p, __m256d v) { _mm256_store_pd(p, v); }
};

// MR = 12 rows x NR = two vectors: 24 accumulators, 2 B vectors, 1 broadcast.
template <class T, class Blocking>
struct Kernel12x2 : Blocking {
  using V = Vec<T>;
  using R = typename V::type;
  static constexpr int MR = Blocking::MR;
  static constexpr int NR = Blocking::NR;
  static_assert(MR == 12 && NR == 2 * V::width, "tile shape");
  // short_rows (gemm_impl.h): up to 4 rows of a short A per pass over B, and the vectors of
  // columns each group of rows keeps in registers (rows x vectors accumulators, a vector of B
  // each and a broadcast: at most 25 of the 32 registers; two rows 8 vectors, enough
  // independent chains for both FMA units and whole cache lines of B per row; one row 12)
  static constexpr int SHORT_ROWS = 4;
  static constexpr int short_vecs(int rows) {
    return rows == 1 ? 12 : (rows == 2 ? 8 : (rows == 3 ? 5 : 4));
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

  // The vectors of columns (NV): 2, the whole tile; 1, its first vector (an edge panel at most
  // half as wide); 0, the first half of that vector (at most a quarter as wide, QUARTER_EDGE);
  // 3, the first vector and half the second (at most three quarters as wide,
  // THREE_QUARTER_EDGE). The same chains for those columns, fewer multiply-adds. ROWS: the
  // tile's first ROWS rows (A's other rows are not read, the tile's not written).
  static constexpr bool QUARTER_EDGE = true;
  static constexpr bool THREE_QUARTER_EDGE = true;
  // TO other than SumsTo::tile (a whole tile: NV = 2, ROWS = MR): the sums go to C itself
  // (blocking.h: C added when c_acc, then the bias and relu, or relu's backward pass; ep and
  // ld_ep: the bias, or the stored activations), instead of to the tile (DIRECT_C in
  // gemm_impl.h: the same bits as the tile's write-back, its additions in the same order).
  static constexpr bool DIRECT_C = true;
  // An edge panel at most a quarter as wide of a column-major A: by row vectors, 4 columns a pass
  // over 6 vectors of rows (gemm_impl.h).
  static constexpr int ROW_EDGE_PASS = 4;
  // SKIP: kc steps kept of a panel without its all-zero steps, ks[q] step q's offset from b of
  // its row of B (A packed, lda = MR: compact_zero_steps, gemm_impl.h), or its index p (A
  // row-major in place: row_panel_kept_steps), A(i, p) and B's row p (B packed, ldb = NR).
  static constexpr bool SKIP_STEPS = true;
  template <bool ROW_A, int NV = 2, int ROWS = MR, SumsTo TO = SumsTo::tile, bool SKIP = false>
  static void run(index_t kc, const T* a, index_t lda, const T* b, index_t ldb, T* tile, T* c,
                  index_t ldc, LinePrefetch pf = {}, bool c_acc = false,
                  const T* ep = nullptr, index_t ld_ep = 0, const std::int32_t* ks = nullptr) {
    static_assert(NV >= 0 && NV <= 3, "a half, one, one and a half or two vectors of columns");
    static_assert(ROWS >= 1 && ROWS <= MR, "rows of the tile");
    static_assert(TO == SumsTo::tile || (NV == 2 && ROWS == MR),
                  "C written directly by whole tiles only");
    using H = Vec256<T>;
    static_assert(NR / 4 == H::width && V::width + H::width == 3 * NR / 4,
                  "a half vector is a quarter of the tile's columns");
    using W0 = std::conditional_t<NV == 0, H, V>;  // the first columns' vectors
    using W1 = std::conditional_t<NV == 3, H, V>;  // the second's
    using R0 = typename W0::type;
    using R1 = typename W1::type;
    constexpr bool SECOND = NV >= 2;
    for (int i = 0; i < ROWS; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    R0 c0[MR];
    R1 c1[MR];
#pragma GCC unroll 12
    for (int i = 0; i < ROWS; ++i) {
      c0[i] = W0::zero();
      if constexpr (SECOND) c1[i] = W1::zero();
    }
    // Row-major A: three row groups, each addressed as base + {0, 1, 2, 3} * lda (no pointer
    // past the rows an edge panel has).
    const T* a0 = a;
    const T* a4 = ROWS > 4 ? a + 4 * lda : a;
    const T* a8 = ROWS > 8 ? a + 8 * lda : a;
    const index_t l1 = lda, l2 = 2 * lda, l3 = 3 * lda;
    auto k_step = [&]() __attribute__((always_inline)) {
      // (SKIP: the step's row of B at its offset, or, A row-major, at its index)
      const index_t kp = SKIP ? *ks++ : 0;
      const T* bk = SKIP ? b + (ROW_A ? kp * NR : kp) : b;  // (ROW_A: B packed, ldb = NR)
      const R0 b0 = W0::load(bk);
      R1 b1;
      if constexpr (SECOND) b1 = W1::load(bk + V::width);
      _mm_prefetch(reinterpret_cast<const char*>(bk + 8 * ldb), _MM_HINT_T0);
      auto step = [&](int i, const T* ap) __attribute__((always_inline)) {
        const R0 ai = W0::bcast(ap);
        c0[i] = W0::fma(ai, b0, c0[i]);
        if constexpr (NV == 3)
          c1[i] = H::fma(H::low(ai), b1, c1[i]);
        else if constexpr (SECOND)
          c1[i] = V::fma(ai, b1, c1[i]);
      };
      if constexpr (ROW_A) {
        const index_t offs[4] = {0, l1, l2, l3};
        const T* g0 = SKIP ? a0 + kp : a0;
        const T* g4 = SKIP ? a4 + kp : a4;
        const T* g8 = SKIP ? a8 + kp : a8;
#pragma GCC unroll 12
        for (int i = 0; i < ROWS; ++i) step(i, (i < 4 ? g0 : (i < 8 ? g4 : g8)) + offs[i & 3]);
        if constexpr (!SKIP) {
          ++a0;
          ++a4;
          ++a8;
        }
      } else {
#pragma GCC unroll 12
        for (int i = 0; i < ROWS; ++i) step(i, a + i);
        a += lda;
      }
      if constexpr (!SKIP) b += ldb;
    };
    run_steps(kc, pf, k_step);
    if constexpr (TO != SumsTo::tile) {
      sums_to_c<V, TO>(c0, c1, c, ldc, c_acc, ep, ld_ep);
    } else {
#pragma GCC unroll 12
      for (int i = 0; i < ROWS; ++i) {
        W0::store(tile + i * NR, c0[i]);
        if constexpr (SECOND) W1::store(tile + i * NR + V::width, c1[i]);
      }
    }
  }
};

template <class T>
struct Kernel;
template <>
struct Kernel<float> : Kernel12x2<float, BlockingAvx512F32> {};
template <>
struct Kernel<double> : Kernel12x2<double, BlockingAvx512F64> {};

}  // namespace isa_avx512
}  // namespace cpu
}  // namespace fusedmlp
