// Packing and blocking loops of the CPU GEMM, shared by every instruction set.
//
// Included once by each gemm_<isa>.cpp after it defines FUSEDMLP_ISA_NS and its micro-kernel
// `Kernel<T>` (contract: tile := A_panel * B_panel for one MR x NR tile, see ukernel_*.h).
// Everything here lives in that instruction set's namespace and uses no standard-library
// templates, so no function compiled for one instruction set can be shared through the
// linker with code compiled for another.
//
// Work split: the threads of a team take disjoint column ranges of C (NR-column panels split at
// half panels, so that no thread gets more than half a panel's columns more than another), or
// disjoint MR-row panels when the epilogue updates weights (each thread then streams a contiguous
// block of W and its optimizer state) or when C has too few column panels (also when its row
// panels split more evenly, see split_m). A weight update always has
// each row of W on one thread (row panels, or one thread when W has fewer than MR rows): its
// squares per row (Epilogue::sq_rows) are summed tile after tile in column order. No thread
// waits on another inside a GEMM.
//
// Loop structure per thread:
//   for each KC-deep block of k:
//     pack this thread's B panels (KC x NR each), fusing the column sum of B if asked (or read
//     them where gemm_pack_b packed them beforehand: Operand::packed)
//     for each MC-row block of A:
//       A is read in place (row- or column-major); other layouts, and short edge panels for
//       kernels that cannot run on fewer than MR rows, are packed into MR-row panels by the
//       thread itself
//       tiles in column-panel order (a B panel stays in L1) or row-band order (an A panel
//       does): micro-kernel, then the write-back applies accumulation and, on the last k
//       block, the epilogue while the tile is in L1; a last panel at most a quarter as wide,
//       with A column-major in place (kernels with ROW_EDGE_PASS), after the block's tiles by row
//       vectors instead (edge_columns_by_rows), written back in the same tiles.
// Three special shapes: fewer than MR rows (single-row prediction, tiny layers) read B in place
// and sum in exactly the micro-kernel's order, so a row's result does not depend on how many
// rows came with it; C with at most NARROW_N columns (a single-output layer) is computed
// column by column instead of in mostly empty NR-wide tiles; and a product of depth one
// (rank_one_rows) is formed element by element and written back in wide tiles.
#ifndef FUSEDMLP_ISA_NS
#error "define FUSEDMLP_ISA_NS before including gemm_impl.h"
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "cpu/gemm/blocking.h"
#include "cpu/gemm/gemm.h"
#include "fusedmlp/activation.h"

namespace fusedmlp {
namespace cpu {
namespace FUSEDMLP_ISA_NS {

FUSEDMLP_ALWAYS_INLINE index_t imin(index_t a, index_t b) {
  return a < b ? a : b;
}

// A panel (MR rows x kc) -> dst[p * MR + i], zero rows past mr.
template <class T, int MR>
void pack_a_panel(const Operand<T>& a, index_t i0, int mr, index_t p0, index_t kc, T* dst) {
  if (a.cs == 1) {
    for (int i = 0; i < mr; ++i) {
      const T* src = a.data + (i0 + i) * a.rs + p0;
      for (index_t p = 0; p < kc; ++p) dst[p * MR + i] = src[p];
    }
    for (int i = mr; i < MR; ++i)
      for (index_t p = 0; p < kc; ++p) dst[p * MR + i] = T(0);
  } else if (a.rs == 1 && mr == MR) {
    // a column-major A (the weight gradient's X^T): each k step's MR values are contiguous,
    // copied as vectors (the general loop below reads them one by one)
    for (index_t p = 0; p < kc; ++p) {
      const T* __restrict src = a.data + i0 + (p0 + p) * a.cs;
      T* __restrict d = dst + p * MR;
#pragma omp simd
      for (int i = 0; i < MR; ++i) d[i] = src[i];
    }
  } else {
    for (index_t p = 0; p < kc; ++p) {
      const T* src = a.data + i0 * a.rs + (p0 + p) * a.cs;
      T* d = dst + p * MR;
      for (int i = 0; i < mr; ++i) d[i] = src[i * a.rs];
      for (int i = mr; i < MR; ++i) d[i] = T(0);
    }
  }
}

// Whether any of the MR values at v is not a zero: their bits or-ed, without their signs. With
// AVX-512 and AVX2 as whole vectors (as a loop over the values, a weight gradient's product of
// dense values 4-7% slower on AVX-512, bench/RESULTS.md).
template <class T, int MR>
FUSEDMLP_ALWAYS_INLINE bool step_nonzero(const T* v) {
  constexpr int kBytes = MR * static_cast<int>(sizeof(T));
  static_assert(kBytes % 8 == 0, "whole 8-byte words");
#if defined(__AVX512F__)
  // (64-byte vectors, the last one masked: one load a step of 12 floats)
  constexpr int kWords = kBytes / 4;
  __m512i bits = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int w = 0; w < kWords; w += 16) {
    const __mmask16 m = kWords - w >= 16 ? __mmask16(0xffff)
                                         : static_cast<__mmask16>((1u << (kWords - w)) - 1);
    bits = _mm512_or_si512(bits, _mm512_maskz_loadu_epi32(m, reinterpret_cast<const int*>(v) + w));
  }
  const __m512i no_sign = sizeof(T) == 4 ? _mm512_set1_epi32(0x7fffffff)
                                         : _mm512_set1_epi64(0x7fffffffffffffffLL);
  return _mm512_test_epi32_mask(bits, no_sign) != 0;
#elif defined(__AVX2__)
  // (32-, 16- and 8-byte vectors)
  const char* s = reinterpret_cast<const char*>(v);
  __m256i bits = _mm256_setzero_si256();
#pragma GCC unroll 4
  for (int o = 0; o + 32 <= kBytes; o += 32)
    bits = _mm256_or_si256(bits, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + o)));
  constexpr int kTail = kBytes / 32 * 32;
  if constexpr (kBytes - kTail >= 16)
    bits = _mm256_or_si256(bits, _mm256_zextsi128_si256(_mm_loadu_si128(
                                     reinterpret_cast<const __m128i*>(s + kTail))));
  if constexpr ((kBytes - kTail) % 16 == 8)
    bits = _mm256_or_si256(bits, _mm256_zextsi128_si256(_mm_loadl_epi64(
                                     reinterpret_cast<const __m128i*>(s + kBytes - 8))));
  const __m256i no_sign = sizeof(T) == 4 ? _mm256_set1_epi32(0x7fffffff)
                                         : _mm256_set1_epi64x(0x7fffffffffffffffLL);
  return _mm256_testz_si256(bits, no_sign) == 0;
#else
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  U bits = 0;
  for (int i = 0; i < MR; ++i) {
    U u;
    std::memcpy(&u, v + i, sizeof(U));
    bits |= u << 1;
  }
  return bits != 0;
#endif
}

// (the part of a panel's steps that must be all zeros for the kernels to leave them out: 1 / 8)
constexpr int kZeroStepsMinPart = 8;
// A row-major A's zero steps in a product with a bias and activation (gemm_team_run's
// skip_row_panels, a prediction's): counted in depth blocks of at least kRowSkipMinDepth steps,
// where a panel's count costs little beside its tiles; the block's first kRowProbePanels panels'
// counts decide whether it leaves out steps at all. (A plain product, the first layer's forward
// in halves in training, counts every panel.)
constexpr index_t kRowSkipMinDepth = 128;
constexpr index_t kRowProbePanels = 4;

// The steps of a row-major A's panel (MR whole rows from i0, kc steps from p0) whose MR values
// are not all zeros (of either sign), read in place, when the steps that are all zeros are at
// least an eighth of them (kZeroStepsMinPart): their indices p written to ks in order, their
// number returned (the kernels' SKIP with ROW_A then read A and B at those steps); kc, and ks
// untouched, for a panel of fewer zero steps. The zero steps are counted first (a dense panel
// costs that count alone), then each step writes its index to the next place, which the next
// step takes over when the step is all zeros (ks[q] past the number returned: unspecified; kc
// places written at most). With AVX2 and AVX-512, a 32-byte vector of steps at a time, the rows'
// bits or-ed, the zero steps a mask.
template <class T, int MR>
index_t row_panel_kept_steps(const Operand<T>& a, index_t i0, index_t p0, index_t kc,
                             std::int32_t* ks) {
  const T* const base = a.data + i0 * a.rs + p0;
  const index_t rs = a.rs;
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr U kNoSign = ~U(0) >> 1;
  auto zero_step = [&](index_t p) -> unsigned {  // (1: step p all zeros)
    U bits = 0;
    for (int i = 0; i < MR; ++i) {
      U u;
      std::memcpy(&u, base + i * rs + p, sizeof u);
      bits |= u;
    }
    return (bits & kNoSign) == 0 ? 1u : 0u;
  };
  index_t vec_end = 0;  // (the steps before it: by vectors)
#if defined(__AVX2__)
  constexpr int W = 32 / static_cast<int>(sizeof(T));
  const __m256i no_sign = sizeof(T) == 4 ? _mm256_set1_epi32(0x7fffffff)
                                         : _mm256_set1_epi64x(0x7fffffffffffffffLL);
  // (bit j: step p + j all zeros)
  auto zero_steps = [&](index_t p) __attribute__((always_inline)) -> unsigned {
    __m256i bits = _mm256_setzero_si256();
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i)
      bits = _mm256_or_si256(
          bits, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + i * rs + p)));
    bits = _mm256_and_si256(bits, no_sign);
    if constexpr (sizeof(T) == 4)
      return static_cast<unsigned>(_mm256_movemask_ps(
          _mm256_castsi256_ps(_mm256_cmpeq_epi32(bits, _mm256_setzero_si256()))));
    else
      return static_cast<unsigned>(_mm256_movemask_pd(
          _mm256_castsi256_pd(_mm256_cmpeq_epi64(bits, _mm256_setzero_si256()))));
  };
  vec_end = kc / W * W;
#endif
  index_t zeros = 0;
#if defined(__AVX2__)
  for (index_t p = 0; p < vec_end; p += W) zeros += __builtin_popcount(zero_steps(p));
#endif
  for (index_t p = vec_end; p < kc; ++p) zeros += zero_step(p);
  if (kZeroStepsMinPart * zeros < kc) return kc;
  index_t q = 0;
#if defined(__AVX2__)
  for (index_t p = 0; p < vec_end; p += W) {
    const unsigned zero = zero_steps(p);
#pragma GCC unroll 8
    for (int j = 0; j < W; ++j) {
      ks[q] = static_cast<std::int32_t>(p + j);
      q += ((zero >> j) & 1u) ^ 1u;
    }
  }
#endif
  for (index_t p = vec_end; p < kc; ++p) {
    ks[q] = static_cast<std::int32_t>(p);
    q += zero_step(p) ^ 1u;
  }
  return q;
}

// A panel pack_a_panel packed (MR rows x kc steps at dst[p * MR]) without its steps whose MR values
// are all zeros (of either sign), when they are at least an eighth of its steps: the steps kept
// moved down in place, step p's values to dst[q * MR] and ks[q] = p * ldb, q counting the steps
// kept, whose number is returned (kc: the panel as it was and ks untouched, the steps too few to
// repay the kernel that skips them, whose steps measured 4-12% slower: bench/RESULTS.md); the
// places from that number on hold what is left of the move (unspecified). The kernels that run only
// those steps (SKIP_STEPS) make the same sums wherever B is finite, but for the sign of a zero: a
// zero times a finite value is a zero, which leaves a nonzero chain as it is, while a chain that a
// product rounded (or flushed) to -0 would turn +0 with a +0 step added and keeps -0 without it. A
// NaN or an infinity of B on a skipped step does not reach C, where the full product's 0 * NaN
// would carry it; in training such a B is a non-finite gradient or weight, which the bias sums and
// the other rows carry anyway. (A Fashion-MNIST batch's weight gradient X^T dZ: a third of the
// 6-pixel panels' steps are all zeros on AVX2, a fifth of the 12-pixel panels' on AVX-512; MNIST's
// two thirds and a half. The panel is scanned after pack_a_panel, in L1: checked while it was
// packed, a weight gradient's product of dense values was 3-5% slower on AVX-512,
// bench/RESULTS.md.)
template <class T, int MR>
index_t compact_zero_steps(T* dst, index_t kc, std::int32_t* ks, index_t ldb) {
  // (every 8th step first: when none of those is all zeros, the panel is taken as it is, and a
  // panel of dense values costs an eighth of the scan)
  bool sampled_zero = false;
  for (index_t p = 0; p < kc; p += 8) sampled_zero |= !step_nonzero<T, MR>(dst + p * MR);
  if (!sampled_zero) return kc;
  index_t kept = 0;
  for (index_t p = 0; p < kc; ++p) kept += step_nonzero<T, MR>(dst + p * MR) ? 1 : 0;
  if (kZeroStepsMinPart * (kc - kept) < kc) return kc;
  // (without branches: every step is moved to place q, its offset written to ks[q], and q counts
  // it when it is kept, so that a zero step's place is taken by the next step; the MR values moved
  // as vectors, not one by one: the branches and the values one by one cost 3% of an AVX-512
  // Fashion-MNIST epoch, bench/RESULTS.md)
  index_t q = 0;
  for (index_t p = 0; p < kc; ++p) {
    const bool nonzero = step_nonzero<T, MR>(dst + p * MR);
    T step[MR];
    std::memcpy(step, dst + p * MR, sizeof step);
    std::memcpy(dst + q * MR, step, sizeof step);
    ks[q] = static_cast<std::int32_t>(p * ldb);
    q += nonzero ? 1 : 0;
  }
  return q;
}

// *nonfinite := 1 (a relaxed atomic store) when one of the first n sums is not finite (v - v is 0
// for a finite v, NaN otherwise).
template <class T>
void report_nonfinite_sums(const T* sums, int n, int* nonfinite) {
  bool finite = true;
  for (int j = 0; j < n; ++j) finite = finite && sums[j] - sums[j] == T(0);
  if (!finite) __atomic_store_n(nonfinite, 1, __ATOMIC_RELAXED);
}

// B panel (kc x NR columns from j0) -> dst[p * NR + j], zero columns past nr. When colsum is
// given, colsum[j] (+)= scale * sum_p B(p, j) for this block ('=' when set). With dst null
// only the column sum is taken (B is then read in place by the micro-kernel). nonfinite, optional
// (with dst): report_nonfinite_sums of the columns' sums over the block, which a NaN or infinity
// of B, or finite values whose sum overflows, makes not finite.
template <class T, int NR>
void pack_b_panel(const Operand<T>& b, index_t p0, index_t kc, index_t j0, int nr, T* dst,
                  T* colsum, T scale, bool set, int* nonfinite = nullptr) {
  T sums[NR];
  for (int j = 0; j < NR; ++j) sums[j] = T(0);
  if (dst == nullptr) {
    if (colsum == nullptr) return;
    for (index_t p = 0; p < kc; ++p) {
      const T* src = b.data + (p0 + p) * b.rs + j0 * b.cs;
      if (b.cs == 1 && nr == NR) {
#pragma omp simd
        for (int j = 0; j < NR; ++j) sums[j] += src[j];
      } else {
        for (int j = 0; j < nr; ++j) sums[j] += src[j * b.cs];
      }
    }
  } else if (b.cs == 1) {
    for (index_t p = 0; p < kc; ++p) {
      const T* src = b.data + (p0 + p) * b.rs + j0;
      T* d = dst + p * NR;
      if (nr == NR) {
#pragma omp simd
        for (int j = 0; j < NR; ++j) {
          d[j] = src[j];
          sums[j] += src[j];
        }
      } else {
        for (int j = 0; j < nr; ++j) {
          d[j] = src[j];
          sums[j] += src[j];
        }
        for (int j = nr; j < NR; ++j) d[j] = T(0);
      }
    }
  } else {
    for (int j = 0; j < nr; ++j) {
      const T* src = b.data + p0 * b.rs + (j0 + j) * b.cs;
      T s = T(0);
      for (index_t p = 0; p < kc; ++p) {
        const T v = src[p * b.rs];
        dst[p * NR + j] = v;
        s += v;
      }
      sums[j] = s;
    }
    for (index_t p = 0; p < kc; ++p)
      for (int j = nr; j < NR; ++j) dst[p * NR + j] = T(0);
  }
  if (colsum != nullptr) {
    for (int j = 0; j < nr; ++j) colsum[j] = (set ? T(0) : colsum[j]) + scale * sums[j];
  }
  if (nonfinite != nullptr) report_nonfinite_sums(sums, nr, nonfinite);
}

template <class K, class = void>
struct has_vector_registers : std::false_type {};
template <class K>
struct has_vector_registers<K, std::void_t<typename K::V>> : std::true_type {};

// pack_b_panel for kernels with vector registers (K::V) and a row-major B: each row of the panel
// as NR / width vectors (the edge's last one a masked load, nothing past column nr read), the
// column sums in registers, lane by lane in the order of the rows as in pack_b_panel (a sum kept
// in memory would wait on its own store every row). Other kernels and layouts: pack_b_panel.
template <class T, class K>
void pack_b(const Operand<T>& b, index_t p0, index_t kc, index_t j0, int nr, T* dst, T* colsum,
            T scale, bool set, int* nonfinite = nullptr) {
  constexpr int NR = K::NR;
  if constexpr (has_vector_registers<K>::value) {
    if (b.cs == 1) {
      if (dst == nullptr && colsum == nullptr) return;
      using V = typename K::V;
      using Reg = typename V::type;
      constexpr int W = V::width;
      constexpr int NV = NR / W;
      static_assert(NV * W == NR, "NR is a whole number of vectors");
      Reg acc[NV];
      int lanes[NV];
      for (int v = 0; v < NV; ++v) {
        acc[v] = V::zero();
        lanes[v] = static_cast<int>(imin(W, nr - imin(nr, v * W)));  // (nr <= NR)
      }
      const T* src = b.data + p0 * b.rs + j0;
      for (index_t p = 0; p < kc; ++p, src += b.rs) {
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          Reg x;
          if (nr == NR || lanes[v] == W)
            x = V::load(src + v * W);
          else
            x = lanes[v] > 0 ? V::load_first(src + v * W, lanes[v]) : V::zero();
          acc[v] = V::add(acc[v], x);
          if (dst != nullptr) V::storeu(dst + p * NR + v * W, x);
        }
      }
      if (colsum != nullptr || nonfinite != nullptr) {
        T sums[NR];
        for (int v = 0; v < NV; ++v) V::storeu(sums + v * W, acc[v]);
        if (colsum != nullptr)
          for (int j = 0; j < nr; ++j) colsum[j] = (set ? T(0) : colsum[j]) + scale * sums[j];
        if (nonfinite != nullptr) report_nonfinite_sums(sums, nr, nonfinite);
      }
      return;
    }
  }
  pack_b_panel<T, NR>(b, p0, kc, j0, nr, dst, colsum, scale, set, nonfinite);
}

// The depth blocks of a product of depth k: n_kblocks of kc_max rows, the last one shorter
// (balanced).
template <class K>
FUSEDMLP_ALWAYS_INLINE void depth_blocks(index_t k, index_t& n_kblocks, index_t& kc_max) {
  n_kblocks = (k + K::KC - 1) / K::KC;
  kc_max = (k + n_kblocks - 1) / n_kblocks;
}

// B packed whole (gemm_pack_b): depth block kb's panels from element p0 * n_panels * NR, panel
// pj of it kc * NR elements after the previous one.
template <class T, class K>
index_t packed_b_elems(index_t n, index_t k) {
  if (n <= 0 || k <= 0) return 0;
  return k * ((n + K::NR - 1) / K::NR) * K::NR;
}

template <class T, class K>
void pack_b_whole(const Team& team, index_t n, index_t k, const Operand<T>& b, T* dst,
                  int* nonfinite) {
  if (n <= 0 || k <= 0) return;
  constexpr int NR = K::NR;
  index_t n_kblocks, kc_max;
  depth_blocks<K>(k, n_kblocks, kc_max);
  const index_t n_panels = (n + NR - 1) / NR;
  const index_t units = n_kblocks * n_panels;
  const index_t u0 = units * team.tid / team.nth, u1 = units * (team.tid + 1) / team.nth;
  for (index_t u = u0; u < u1; ++u) {
    const index_t kb = u / n_panels, pj = u % n_panels;
    const index_t p0 = kb * kc_max;
    const index_t kc = imin(kc_max, k - p0);
    const index_t j0 = pj * NR;
    pack_b<T, K>(b, p0, kc, j0, static_cast<int>(imin(NR, n - j0)),
                 dst + p0 * n_panels * NR + pj * kc * NR, nullptr, T(1), false, nonfinite);
  }
}

// A write-back of nr < NR columns: with AVX-512, every row runs the whole tile's NR lanes, those
// past nr masked (masked loads and stores fault on no lane, so the loop reads nothing past nr);
// elsewhere the loop stops at nr and the compiler finishes it with a scalar remainder loop
// (AVX2's masked stores are slow on AMD cores, NEON has none). The remainder loop had a 12 x 18
// edge tile's last 2 columns one element at a time: about a quarter of the bias-activation
// write-back's samples in a California housing epoch (bench/RESULTS.md).
#ifdef __AVX512F__
constexpr bool kMaskedRemainder = true;
#else
constexpr bool kMaskedRemainder = false;
#endif

// C tile := op(tile [+ C]); op(v, i, j) is the epilogue at tile coordinates (i, j). N: the
// columns when known at compile time (a full tile's NR: whole vectors, no remainder), else 0.
template <class T, int NR, int N, class Op>
FUSEDMLP_ALWAYS_INLINE void write_tile_cols(const T* tile, int mr, int nr, T* c, index_t ldc,
                                            bool acc, Op op) {
  for (int i = 0; i < mr; ++i) {
    T* crow = c + i * ldc;
    const T* t = tile + i * NR;
    if constexpr (N > 0) {
      if (acc) {
#pragma omp simd
        for (int j = 0; j < N; ++j) crow[j] = op(t[j] + crow[j], i, j);
      } else {
#pragma omp simd
        for (int j = 0; j < N; ++j) crow[j] = op(t[j], i, j);
      }
    } else if (acc) {
#pragma omp simd
      for (int j = 0; j < (kMaskedRemainder ? NR : nr); ++j)
        if (!kMaskedRemainder || j < nr) crow[j] = op(t[j] + crow[j], i, j);
    } else {
#pragma omp simd
      for (int j = 0; j < (kMaskedRemainder ? NR : nr); ++j)
        if (!kMaskedRemainder || j < nr) crow[j] = op(t[j], i, j);
    }
  }
}

template <class T, int NR, class Op>
FUSEDMLP_ALWAYS_INLINE void write_tile(const T* tile, int mr, int nr, T* c, index_t ldc, bool acc,
                                       Op op) {
  if (nr == NR)
    write_tile_cols<T, NR, NR>(tile, mr, nr, c, ldc, acc, op);
  else
    write_tile_cols<T, NR, 0>(tile, mr, nr, c, ldc, acc, op);
}

template <class T, int NR, Activation A>
FUSEDMLP_ALWAYS_INLINE void write_bias_activation(const T* tile, int mr, int nr, T* c, index_t ldc,
                                                  bool acc, const T* bias, T p) {
  write_tile<T, NR>(tile, mr, nr, c, ldc, acc,
                    [bias, p](T v, int, int j) { return activate<A>(v + bias[j], p); });
}

// The forward write-back of a hidden layer that keeps its pre-activations or drops units: one
// row at a time, the row's share of the dropout bits hashed once, the loop over units plain
// enough to vectorise.
template <class T, int NR, Activation A, bool DROP, bool ACC>
void write_hidden_forward_rows(const T* tile, int mr, int nr, T* c, index_t ldc,
                               const T* __restrict bias, const HiddenUnits<T>& h, index_t i0,
                               index_t j0) {
  const T p = h.param, scale = h.keep_scale;
  const std::uint32_t threshold = h.threshold;
  for (int i = 0; i < mr; ++i) {
    T* __restrict crow = c + i * ldc;
    T* __restrict pre = h.pre + (i0 + i) * h.ld_pre + j0;
    const T* __restrict t = tile + i * NR;
    const std::uint32_t row_hash = DROP ? dropout_row_hash(h.key, h.row0 + i0 + i) : 0u;
#pragma omp simd
    for (int j = 0; j < (kMaskedRemainder ? NR : nr); ++j) {  // (kMaskedRemainder)
      if (kMaskedRemainder && j >= nr) continue;
      const T z = (ACC ? t[j] + crow[j] : t[j]) + bias[j];
      pre[j] = z;
      const T a = activate<A>(z, p);
      if constexpr (DROP)
        crow[j] = dropout_bits_in_row(row_hash, j0 + j) < threshold ? T(0) : a * scale;
      else
        crow[j] = a;
    }
  }
}

template <class T, int NR, Activation A>
void write_hidden_forward(const T* tile, int mr, int nr, T* c, index_t ldc, bool acc,
                          const T* bias, const HiddenUnits<T>& h, index_t i0, index_t j0) {
  // (the accumulate and dropout cases as loops of their own: the vectoriser takes no branch)
  if (h.dropout())
    acc ? write_hidden_forward_rows<T, NR, A, true, true>(tile, mr, nr, c, ldc, bias, h, i0, j0)
        : write_hidden_forward_rows<T, NR, A, true, false>(tile, mr, nr, c, ldc, bias, h, i0, j0);
  else
    acc ? write_hidden_forward_rows<T, NR, A, false, true>(tile, mr, nr, c, ldc, bias, h, i0, j0)
        : write_hidden_forward_rows<T, NR, A, false, false>(tile, mr, nr, c, ldc, bias, h, i0, j0);
}

template <class T, int NR, Activation A>
FUSEDMLP_ALWAYS_INLINE void write_activation_grad(const T* tile, int mr, int nr, T* c, index_t ldc,
                                                  bool acc, const T* aux, index_t ld, T p) {
  write_tile<T, NR>(tile, mr, nr, c, ldc, acc, [aux, ld, p](T v, int i, int j) {
    return backprop_activation<A>(v, aux[i * ld + j], p);
  });
}

// The backward write-back from stored pre-activations, through the dropout mask if any.
template <class T, int NR, Activation A, bool DROP, bool ACC>
void write_activation_grad_from_pre_rows(const T* tile, int mr, int nr, T* c, index_t ldc,
                                         const T* z, index_t ld, const HiddenUnits<T>& h,
                                         index_t i0, index_t j0) {
  const T p = h.param, scale = h.keep_scale;
  const std::uint32_t threshold = h.threshold;
  for (int i = 0; i < mr; ++i) {
    T* __restrict crow = c + i * ldc;
    const T* __restrict zrow = z + i * ld;
    const T* __restrict t = tile + i * NR;
    const std::uint32_t row_hash = DROP ? dropout_row_hash(h.key, h.row0 + i0 + i) : 0u;
#pragma omp simd
    for (int j = 0; j < (kMaskedRemainder ? NR : nr); ++j) {  // (kMaskedRemainder)
      if (kMaskedRemainder && j >= nr) continue;
      T v = ACC ? t[j] + crow[j] : t[j];
      if constexpr (DROP) v = dropout_bits_in_row(row_hash, j0 + j) < threshold ? T(0) : v * scale;
      crow[j] = backprop_activation_from_input<A>(v, zrow[j], p);
    }
  }
}

template <class T, int NR, Activation A>
void write_activation_grad_from_pre(const T* tile, int mr, int nr, T* c, index_t ldc, bool acc,
                                    const T* z, index_t ld, const HiddenUnits<T>& h, index_t i0,
                                    index_t j0) {
  if (h.dropout())
    acc ? write_activation_grad_from_pre_rows<T, NR, A, true, true>(tile, mr, nr, c, ldc, z, ld, h, i0, j0)
        : write_activation_grad_from_pre_rows<T, NR, A, true, false>(tile, mr, nr, c, ldc, z, ld, h, i0, j0);
  else
    acc ? write_activation_grad_from_pre_rows<T, NR, A, false, true>(tile, mr, nr, c, ldc, z, ld, h, i0, j0)
        : write_activation_grad_from_pre_rows<T, NR, A, false, false>(tile, mr, nr, c, ldc, z, ld, h, i0, j0);
}

// Stores one tile at C(i0, j0); the epilogue runs only on the last k block. Activation codes
// were validated by the dispatcher (check_gemm), so the activation switch cannot throw here.
// The weight gradient of one tile, handed straight to the optimizer: W, its state and the
// norm of the new weights are updated; the gradient never goes to memory.
// One row of update_tile (its first n of NR columns; all of them when FULL); restrict-qualified
// parameters so the compiler vectorizes it. The new weights' squares are summed pairwise, a tree
// over the NR columns (the columns past n add zeros): a vector adds and halves, where a running
// sum was one chain of NR dependent additions a row (a 12 x 32 float32 Adam tile's write-back
// 1.25x faster on AVX-512, bench/RESULTS.md).
template <class T, int NR, bool FULL, bool ADAM, bool ACC>
FUSEDMLP_ALWAYS_INLINE T update_row(int n, const T* __restrict t, const T* __restrict crow,
                                    T* __restrict w, T* __restrict s0, T* __restrict s1, T alpha,
                                    T scale, const AdamStep<T>& adam, const SgdStep<T>& sgd) {
  static_assert(NR > 0 && (NR & (NR - 1)) == 0, "a tree over NR columns");
  alignas(64) T sq[NR];
  const int len = FULL ? NR : n;
#pragma omp simd
  for (int j = 0; j < len; ++j) {
    const T g = l2_grad(ACC ? t[j] + crow[j] : t[j], alpha, w[j], scale);
    if constexpr (ADAM)
      adam_step(w[j], s0[j], s1[j], g, adam);
    else
      sgd_step(w[j], s0[j], g, sgd);
    sq[j] = w[j] * w[j];
  }
  for (int j = len; j < NR; ++j) sq[j] = T(0);
  for (int h = NR / 2; h > 0; h /= 2)
#pragma omp simd
    for (int j = 0; j < h; ++j) sq[j] += sq[j + h];
  return sq[0];
}

// Up to this many lines are requested at once, about as many misses as a core's L1 keeps in
// flight (22-24 on Zen 2-4); a fused update's tile with more (AVX-512's 12 x 32 float32 or
// 12 x 16 float64 tiles: 72 lines with Adam) has them requested over a kernel's k steps.
constexpr int kBurstLines = 24;

// The cache lines of a fused update's tile: rows [i0, i0 + mr) from column j0 of the weights
// and their optimizer state, row by row (in the order update_tile writes them), into lines;
// returns their number, at most update_lines_max(mr).
template <class T, int NR>
constexpr int update_lines_max(int mr) {
  return 3 * mr * ((NR * static_cast<int>(sizeof(T)) + 63) / 64);
}
template <class T, int NR>
FUSEDMLP_ALWAYS_INLINE int update_tile_lines(const Epilogue<T>& ep, index_t i0, index_t j0, int mr,
                                             const char** lines) {
  constexpr int per_row = (NR * static_cast<int>(sizeof(T)) + 63) / 64;
  const T* arrays[3] = {ep.w_update, ep.state_0, ep.state_1};
  int n = 0;
  for (int i = 0; i < mr; ++i)
    for (const T* base : arrays) {
      if (base == nullptr) continue;
      const char* row = reinterpret_cast<const char*>(base + (i0 + i) * ep.ld_aux + j0);
      for (int l = 0; l < per_row; ++l) lines[n++] = row + 64 * l;
    }
  return n;
}

FUSEDMLP_ALWAYS_INLINE void request_lines(const char* const* lines, int n) {
  for (int l = 0; l < n; ++l) __builtin_prefetch(lines[l], 1, 3);
}

// Starts loading a tile's weights and optimizer state (mr <= MR rows) at once: the write-back
// then finds them in cache instead of waiting on memory.
template <class T, int NR, int MR>
FUSEDMLP_ALWAYS_INLINE void prefetch_update_tile(const Epilogue<T>& ep, index_t i0, index_t j0,
                                                 int mr) {
  const char* lines[update_lines_max<T, NR>(MR)];
  request_lines(lines, update_tile_lines<T, NR>(ep, i0, j0, mr, lines));
}

// Each row's squares are added to ep.sq_rows[row] (set by the row's first tile, j0 = 0): the
// tiles of a row in column order, whichever thread runs them (one thread has all of a row's
// tiles), so that the norm's bits do not depend on the team.
template <class T, int NR, bool ADAM, bool ACC>
void update_tile(const T* tile, int mr, int nr, const T* c, index_t ldc, index_t i0, index_t j0,
                 const Epilogue<T>& ep) {
  const index_t ld = ep.ld_aux;
  const T alpha = ep.alpha, scale = ep.scale;
  const AdamStep<T> adam = ep.adam;
  const SgdStep<T> sgd = ep.sgd;
  for (int i = 0; i < mr; ++i) {
    const index_t off = (i0 + i) * ld + j0;
    T* s1 = ADAM ? ep.state_1 + off : nullptr;
    T row_sq;  // (at most NR terms summed in T)
    if (nr == NR)
      row_sq = update_row<T, NR, true, ADAM, ACC>(NR, tile + i * NR, c + i * ldc, ep.w_update + off,
                                                  ep.state_0 + off, s1, alpha, scale, adam, sgd);
    else
      row_sq = update_row<T, NR, false, ADAM, ACC>(nr, tile + i * NR, c + i * ldc,
                                                   ep.w_update + off, ep.state_0 + off, s1, alpha,
                                                   scale, adam, sgd);
    double& r = ep.sq_rows[i0 + i];
    r = (j0 == 0 ? 0.0 : r) + static_cast<double>(row_sq);
  }
}

template <class T, int NR>
void write_back_tile(const T* tile, int mr, int nr, T* c, index_t ldc, index_t i0, index_t j0,
                     bool acc, bool last, const Epilogue<T>& ep);

template <class T, int NR>
void store_tile(const T* tile, int mr, int nr, T* c, index_t ldc, index_t i0, index_t j0, bool acc,
                bool last, const Epilogue<T>& ep) {
  if (last && ep.kind == EpilogueKind::weight_update_adam) {
    if (acc)
      update_tile<T, NR, true, true>(tile, mr, nr, c, ldc, i0, j0, ep);
    else
      update_tile<T, NR, true, false>(tile, mr, nr, c, ldc, i0, j0, ep);
    return;
  }
  if (last && ep.kind == EpilogueKind::weight_update_sgd) {
    if (acc)
      update_tile<T, NR, false, true>(tile, mr, nr, c, ldc, i0, j0, ep);
    else
      update_tile<T, NR, false, false>(tile, mr, nr, c, ldc, i0, j0, ep);
    return;
  }
  write_back_tile<T, NR>(tile, mr, nr, c, ldc, i0, j0, acc, last, ep);
}

// store_tile's write-backs other than the fused weight updates'.
template <class T, int NR>
void write_back_tile(const T* tile, int mr, int nr, T* c, index_t ldc, index_t i0, index_t j0,
                     bool acc, bool last, const Epilogue<T>& ep) {
  auto plain = [](T v, int, int) { return v; };
  if (!last || ep.kind == EpilogueKind::none || ep.kind == EpilogueKind::weight_update_adam ||
      ep.kind == EpilogueKind::weight_update_sgd) {
    write_tile<T, NR>(tile, mr, nr, c, ldc, acc, plain);
    return;
  }
  switch (ep.kind) {
    case EpilogueKind::bias_activation: {
      const T* bias = ep.bias + j0;
      dispatch_hidden_activation(ep.act, [&](auto a) {
        if (ep.hidden.pre == nullptr && !ep.hidden.dropout())
          write_bias_activation<T, NR, decltype(a)::value>(tile, mr, nr, c, ldc, acc, bias,
                                                           ep.hidden.param);
        else
          write_hidden_forward<T, NR, decltype(a)::value>(tile, mr, nr, c, ldc, acc, bias,
                                                          ep.hidden, i0, j0);
      });
      return;
    }
    case EpilogueKind::weight_grad: {
      const T* aux = ep.aux + i0 * ep.ld_aux + j0;
      const index_t ld = ep.ld_aux;
      const T alpha = ep.alpha, scale = ep.scale;
      write_tile<T, NR>(tile, mr, nr, c, ldc, acc, [=](T v, int i, int j) {
        return l2_grad(v, alpha, aux[i * ld + j], scale);
      });
      return;
    }
    case EpilogueKind::activation_grad: {
      const T* aux = ep.aux + i0 * ep.ld_aux + j0;
      const index_t ld = ep.ld_aux;
      dispatch_hidden_activation(ep.act, [&](auto a) {
        if (ep.aux_is_pre)
          write_activation_grad_from_pre<T, NR, decltype(a)::value>(tile, mr, nr, c, ldc, acc,
                                                                    aux, ld, ep.hidden, i0, j0);
        else
          write_activation_grad<T, NR, decltype(a)::value>(tile, mr, nr, c, ldc, acc, aux, ld,
                                                           ep.hidden.param);
      });
      return;
    }
    default:
      write_tile<T, NR>(tile, mr, nr, c, ldc, acc, plain);
      return;
  }
}

// Scratch elements per thread: its B panels, its own A panels (edge, or packed A block), one tile
// and the steps kept of a block's panels (compact_zero_steps, row_panel_kept_steps), plus
// alignment slack; an upper bound of what gemm_team_run carves, and monotone in m and k, so a
// workspace reserved for the largest batch also serves a shorter last batch (whose balanced depth
// blocks can be deeper).
template <class T, class K>
index_t gemm_scratch_elems(index_t m, index_t n, index_t k) {
  constexpr int MR = K::MR;
  constexpr int NR = K::NR;
  if (m <= 0 || n <= 0 || k <= 0 || n * 8 <= NR) return MR * NR + 64;
  const index_t kc = k < K::KC ? k : K::KC;                      // >= any block's depth
  const index_t m_round = (m + MR - 1) / MR * MR;
  const index_t mc = m_round < K::MC ? m_round : K::MC;          // >= any block's height
  const index_t n_panels = (n + NR - 1) / NR;
  // a thread packs at most all panels (kc rows of them); with fewer than MR rows and a row-major
  // B it reads B in place and keeps those rows of C. Both counted whatever the layout and the
  // rows, so that a workspace reserved for the largest batch also serves a shorter one.
  const index_t b_elems = (kc > MR ? kc : MR) * NR * n_panels;
  // (the steps kept, compact_zero_steps's offsets or row_panel_kept_steps's indices: a step of
  // each panel of a block of A)
  const index_t ks_elems = ((mc > MR ? mc : MR) / MR * kc * index_t(sizeof(std::int32_t)) +
                            index_t(sizeof(T)) - 1) / index_t(sizeof(T));
  return b_elems + (mc > MR ? mc : MR) * kc + MR * NR + ks_elems + 64;
}

// Steps a range of biases with their gradient (the fused column sum).
template <class T>
void update_biases(const Epilogue<T>& ep, index_t j0, index_t j1) {
  if (ep.b_update == nullptr) return;
  const T* g = ep.colsum_b;
  if (ep.kind == EpilogueKind::weight_update_adam) {
    const AdamStep<T> adam = ep.adam;
    for (index_t j = j0; j < j1; ++j) adam_step(ep.b_update[j], ep.b_state_0[j], ep.b_state_1[j], g[j], adam);
  } else {
    const SgdStep<T> sgd = ep.sgd;
    for (index_t j = j0; j < j1; ++j) sgd_step(ep.b_update[j], ep.b_state_0[j], g[j], sgd);
  }
}

// Every element of the micro-tile sums its k block in one multiply-add chain from zero; the
// shapes below reproduce that chain with the kernel's own multiply-add (K::madd).
// small_m_row: one row of a short A times the columns [0, w) of a row-major B, k in order:
// B is streamed row after row (as a matrix-vector product must be, to run at the memory's
// rate) into w chains kept in L1 (acc), not MR x NR registers that a single row would leave
// mostly empty and a panel at a time would read across rows.
template <class T, class K>
void small_m_row(index_t w, index_t kc, const T* arow, index_t a_cs, const T* b, index_t ldb,
                 T* __restrict acc) {
  for (index_t j = 0; j < w; ++j) acc[j] = T(0);
  index_t p = 0;
  for (; p + 4 <= kc; p += 4) {  // four steps of every chain per pass over acc
    const T a0 = arow[p * a_cs], a1 = arow[(p + 1) * a_cs];
    const T a2 = arow[(p + 2) * a_cs], a3 = arow[(p + 3) * a_cs];
    const T* __restrict b0 = b + p * ldb;
    const T* __restrict b1 = b0 + ldb;
    const T* __restrict b2 = b1 + ldb;
    const T* __restrict b3 = b2 + ldb;
#pragma omp simd
    for (index_t j = 0; j < w; ++j)
      acc[j] = K::madd(a3, b3[j], K::madd(a2, b2[j], K::madd(a1, b1[j], K::madd(a0, b0[j], acc[j]))));
  }
  for (; p < kc; ++p) {
    const T ai = arow[p * a_cs];
    const T* __restrict bp = b + p * ldb;
#pragma omp simd
    for (index_t j = 0; j < w; ++j) acc[j] = K::madd(ai, bp[j], acc[j]);
  }
}

// Kernels with K::EDGE_ROWS run an edge panel of fewer than MR rows on those rows alone
// (run<ROW_A, NV, ROWS>), reading A in place; the others multiply a packed, zero-padded panel.
template <class K, class = void>
struct has_edge_rows : std::false_type {};
template <class K>
struct has_edge_rows<K, std::enable_if_t<K::EDGE_ROWS>> : std::true_type {};

// Kernels with K::QUARTER_EDGE (and EDGE_ROWS) run an edge panel of at most NR / 4 columns on a
// half vector (run<ROW_A, 0, ROWS>): the same chains at half the cost on cores that split a full
// vector's multiply-add in two.
template <class K, class = void>
struct has_quarter_edge : std::false_type {};
template <class K>
struct has_quarter_edge<K, std::enable_if_t<K::QUARTER_EDGE && K::EDGE_ROWS>> : std::true_type {};

// Kernels with K::SKIP_STEPS run a panel's steps without its all-zero ones: packed without them
// (run<false, NV, MR, TO, true>, compact_zero_steps, the steps' offsets into B given) or read in
// place (run<true, NV, MR, TO, true>, row_panel_kept_steps, the steps' indices given).
template <class K, class = void>
struct has_skip_steps : std::false_type {};
template <class K>
struct has_skip_steps<K, std::enable_if_t<K::SKIP_STEPS>> : std::true_type {};

// Kernels with K::DIRECT_C write a whole tile's sums to C themselves (run<ROW_A, 2, MR, TO>,
// SumsTo in blocking.h: c := acc ? sums + c : sums) when its write-back would be plain: a depth
// block before the last, or the last without an epilogue; and the last's bias with identity or
// relu, or relu's backward pass. That saves the sums' round trip through the tile (stored by the
// kernel, read back by the write-back): the same bits, products of depth 200 to 784 without an
// epilogue 1.3-3.1% faster on one thread on AVX2 and AVX-512 (then; since the epilogue variants,
// 0.3-1.6% of that back on AVX-512), one-block products with bias and relu 1.8-4.7% (96 x 50 x 64:
// 5-7%), relu's gradient 1.2-11% (bench/RESULTS.md).
template <class K, class = void>
struct has_direct_c : std::false_type {};
template <class K>
struct has_direct_c<K, std::enable_if_t<K::DIRECT_C>> : std::true_type {};

// A whole tile's kernel with its epilogue applied in registers (TO: a bias, relu, relu's
// gradient; ep, ld_ep as the kernels take them), kept out of line: inlined into the tile loop
// beside the plain kernel, the products with relu ran 1-3% slower than through the tile on
// AVX-512, out of line 2% faster (bench/RESULTS.md).
template <class K, bool ROW_A, SumsTo TO, class T>
__attribute__((noinline)) void run_to_c_epilogue(index_t kc, const T* a, index_t lda, const T* b,
                                                 index_t ldb, T* c, index_t ldc, LinePrefetch pf,
                                                 bool acc, const T* ep, index_t ld_ep) {
  K::template run<ROW_A, 2, K::MR, TO>(kc, a, lda, b, ldb, nullptr, c, ldc, pf, acc, ep, ld_ep);
}

// A whole-row tile's kernel on the steps of a panel without its all-zero steps (`steps` of them:
// ROW_A, A row-major in place, ks their indices, row_panel_kept_steps; else A packed, lda = MR,
// ks their offsets into B, compact_zero_steps), its sums to the tile, or to C when direct (`to`:
// plainly, or with the bias and relu or the bias alone, bias the tile's first column's; no other
// `to`: skip_col_panels and skip_row_panels admit none). Out of line: inlined beside the other
// kernels, a product of dense values ran 6-12% slower on AVX2 (with the zero check then in the
// packing loop), and inlined into the skipping blocks' loop alone, Fashion-MNIST's weight gradient
// 2-7% slower (bench/RESULTS.md).
template <class K, bool ROW_A, int NV, class T>
__attribute__((noinline)) void run_skipping(index_t steps, const T* a, index_t lda, const T* b,
                                            index_t ldb, T* tile, T* c, index_t ldc,
                                            LinePrefetch pf, bool direct, SumsTo to, bool acc,
                                            const T* bias, const std::int32_t* ks) {
  constexpr int MR = K::MR;
  if constexpr (NV == 2) {
    if (direct) {
      if (to == SumsTo::c_bias_relu)
        K::template run<ROW_A, 2, MR, SumsTo::c_bias_relu, true>(steps, a, lda, b, ldb, tile, c,
                                                                 ldc, pf, acc, bias, 0, ks);
      else if (to == SumsTo::c_bias)
        K::template run<ROW_A, 2, MR, SumsTo::c_bias, true>(steps, a, lda, b, ldb, tile, c, ldc,
                                                            pf, acc, bias, 0, ks);
      else
        K::template run<ROW_A, 2, MR, SumsTo::c, true>(steps, a, lda, b, ldb, tile, c, ldc, pf,
                                                       acc, nullptr, 0, ks);
      return;
    }
  }
  K::template run<ROW_A, NV, MR, SumsTo::tile, true>(steps, a, lda, b, ldb, tile, c, ldc, pf,
                                                      false, nullptr, 0, ks);
}

// Kernels with K::THREE_QUARTER_EDGE run an edge panel of more than half and at most three
// quarters of NR columns on a vector and a half (run<ROW_A, 3, ROWS>): the same chains at three
// quarters of the cost on cores that split a full vector's multiply-add in two.
template <class K, class = void>
struct has_three_quarter_edge : std::false_type {};
template <class K>
struct has_three_quarter_edge<K, std::enable_if_t<K::THREE_QUARTER_EDGE && K::EDGE_ROWS>>
    : std::true_type {};

// The kernel on the first mr (< MR) rows of a tile: run<ROW_A, NV, mr>.
template <class K, bool ROW_A, int NV, int ROWS = 1, class T>
FUSEDMLP_ALWAYS_INLINE void run_edge_rows(int mr, index_t kc, const T* a, index_t lda, const T* b,
                                          index_t ldb, T* tile, T* c, index_t ldc,
                                          LinePrefetch pf = {}) {
  if constexpr (ROWS < K::MR) {
    if (mr == ROWS)
      K::template run<ROW_A, NV, ROWS>(kc, a, lda, b, ldb, tile, c, ldc, pf);
    else
      run_edge_rows<K, ROW_A, NV, ROWS + 1>(mr, kc, a, lda, b, ldb, tile, c, ldc, pf);
  }
}

// short_rows: rows [0, rows) of a short A (fewer than MR) times the columns [0, w) of a
// row-major B, into out (row stride ldo, a whole number of vectors >= w), for kernels with
// vector registers (K::V): a group of up to K::SHORT_ROWS rows keeps its chains for a block of
// K::short_vecs(rows) vectors of columns in registers while it walks down the block's kc rows of B,
// so B is read once per group of rows and each B vector feeds one multiply-add per row, with
// no accumulator traffic through memory (small_m_row reads and writes its chains in L1 every
// four k steps, and reads B once per row). The chains are the micro-kernel's: zero, then one
// multiply-add per k in order, so a row's result is the same as in a full tile.
// (B's rows are prefetched this many rows ahead: a block's rows are a few lines each, too
// short for the hardware's streams to run ahead of, about 1.1x faster one-row products)
constexpr index_t kPrefetchRows = 4;

// NV vectors of columns of NROWS rows; PARTIAL: only the first `rest` lanes of the last
// vector are B's (a masked load reads nothing past them).
template <class T, class V, int NROWS, int NV, bool PARTIAL>
inline void short_rows_block(index_t kc, const T* a, index_t a_rs, index_t a_cs, const T* b,
                             index_t ldb, int rest, T* out, index_t ldo) {
  using Reg = typename V::type;
  constexpr int W = V::width;
  constexpr int LINES = static_cast<int>((NV * W * sizeof(T) + 63) / 64);
  Reg acc[NROWS][NV];
#pragma GCC unroll 16
  for (int r = 0; r < NROWS; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  const T* ar[NROWS];
#pragma GCC unroll 16
  for (int r = 0; r < NROWS; ++r) ar[r] = a + r * a_rs;
  for (index_t p = 0; p < kc; ++p) {
    const T* bp = b + p * ldb;
#pragma GCC unroll 16
    for (int l = 0; l < LINES; ++l)
      if (p + kPrefetchRows < kc)
        __builtin_prefetch(reinterpret_cast<const char*>(bp + kPrefetchRows * ldb) + 64 * l, 0, 3);
    Reg bv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v)
      bv[v] = (PARTIAL && v == NV - 1) ? V::load_first(bp + v * W, rest) : V::load(bp + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < NROWS; ++r) {
      const Reg ai = V::bcast(ar[r] + p * a_cs);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(ai, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < NROWS; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) V::storeu(out + r * ldo + v * W, acc[r][v]);
}

// A block of nv (<= NV) vectors of columns, its last vector partial when rest < width.
template <class T, class V, int NROWS, int NV>
inline void short_rows_vectors(int nv, int rest, index_t kc, const T* a, index_t a_rs, index_t a_cs,
                            const T* b, index_t ldb, T* out, index_t ldo) {
  if (nv == NV) {
    if (rest < V::width)
      short_rows_block<T, V, NROWS, NV, true>(kc, a, a_rs, a_cs, b, ldb, rest, out, ldo);
    else
      short_rows_block<T, V, NROWS, NV, false>(kc, a, a_rs, a_cs, b, ldb, rest, out, ldo);
  } else if constexpr (NV > 1) {
    short_rows_vectors<T, V, NROWS, NV - 1>(nv, rest, kc, a, a_rs, a_cs, b, ldb, out, ldo);
  }
}

// The columns' vectors in blocks of at most NV, as equal as they can be: a block of one or two
// vectors is bound by its multiply-adds' latency (208 float32 columns of one row on AVX-512: 7 + 6
// vectors, not 12 + 1; a thread's 144 columns of 300: one block of 9, not 8 + 1).
template <class T, class V, int NROWS, int NV>
inline void short_rows_group(index_t w, index_t kc, const T* a, index_t a_rs, index_t a_cs,
                             const T* b, index_t ldb, T* out, index_t ldo) {
  constexpr int W = V::width;
  const index_t vecs = (w + W - 1) / W;
  const index_t blocks = (vecs + NV - 1) / NV;
  index_t j = 0;
  for (index_t bi = 0; bi < blocks; ++bi) {
    const int nv = static_cast<int>(vecs / blocks + (bi < vecs % blocks ? 1 : 0));
    const int cols = static_cast<int>(imin(index_t(nv) * W, w - j));  // (the last block: w - j)
    short_rows_vectors<T, V, NROWS, NV>(nv, cols - (nv - 1) * W, kc, a, a_rs, a_cs, b + j, ldb,
                                     out + j, ldo);
    j += index_t(nv) * W;
  }
}

// Rows [i, i + n) (n <= K::SHORT_ROWS) of A: one pass over B.
template <class T, class K>
void short_rows(index_t n, index_t w, index_t kc, const T* a, index_t a_rs, index_t a_cs,
                const T* b, index_t ldb, T* out, index_t ldo) {
  using V = typename K::V;
  constexpr int R = K::SHORT_ROWS;
  static_assert(R >= 2 && R <= 5, "two to five rows per pass");
  // (groups the kernel never forms: 1)
  constexpr int R3 = R >= 3 ? 3 : 1, R4 = R >= 4 ? 4 : 1, R5 = R >= 5 ? 5 : 1;
  switch (n) {
    case 1:
      short_rows_group<T, V, 1, K::short_vecs(1)>(w, kc, a, a_rs, a_cs, b, ldb, out, ldo);
      break;
    case 2:
      short_rows_group<T, V, 2, K::short_vecs(2)>(w, kc, a, a_rs, a_cs, b, ldb, out, ldo);
      break;
    case 3:
      if constexpr (R >= 3)
        short_rows_group<T, V, R3, K::short_vecs(R3)>(w, kc, a, a_rs, a_cs, b, ldb, out, ldo);
      break;
    case 4:
      if constexpr (R >= 4)
        short_rows_group<T, V, R4, K::short_vecs(R4)>(w, kc, a, a_rs, a_cs, b, ldb, out, ldo);
      break;
    default:
      if constexpr (R >= 5)
        short_rows_group<T, V, R5, K::short_vecs(R5)>(w, kc, a, a_rs, a_cs, b, ldb, out, ldo);
      break;
  }
}

// C = A B of depth one (k = 1: the data gradient of a one-unit output layer, the forward of a
// one-input layer): each element a_i b_j formed as the micro-kernel forms it (one multiply-add
// onto zero), then the usual write-back, in tiles of MR rows and 256 bytes of columns (64 floats,
// 32 doubles); no B panels, no kernel call. The write-back's cost is per tile: California
// housing's 50 x 1 output layer, 100 rows a thread on the AVX2 proxy, took 8.3-8.6k cycles for its
// data gradient as a tiled product (68 tiles of 6 x 16), 7.5-8.9k with this loop in tiles of
// 6 x 16, 4.1-4.7k in tiles of 6 x 32 and 3.5-3.9k in tiles of 6 x 64 (AVX-512: 5.4-6.1k,
// 3.8-4.5k with 12 x 32, 3.6-4.0k with 12 x 64, 5.1-5.8k with 12 x 128), bench/RESULTS.md.
template <class T, class K>
void rank_one_rows(index_t r0, index_t r1, index_t n, const Operand<T>& a, const Operand<T>& b,
                   T* c, index_t ldc, const Epilogue<T>& ep, bool accumulate) {
  constexpr int MR = K::MR;
  constexpr int W = 256 / static_cast<int>(sizeof(T));
  alignas(64) T tile[MR * W];
  for (index_t i0 = r0; i0 < r1; i0 += MR) {
    const int mr = static_cast<int>(imin(MR, r1 - i0));
    for (index_t j0 = 0; j0 < n; j0 += W) {
      const int nr = static_cast<int>(imin(W, n - j0));
      T bj[W];
      for (int j = 0; j < W; ++j) bj[j] = j < nr ? b.data[(j0 + j) * b.cs] : T(0);
      for (int i = 0; i < mr; ++i) {
        const T ai = a.data[(i0 + i) * a.rs];
        T* __restrict t = tile + i * W;
#pragma omp simd
        for (int j = 0; j < W; ++j) t[j] = K::madd(ai, bj[j], T(0));
      }
      write_back_tile<T, W>(tile, mr, nr, c + i0 * ldc + j0, ldc, i0, j0, accumulate, true, ep);
    }
  }
}

// Sums kept column by column (column j's rows [0, rows) at cm[j * col_stride]: narrow_n_rows,
// edge_columns_by_rows) written back as the tile loop would: in tiles of at most MR rows from row
// i of C, columns [j0, j0 + nc); c: C(0, j0).
template <class T, class K>
void write_back_columns(const T* cm, index_t col_stride, int rows, int nc, T* tile, T* c,
                        index_t ldc, index_t i, index_t j0, bool acc, bool last,
                        const Epilogue<T>& ep) {
  constexpr int MR = K::MR;
  constexpr int NR = K::NR;
  for (int g = 0; g < rows; g += MR) {
    const int mr = static_cast<int>(imin(MR, rows - g));
    for (int r = 0; r < mr; ++r)
      for (int j = 0; j < nc; ++j) tile[r * NR + j] = cm[j * col_stride + g + r];
    store_tile<T, NR>(tile, mr, nc, c + (i + g) * ldc, ldc, i + g, j0, acc, last, ep);
  }
}

// C with at most NR / 8 columns (an output layer of one or a few units): each element is a
// dot product over k, written into tile layout for the usual write-back. The path is chosen
// by n alone, so a row's result still never depends on the other rows.
template <class T, class K>
void narrow_n_rows(index_t r0, index_t r1, index_t n, index_t k, const Operand<T>& a,
                   const Operand<T>& b, T* c, index_t ldc, const Epilogue<T>& ep, bool accumulate,
                   T* tile) {
  constexpr int MR = K::MR;
  constexpr int NR = K::NR;
  if (a.rs == 1) {
    // column-major A: axpy over a band of rows (kBand, whole MR panels), k in order for every
    // element; the band's rows as vectors instead of a panel's few
    constexpr int kBand = 8 * MR;
    constexpr int kMaxN = NR / 8;  // (n * 8 <= NR: the caller's condition for this path)
    static_assert(kMaxN >= 1, "NR of at least 8");
    T col[kMaxN][kBand];
    for (index_t ib = r0; ib < r1; ib += kBand) {
      const int rows = static_cast<int>(imin(kBand, r1 - ib));
      for (index_t j = 0; j < n; ++j) {
        T* cj = col[j];
        for (int i = 0; i < kBand; ++i) cj[i] = T(0);
        for (index_t p = 0; p < k; ++p) {
          const T bj = b.data[p * b.rs + j * b.cs];
          const T* __restrict ap = a.data + ib + p * a.cs;
#pragma omp simd
          for (int i = 0; i < rows; ++i) cj[i] = K::madd(ap[i], bj, cj[i]);
        }
      }
      write_back_columns<T, K>(&col[0][0], kBand, rows, static_cast<int>(n), tile, c, ldc, ib, 0,
                               accumulate, true, ep);
    }
    return;
  }
  for (index_t i0 = r0; i0 < r1; i0 += MR) {
    const int mr = static_cast<int>(imin(MR, r1 - i0));
    for (index_t j = 0; j < n; ++j) {
      if (a.cs == 1 && b.rs == 1) {  // contiguous dot products of A's rows, B's column
        const T* bc = b.data + j * b.cs;
        for (int i = 0; i < mr; ++i) {
          const T* ar = a.data + (i0 + i) * a.rs;
          T s = T(0);
#pragma omp simd reduction(+ : s)
          for (index_t p = 0; p < k; ++p) s += ar[p] * bc[p];
          tile[i * NR + j] = s;
        }
      } else {  // any strides
        const T* bc = b.data + j * b.cs;
        for (int i = 0; i < mr; ++i) {
          const T* ar = a.data + (i0 + i) * a.rs;
          T s = T(0);
          for (index_t p = 0; p < k; ++p) s += ar[p * a.cs] * bc[p * b.rs];
          tile[i * NR + j] = s;
        }
      }
    }
    store_tile<T, NR>(tile, mr, static_cast<int>(n), c + i0 * ldc, ldc, i0, 0, accumulate, true, ep);
  }
}

// Edge columns by row vectors: rows [0, rows) (rows <= NVEC * W; PARTIAL: the last vector's
// first `rest` lanes only, nothing past them read) of C's last NC columns, A column-major in
// place (A(i, p) at a[i + p * lda]), B a packed panel (B(p, j) at b[p * NR + j]). Each vector
// holds W rows of one column of C and each lane's chain is the tile kernel's (zero, then one
// multiply-add a step of k in order: the same bits), NC x NVEC chains of whole vectors. The sums
// go to cm, column after column, NVEC * W rows apart.
template <class V, int NR, int NVEC, int NC, bool PARTIAL, class T>
FUSEDMLP_ALWAYS_INLINE void edge_columns_block(index_t kc, const T* a, index_t lda, int rest,
                                               const T* b, T* cm) {
  using Reg = typename V::type;
  constexpr int W = V::width;
  Reg acc[NC][NVEC];
#pragma GCC unroll 12
  for (int j = 0; j < NC; ++j)
#pragma GCC unroll 12
    for (int v = 0; v < NVEC; ++v) acc[j][v] = V::zero();
  for (index_t p = 0; p < kc; ++p) {
    const T* ap = a + p * lda;
    Reg bj[NC];
#pragma GCC unroll 4
    for (int j = 0; j < NC; ++j) bj[j] = V::bcast(b + p * NR + j);
#pragma GCC unroll 12
    for (int v = 0; v < NVEC; ++v) {
      const Reg av =
          (PARTIAL && v == NVEC - 1) ? V::load_first(ap + v * W, rest) : V::load(ap + v * W);
#pragma GCC unroll 4
      for (int j = 0; j < NC; ++j) acc[j][v] = V::fma(av, bj[j], acc[j][v]);
    }
  }
#pragma GCC unroll 12
  for (int j = 0; j < NC; ++j)
#pragma GCC unroll 12
    for (int v = 0; v < NVEC; ++v) V::storeu(cm + (j * NVEC + v) * W, acc[j][v]);
}

// Kernels with K::ROW_EDGE_PASS compute an edge panel at most a quarter as wide, of a
// column-major A read in place (a weight gradient: the previous layer's activations, transposed),
// by row vectors (edge_columns_by_rows) instead of as tiles: K::ROW_EDGE_PASS columns (2 on
// AVX2, 4 on AVX-512) a pass over a block of 6 W rows, 12 (24) chains of whole vectors, where the
// quarter-width kernels spend a half vector's multiply-add per row and step (AVX2: six chains of
// 4 lanes, two used by the 2-column edge of a 50-wide layer; AVX-512: 12 chains of 8 lanes, four
// used by the 4-column edge of a 100-wide one). 96 x 50 x 50 float32 on AVX2: 17.2k cycles ->
// 15.9-16.0k, 300 x 100 x 200 on AVX-512 227-228k -> 206-207k (bench/RESULTS.md). Not for wider
// edges (AVX-512's 12- and 16-column ones measured no faster: a pass per 4 columns reads A again)
// nor a row-major A (its rows would first be transposed: measured no faster).
template <class K, class = void>
struct has_row_vector_edge : std::false_type {};
template <class K>
struct has_row_vector_edge<K, std::enable_if_t<(K::ROW_EDGE_PASS > 0)>> : std::true_type {};

// C's columns [j0, j0 + nc) (nc <= NR / 4) of rows [i_lo, i_hi) by edge_columns_block, in blocks
// of 6 vectors of rows, K::ROW_EDGE_PASS columns a pass over a block's rows of A, each block
// written back in tiles of at most MR rows after its last pass (i_lo on a tile's first row): the
// same write-backs, in the same order for every row (its last column panel last). a: A(0, p0),
// column-major; b: the packed edge panel; c: C(0, j0). (Out of line: inlined into the tile loop's
// function, a 50 x 48 x 48 product without an edge took 7.2 instead of 5.6 thousand cycles on
// AVX-512.)
template <class T, class K>
__attribute__((noinline)) void edge_columns_by_rows(index_t i_lo, index_t i_hi, int nc,
                                                    index_t kc, const T* a, index_t lda,
                                                    const T* b, T* tile, T* c, index_t ldc,
                                                    index_t j0, bool acc, bool last,
                                                    const Epilogue<T>& ep) {
  using V = typename K::V;
  constexpr int MR = K::MR;
  constexpr int NR = K::NR;
  constexpr int W = V::width;
  constexpr int PASS = K::ROW_EDGE_PASS;
  constexpr int kVecs = 6;
  constexpr int kRows = kVecs * W;
  static_assert(PASS == 2 || PASS == 4, "columns a pass");
  alignas(64) T cm[NR / 4 * kRows];
  for (index_t i = i_lo; i < i_hi; i += kRows) {
    const int rows = static_cast<int>(imin(kRows, i_hi - i));
    const int nvec = (rows + W - 1) / W;
    const int rest = rows - (nvec - 1) * W;
    const int col_stride = nvec * W;  // (cm's columns as edge_columns_block stores them)
    for (int jp = 0; jp < nc; jp += PASS) {
      const int pass_nc = imin(PASS, nc - jp);
      const T* ai = a + i;
      const T* bj = b + jp;
      T* out = cm + jp * col_stride;
      auto run = [&](auto nvec_c, auto nc_c, auto partial_c) {
        edge_columns_block<V, NR, decltype(nvec_c)::value, decltype(nc_c)::value,
                           decltype(partial_c)::value>(kc, ai, lda, rest, bj, out);
      };
      auto with_nc = [&](auto nvec_c, auto partial_c) {
        switch (pass_nc) {
          case 1: run(nvec_c, std::integral_constant<int, 1>{}, partial_c); break;
          case 2: run(nvec_c, std::integral_constant<int, 2>{}, partial_c); break;
          case 3:
            if constexpr (PASS >= 3) run(nvec_c, std::integral_constant<int, 3>{}, partial_c);
            break;
          default:
            if constexpr (PASS >= 4) run(nvec_c, std::integral_constant<int, 4>{}, partial_c);
            break;
        }
      };
      auto with_partial = [&](auto nvec_c) {
        if (rest < W)
          with_nc(nvec_c, std::true_type{});
        else
          with_nc(nvec_c, std::false_type{});
      };
      switch (nvec) {
        case 1: with_partial(std::integral_constant<int, 1>{}); break;
        case 2: with_partial(std::integral_constant<int, 2>{}); break;
        case 3: with_partial(std::integral_constant<int, 3>{}); break;
        case 4: with_partial(std::integral_constant<int, 4>{}); break;
        case 5: with_partial(std::integral_constant<int, 5>{}); break;
        default: with_partial(std::integral_constant<int, 6>{}); break;
      }
    }
    write_back_columns<T, K>(cm, col_stride, rows, nc, tile, c, ldc, i, j0, acc, last, ep);
  }
}

// Epilogue::a_nonfinite: *flag := 1 when an element of rows [i0, i1) and columns [p0, p0 + kc)
// of A is NaN or infinite. x * 0 is +-0 for finite x and NaN otherwise, and NaN survives the
// sums: along a row-major A's rows (as one run when the block's rows are adjacent) or a
// column-major A's columns, four chains of the instruction set's vectors, then one, then the last
// elements in a vector of zeros (a GCC vector type of one register, kept in registers as named
// sums, where 64-byte vectors on AVX2 went through the stack: 3% of a 10,000 x 784 x 300 product
// against 0.3-1.5% on AVX-512, bench/RESULTS.md); other strides (a packed A) element by element.
#if defined(__AVX512F__)
#define FUSEDMLP_CHECK_BYTES 64
#elif defined(__AVX__)
#define FUSEDMLP_CHECK_BYTES 32
#else
#define FUSEDMLP_CHECK_BYTES 16
#endif
template <class T>
void check_a_finite(const Operand<T>& a, index_t i0, index_t i1, index_t p0, index_t kc, int* flag) {
  typedef T V __attribute__((vector_size(FUSEDMLP_CHECK_BYTES)));
  constexpr index_t W = FUSEDMLP_CHECK_BYTES / sizeof(T);
  V s0 = {}, s1 = {}, s2 = {}, s3 = {};
  // the sums of x * 0 over x[0, len)
  auto run = [&](const T* x, index_t len) __attribute__((always_inline)) {
    index_t p = 0;
    for (; p + 4 * W <= len; p += 4 * W) {
      V x0, x1, x2, x3;
      std::memcpy(&x0, x + p, sizeof(V));
      std::memcpy(&x1, x + p + W, sizeof(V));
      std::memcpy(&x2, x + p + 2 * W, sizeof(V));
      std::memcpy(&x3, x + p + 3 * W, sizeof(V));
      s0 += x0 * T(0);
      s1 += x1 * T(0);
      s2 += x2 * T(0);
      s3 += x3 * T(0);
    }
    for (; p + W <= len; p += W) {
      V x0;
      std::memcpy(&x0, x + p, sizeof(V));
      s0 += x0 * T(0);
    }
    if (p < len) {
      V x0 = {};
      std::memcpy(&x0, x + p, sizeof(T) * static_cast<size_t>(len - p));
      s1 += x0 * T(0);
    }
  };
  T sum = T(0);
  if (a.cs == 1 && a.rs == kc) {  // (the block's rows kc apart: one run from p0 on)
    run(a.data + i0 * a.rs + p0, (i1 - i0) * kc);
  } else if (a.cs == 1) {
    for (index_t i = i0; i < i1; ++i) run(a.data + i * a.rs + p0, kc);
  } else if (a.rs == 1) {
    for (index_t p = p0; p < p0 + kc; ++p) run(a.data + p * a.cs + i0, i1 - i0);
  } else {
    for (index_t p = p0; p < p0 + kc; ++p)
      for (index_t i = i0; i < i1; ++i) sum += a.data[i * a.rs + p * a.cs] * T(0);
  }
  const V all = (s0 + s1) + (s2 + s3);
  for (index_t l = 0; l < W; ++l) sum += all[l];
  if (sum != T(0)) __atomic_store_n(flag, 1, __ATOMIC_RELAXED);
}
#undef FUSEDMLP_CHECK_BYTES

// Rows [r0, r1) of this thread when a product's row panels are split between at most
// `work_threads` of the team (at least one, at most one a panel); false when it has none.
FUSEDMLP_ALWAYS_INLINE bool thread_row_panels(const Team& team, index_t m, index_t m_panels,
                                              index_t work_threads, int mr, index_t& r0,
                                              index_t& r1) {
  index_t nt = work_threads;
  if (nt > team.nth) nt = team.nth;
  if (nt > m_panels) nt = m_panels;
  if (nt < 1) nt = 1;
  if (team.tid >= nt) return false;
  r0 = imin(m, m_panels * team.tid / nt * mr);
  r1 = imin(m, m_panels * (team.tid + 1) / nt * mr);
  return true;
}

template <class T, class K>
void gemm_team_run(const Team& team, index_t m, index_t n, index_t k, Operand<T> a, Operand<T> b,
                   T* c, index_t ldc, const Epilogue<T>& ep, bool accumulate, GemmWorkspace& ws) {
  constexpr int MR = K::MR;
  constexpr int NR = K::NR;
  constexpr index_t KC = K::KC;
  constexpr index_t MC = K::MC;
  if (m <= 0 || n <= 0) {  // (no C; A still checked when asked)
    if (ep.a_nonfinite != nullptr && team.tid == 0 && m > 0 && k > 0)
      check_a_finite(a, 0, m, 0, k, ep.a_nonfinite);
    return;
  }

  const index_t n_panels = (n + NR - 1) / NR;
  const bool update = ep.kind == EpilogueKind::weight_update_adam ||
                      ep.kind == EpilogueKind::weight_update_sgd;
  if (k <= 0) {  // A * B is the zero matrix; the epilogue still applies (one thread)
    if (team.tid != 0) return;
    alignas(64) T zero_tile[MR * NR];
    for (int i = 0; i < MR * NR; ++i) zero_tile[i] = T(0);
    if (ep.colsum_b != nullptr && !accumulate)
      for (index_t j = 0; j < n; ++j) ep.colsum_b[j] = T(0);
    for (index_t i0 = 0; i0 < m; i0 += MR)
      for (index_t j0 = 0; j0 < n; j0 += NR)
        store_tile<T, NR>(zero_tile, static_cast<int>(imin(MR, m - i0)),
                          static_cast<int>(imin(NR, n - j0)), c + i0 * ldc + j0, ldc, i0, j0,
                          accumulate, true, ep);
    if (update) update_biases(ep, 0, n);
    return;
  }

  const index_t m_panels_all = (m + MR - 1) / MR;
  if (n * 8 <= NR) {
    index_t r0, r1;
    if (!thread_row_panels(team, m, m_panels_all, (m * n * k) / K::MIN_FLOPS_PER_THREAD, MR, r0, r1))
      return;
    T* tile = static_cast<T*>(ws.per_thread(team.slot, sizeof(T) * (MR * NR + 64)));
    tile = reinterpret_cast<T*>((reinterpret_cast<std::uintptr_t>(tile) + 63) & ~std::uintptr_t(63));
    if (team.tid == 0 && ep.colsum_b != nullptr)
      for (index_t j = 0; j < n; ++j) {
        T s = T(0);
        for (index_t p = 0; p < k; ++p) s += b.data[p * b.rs + j * b.cs];
        ep.colsum_b[j] = (accumulate ? ep.colsum_b[j] : T(0)) + ep.colsum_scale * s;
      }
    narrow_n_rows<T, K>(r0, r1, n, k, a, b, c, ldc, ep, accumulate, tile);
    if (ep.a_nonfinite != nullptr) check_a_finite(a, r0, r1, 0, k, ep.a_nonfinite);
    if (update && team.tid == 0) update_biases(ep, 0, n);
    return;
  }

  if (k == 1 && !update && ep.colsum_b == nullptr) {  // (rank_one_rows; rows split by panels)
    index_t r0, r1;
    if (!thread_row_panels(team, m, m_panels_all, (m * n) / (K::MIN_FLOPS_PER_THREAD / 8), MR, r0, r1))
      return;
    rank_one_rows<T, K>(r0, r1, n, a, b, c, ldc, ep, accumulate);
    if (ep.a_nonfinite != nullptr) check_a_finite(a, r0, r1, 0, 1, ep.a_nonfinite);
    return;
  }

  index_t n_kblocks, kc_max;
  depth_blocks<K>(k, n_kblocks, kc_max);  // balanced depth blocks

  // A is read in place when one of its strides is 1 (row- or column-major, the only layouts
  // the trainer uses); other strides are packed into MR-row panels.
  enum { kColumnMajor, kRowMajor, kPacked };
  const int a_mode = a.rs == 1 ? kColumnMajor : (a.cs == 1 ? kRowMajor : kPacked);
  // Fewer than MR rows: read B in place instead of packing it for one use.
  const bool small_m = m < MR && b.cs == 1;

  // A few row panels do not repay packing B (blocking.h): full-width panels of a row-major B are
  // then read in place (edge panels are still packed, zero-padded).
  const bool b_in_place = !small_m && b.cs == 1 && m_panels_all <= K::B_IN_PLACE_PANELS;

  // (fewer than MR rows: the products of a one-row prediction or a short batch, whose team is
  // running already; a thread's share of B is what it costs, 16 KB of float32 weights at least)
  const index_t work_threads = (m * n * k) / (small_m ? K::MIN_FLOPS_PER_THREAD / 16 : K::MIN_FLOPS_PER_THREAD);
  // Row bands when the epilogue updates weights, when there are fewer column panels than
  // threads, when rows far outnumber columns (prediction chunks), and when they outnumber them
  // and split more evenly than the columns' half panels do: each thread then reads its own rows
  // of A once instead of all of A, and packs all of B, which is small beside it. (Fashion-MNIST's
  // 100-unit layer, 200 rows on two AVX-512 threads: 104 and 96 rows instead of 52 and 48
  // columns, the 20-column edge costing a whole panel on Intel's cores; 2.5-2.8% faster an epoch,
  // bench/RESULTS.md.)
  const index_t t_split = imin(team.nth, work_threads > 1 ? work_threads : 1);
  const index_t halves_all = (n + NR / 2 - 1) / (NR / 2);
  const bool rows_even = t_split > 1 && m_panels_all >= 4 * n_panels &&
                         (m_panels_all + t_split - 1) / t_split * MR * n <
                             (halves_all + t_split - 1) / t_split * (NR / 2) * m;
  const bool split_m = !small_m && (update || n_panels < team.nth ||
                                    m_panels_all >= 8 * n_panels || rows_even);
  const index_t split_units = split_m ? m_panels_all : n_panels;
  int nt = team.nth;
  if (nt > split_units) nt = static_cast<int>(split_units);
  if (nt > work_threads) nt = static_cast<int>(work_threads);
  if (nt < 1) nt = 1;
  if (small_m && update) nt = 1;  // (each row's tiles on one thread: update_tile's sq_rows)
  if (team.tid >= nt) return;
  const int tid = team.tid;

  const index_t n_mblocks = (m + MC - 1) / MC;
  const index_t mc_max = ((m + n_mblocks - 1) / n_mblocks + MR - 1) / MR * MR;
  const index_t b_elems = small_m ? MR * NR * n_panels : kc_max * NR * n_panels;  // (small_m: rows of C)
  const index_t a_elems = (mc_max > MR ? mc_max : MR) * kc_max;
  T* b_block = static_cast<T*>(ws.per_thread(team.slot, gemm_scratch_elems<T, K>(m, n, k) * sizeof(T)));
  T* a_own = b_block + b_elems;  // edge panel, or this thread's packed A block
  T* tile = a_own + a_elems;
  tile = reinterpret_cast<T*>((reinterpret_cast<std::uintptr_t>(tile) + 63) & ~std::uintptr_t(63));
  // (the steps kept of a block's panels: compact_zero_steps's offsets, row_panel_kept_steps's
  // indices)
  std::int32_t* const ks = reinterpret_cast<std::int32_t*>(tile + MR * NR);

  // This thread's rows [r0, r1) and columns [jlo, jhi), the latter as nq panels from jlo (the
  // last one possibly narrower). Columns are split in half panels, a half panel running the
  // kernel on half the columns: 300 float32 columns on AVX-512 are 144 and 156 on two
  // threads, 4.5 and 5 panels' work. (Quarter panels, 152 and 148 with three-quarter edges,
  // measured no faster: bench/RESULTS.md.)
  index_t jlo = 0, jhi = n, r0 = 0, r1 = m;
  if (split_m) {
    r0 = imin(m, m_panels_all * tid / nt * MR);
    r1 = imin(m, m_panels_all * (tid + 1) / nt * MR);
  } else {
    constexpr index_t HALF = NR / 2;
    const index_t halves = (n + HALF - 1) / HALF;
    jlo = imin(n, halves * tid / nt * HALF);
    jhi = imin(n, halves * (tid + 1) / nt * HALF);
  }
  const index_t nq = (jhi - jlo + NR - 1) / NR;
  // (ROW_EDGE_PASS) a last panel at most a quarter as wide, A column-major in place: by
  // row vectors after each block of rows' tiles (edge_columns_by_rows), not as tiles
  const int last_nr = static_cast<int>(jhi - jlo - (nq - 1) * NR);
  const bool edge_by_rows = has_row_vector_edge<K>::value && a_mode == kColumnMajor && !small_m &&
                            nq >= 1 && 4 * last_nr <= NR;
  const index_t j_tiles = edge_by_rows ? jhi - last_nr : jhi;  // (the tiles' columns end)
  // With split rows every thread packs all of B; thread 0 computes the column sum.
  T* colsum = (ep.colsum_b != nullptr && (!split_m || tid == 0)) ? ep.colsum_b : nullptr;
  // B packed beforehand (Operand::packed): this thread's panels are read there
  const T* prepacked = (b.packed != nullptr && !small_m && ep.colsum_b == nullptr && jlo % NR == 0)
                           ? b.packed : nullptr;

  // The epilogues the kernels that write C themselves run on whole tiles (SumsTo, blocking.h): a
  // bias with identity or relu and nothing else (no pre-activations kept, no dropout), and relu's
  // backward pass against the stored activations.
  SumsTo last_to = SumsTo::c;
  if (ep.kind == EpilogueKind::bias_activation && ep.hidden.pre == nullptr &&
      !ep.hidden.dropout() && (ep.act == Activation::identity || ep.act == Activation::relu))
    last_to = ep.act == Activation::relu ? SumsTo::c_bias_relu : SumsTo::c_bias;
  if (ep.kind == EpilogueKind::activation_grad && !ep.aux_is_pre && ep.act == Activation::relu)
    last_to = SumsTo::c_relu_grad;
  for (index_t kb = 0; kb < n_kblocks; ++kb) {
    const index_t p0 = kb * kc_max;
    const index_t kc = imin(kc_max, k - p0);
    const bool acc = accumulate || kb > 0;
    const bool last = kb == n_kblocks - 1;
    const bool set = kb == 0 && !accumulate;
    if (small_m) {
      // this thread's columns, row by row; each row's chains are stored panel by panel
      for (index_t pj = 0; pj < nq; ++pj) {
        const index_t j0 = jlo + pj * NR;
        // the column sum the packing would have fused
        pack_b<T, K>(b, p0, kc, j0, static_cast<int>(imin(NR, jhi - j0)), nullptr,
                     colsum != nullptr ? colsum + j0 : nullptr, ep.colsum_scale, set);
        if (update && last) prefetch_update_tile<T, NR, MR>(ep, 0, j0, static_cast<int>(m));
      }
      const index_t w = jhi - jlo;
      const index_t ldo = nq * NR;
      index_t group = 1;
      if constexpr (has_vector_registers<K>::value) group = K::SHORT_ROWS;
      for (index_t i = 0; i < m; i += group) {
        const index_t g = imin(group, m - i);
        const T* arow = a.data + i * a.rs + p0 * a.cs;
        const T* bp = b.data + p0 * b.rs + jlo;
        if constexpr (has_vector_registers<K>::value)
          short_rows<T, K>(g, w, kc, arow, a.rs, a.cs, bp, b.rs, b_block, ldo);
        else
          small_m_row<T, K>(w, kc, arow, a.cs, bp, b.rs, b_block);
        for (index_t r = 0; r < g; ++r)
          for (index_t pj = 0; pj < nq; ++pj) {
            const index_t j0 = jlo + pj * NR;
            store_tile<T, NR>(b_block + r * ldo + pj * NR, 1, static_cast<int>(imin(NR, jhi - j0)),
                              c + (i + r) * ldc + j0, ldc, i + r, j0, acc, last, ep);
          }
      }
      if (ep.a_nonfinite != nullptr && tid == 0) check_a_finite(a, 0, m, p0, kc, ep.a_nonfinite);
      continue;
    }
    // this depth block's panels: packed beforehand, or packed here
    const T* b_panels =
        prepacked != nullptr ? prepacked + p0 * n_panels * NR + (jlo / NR) * kc * NR : b_block;
    // (packed here for a product with a bias and activation whose row-major A may leave out its
    // zero steps, skip_row_panels below: whether the thread's panels of this block are finite)
    const bool check_b = prepacked == nullptr && has_skip_steps<K>::value && !b_in_place &&
                         b.zero_steps && ep.kind == EpilogueKind::bias_activation &&
                         a_mode == kRowMajor && n_panels > 1 && kc >= kRowSkipMinDepth;
    int b_nonfinite = 0;
    for (index_t pj = 0; pj < nq && prepacked == nullptr; ++pj) {
      const index_t j0 = jlo + pj * NR;
      const int nr = static_cast<int>(imin(NR, jhi - j0));
      pack_b<T, K>(b, p0, kc, j0, nr,
                   (b_in_place && nr == NR) ? nullptr : b_block + pj * kc * NR,
                   colsum != nullptr ? colsum + j0 : nullptr, ep.colsum_scale, set,
                   check_b ? &b_nonfinite : nullptr);
    }
    for (index_t ic = r0; ic < r1; ic += mc_max) {
      const index_t mc = imin(mc_max, r1 - ic);
      const index_t m_panels = (mc + MR - 1) / MR;
      if (a_mode == kPacked)
        for (index_t ip = 0; ip < m_panels; ++ip)
          pack_a_panel<T, MR>(a, ic + ip * MR, static_cast<int>(imin(MR, mc - ip * MR)), p0, kc,
                              a_own + ip * MR * kc);
      // a_own holds one packed A panel: a short edge panel (so every MR row is readable; not
      // for kernels with EDGE_ROWS), or in row-band order a column-major panel, which packed is
      // read contiguously by all the B panels that follow instead of a strided line per k step.
      // (A row-major panel is read in place, skip_row_panels below too: it stays in L1 across
      // the band, and packing it measured 1.10-1.16x slower on AVX2, bench/RESULTS.md.)
      index_t packed_ip = -1;
      const bool pack_col_panels = split_m && a_mode == kColumnMajor && nq > 1;
      // Such a panel of MR rows is packed without its all-zero steps (compact_zero_steps) when
      // the kernel can skip them, B's panels are all packed (ldb is NR: each step's offset
      // p * NR), and the tiles' sums go to the tile or plainly to C (SumsTo::c); panel_steps, the
      // steps kept.
      // (Epilogue::a_nonfinite: the prediction's input check, below)
      const bool check_a = ep.a_nonfinite != nullptr;
      const bool skip_base = has_skip_steps<K>::value && !b_in_place;
      const bool skip_col_panels = skip_base && last_to == SumsTo::c && pack_col_panels;
      index_t panel_steps = kc;
      long long skipped[2] = {0, 0};  // (this block's, column- and row-major: skipped_zero_steps)
      // A row-major A whose B has several panels, of a plain product (the first layer's forward
      // product in halves, X W, image rows in X) or of one with a bias and activation that asks
      // (Operand::zero_steps) and whose B is finite (packed beforehand: Operand::packed_finite;
      // packed here: the thread's panels of the block, check_b), so that a NaN or infinity of the
      // weights reaches C as in the full product: a whole panel is read in place on its steps
      // kept (row_panel_kept_steps) when they leave out at least an eighth of its steps;
      // row_steps[ip], its steps kept (their indices at ks + ip * kc), kc for a panel read whole.
      // (B's panels, not this thread's, count: whether a panel has steps to leave out does not
      // depend on the team. Whether they are left out can: with a bias and activation, a block's
      // probe of its first panels (below) is of the thread's rows, and whether B is finite is of
      // the thread's columns when the threads pack their own: a thread whose panels are not finite
      // reads every step, the others leave steps out. A column's sums are the same bits either
      // way, but for a zero sum's sign, which the bias then removes. The kernels' SKIP reads B's
      // rows as packed, ldb = NR, as !b_in_place assures.)
      const bool skip_row_panels =
          skip_base && a_mode == kRowMajor && n_panels > 1 &&
          (ep.kind == EpilogueKind::none ||
           (ep.kind == EpilogueKind::bias_activation && b.zero_steps && kc >= kRowSkipMinDepth &&
            (prepacked != nullptr ? b.packed_finite : check_b && b_nonfinite == 0)));
      // (each panel's steps found before its first tile, -1 until then: in row-band order the
      // panel's rows are then requested during the previous panel's tiles)
      index_t row_steps[K::MC / K::MR];
      if (skip_row_panels)
        for (index_t ip = 0; ip < m_panels; ++ip) row_steps[ip] = -1;
      auto find_row_steps = [&](index_t ip) {
        const index_t i0 = ic + ip * MR;
        if (i0 + MR > m) return kc;
        const index_t kept = row_panel_kept_steps<T, MR>(a, i0, p0, kc, ks + ip * kc);
        skipped[1] += kc - kept;
        return kept;
      };
      // (CAN_SKIP: a block where skip_col_panels or skip_row_panels holds; the other blocks' tile
      // loop is compiled without those paths, whose code beside it made the prediction's products
      // 1-2% slower)
      auto tile_at = [&](index_t ip, index_t pj, auto can_skip) {
        constexpr bool CAN_SKIP = decltype(can_skip)::value && has_skip_steps<K>::value;
        if (edge_by_rows && pj == nq - 1) return;
        const index_t i0 = ic + ip * MR;
        const int mr = static_cast<int>(imin(MR, m - i0));
        const index_t j0 = jlo + pj * NR;
        const int nr = static_cast<int>(imin(NR, jhi - j0));
        const bool direct_b = b_in_place && nr == NR;
        const T* bp = direct_b ? b.data + p0 * b.rs + j0 : b_panels + pj * kc * NR;
        const index_t ldb = direct_b ? b.rs : NR;
        T* ct = c + i0 * ldc + j0;
        // (a whole tile whose write-back would be plain, or one of last_to's epilogues: written
        // to C by the kernel)
        const bool direct = has_direct_c<K>::value && mr == MR && nr == NR &&
                            (!last || ep.kind == EpilogueKind::none || last_to != SumsTo::c);
        // The weights and optimizer state of the thread's next tile (update implies row
        // bands: the next column panel, then the next row panel's first) are requested during
        // this tile's kernel, so that they are in cache for the next write-back: more than
        // kBurstLines one every few k steps, fewer at once; a band's first tile loads its own
        // at once. (Each tile's own just before its kernel measured 3% slower than the next
        // tile's at once; AVX-512's 72 lines spread 0-4% faster than at once on two threads,
        // 2-10% on one, AVX2's 18 lines 1-6% slower: bench/RESULTS.md.)
        const char* next_lines[update_lines_max<T, NR>(MR)];
        LinePrefetch pf;
        if (update && last) {
          if (i0 == r0 && pj == 0) prefetch_update_tile<T, NR, MR>(ep, i0, j0, mr);
          index_t next_i0 = i0, next_j0 = j0 + NR;
          if (next_j0 >= j_tiles) {
            next_j0 = jlo;
            next_i0 = i0 + MR;
          }
          if (next_i0 < r1) {
            pf.lines = next_lines;
            pf.count = update_tile_lines<T, NR>(ep, next_i0, next_j0,
                                                static_cast<int>(imin(MR, r1 - next_i0)), next_lines);
            if (pf.count <= kBurstLines) {  // (a burst: the kernel runs its plain loop)
              request_lines(next_lines, pf.count);
              pf.count = 0;
            }
          }
        }
        // an edge panel at most half as wide runs the kernel on half the columns (at most a
        // quarter or three quarters as wide: on a half vector or a vector and a half,
        // has_quarter_edge, has_three_quarter_edge); one of fewer than MR rows on those rows
        // where the kernel can (has_edge_rows)
        // (SKIP: a panel of whole rows without its all-zero steps, packed without them
        // (skip_col_panels: skip_n steps at offsets skip_ks, the tiles' sums to the tile or plainly
        // to C) or read in place (skip_row_panels: skip_n steps at indices skip_ks, the sums to
        // the tile, or to C plainly or with the bias and relu or the bias))
        index_t skip_n = kc;
        const std::int32_t* skip_ks = ks;
        auto kernel = [&](auto row_a, const T* ap, index_t lda, auto skip) {
          constexpr bool ROW_A = decltype(row_a)::value;
          constexpr bool SKIP = decltype(skip)::value;
          auto run = [&](auto nv) {
            constexpr int NV = decltype(nv)::value;
            if constexpr (SKIP) {
              run_skipping<K, ROW_A, NV>(skip_n, ap, lda, bp, ldb, tile, ct, ldc, pf, direct,
                                         last ? last_to : SumsTo::c, acc,
                                         ep.bias != nullptr ? ep.bias + j0 : nullptr, skip_ks);
              return;
            }
            if constexpr (has_edge_rows<K>::value) {
              if (mr < MR) {
                run_edge_rows<K, ROW_A, NV>(mr, kc, ap, lda, bp, ldb, tile, ct, ldc, pf);
                return;
              }
            }
            if constexpr (has_direct_c<K>::value && NV == 2) {
              if (direct) {
                const SumsTo to = last ? last_to : SumsTo::c;
                if (to == SumsTo::c)
                  K::template run<ROW_A, 2, MR, SumsTo::c>(kc, ap, lda, bp, ldb, tile, ct, ldc, pf,
                                                           acc);
                else if (to == SumsTo::c_bias_relu)
                  run_to_c_epilogue<K, ROW_A, SumsTo::c_bias_relu>(kc, ap, lda, bp, ldb, ct, ldc,
                                                                   pf, acc, ep.bias + j0, 0);
                else if (to == SumsTo::c_bias)
                  run_to_c_epilogue<K, ROW_A, SumsTo::c_bias>(kc, ap, lda, bp, ldb, ct, ldc, pf,
                                                              acc, ep.bias + j0, 0);
                else
                  run_to_c_epilogue<K, ROW_A, SumsTo::c_relu_grad>(
                      kc, ap, lda, bp, ldb, ct, ldc, pf, acc, ep.aux + i0 * ep.ld_aux + j0,
                      ep.ld_aux);
                return;
              }
            }
            K::template run<ROW_A, NV>(kc, ap, lda, bp, ldb, tile, ct, ldc, pf);
          };
          const int quarters = (4 * nr + NR - 1) / NR;  // of the tile's width: 1 to 4
          if constexpr (has_quarter_edge<K>::value) {
            if (quarters == 1) return run(std::integral_constant<int, 0>{});
          }
          if constexpr (has_three_quarter_edge<K>::value) {
            if (quarters == 3) return run(std::integral_constant<int, 3>{});
          }
          if (quarters <= 2)
            run(std::integral_constant<int, 1>{});
          else
            run(std::integral_constant<int, 2>{});
        };
        if (a_mode == kPacked) {
          kernel(std::false_type{}, a_own + ip * MR * kc, MR, std::false_type{});
        } else if ((mr < MR && !has_edge_rows<K>::value) || pack_col_panels) {
          if (packed_ip != ip) {
            pack_a_panel<T, MR>(a, i0, mr, p0, kc, a_own);
            if constexpr (CAN_SKIP) {
              panel_steps =
                  skip_col_panels && mr == MR ? compact_zero_steps<T, MR>(a_own, kc, ks, NR) : kc;
              skipped[0] += kc - panel_steps;
            }
            packed_ip = ip;
          }
          bool skipping = false;
          if constexpr (CAN_SKIP) {
            if (panel_steps < kc) {
              skip_n = panel_steps;
              kernel(std::false_type{}, a_own, MR, std::true_type{});
              skipping = true;
            }
          }
          // (all steps kept: the panel is pack_a_panel's)
          if (!skipping) kernel(std::false_type{}, a_own, MR, std::false_type{});
        } else if (a_mode == kColumnMajor) {
          kernel(std::false_type{}, a.data + i0 + p0 * a.cs, a.cs, std::false_type{});
        } else {
          bool skipping = false;
          if constexpr (CAN_SKIP) {
            if (skip_row_panels && row_steps[ip] < 0) row_steps[ip] = find_row_steps(ip);
            if (skip_row_panels && row_steps[ip] < kc) {
              skip_n = row_steps[ip];
              skip_ks = ks + ip * kc;
              kernel(std::true_type{}, a.data + i0 * a.rs + p0, a.rs, std::true_type{});
              skipping = true;
            }
          }
          if (!skipping) kernel(std::true_type{}, a.data + i0 * a.rs + p0, a.rs, std::false_type{});
        }
        if (!direct) store_tile<T, NR>(tile, mr, nr, ct, ldc, i0, j0, acc, last, ep);
      };
      // (skip_row_panels in row bands: panel ip's rows requested a share after each tile of the
      // panel before it, pj of nq, into L2, where its count reads them instead of from memory:
      // Fashion-MNIST's first-layer product 1.5% faster on AVX-512, bench/RESULTS.md)
      auto request_row_share = [&](index_t ip, index_t pj) {
        const index_t row_lines = (kc * index_t(sizeof(T)) + 63) / 64;
        const index_t l0 = row_lines * pj / nq, l1 = row_lines * (pj + 1) / nq;
        const T* first = a.data + (ic + ip * MR) * a.rs + p0;
        const int rows = static_cast<int>(imin(MR, mc - ip * MR));
        for (int i = 0; i < rows; ++i) {
          const char* row = reinterpret_cast<const char*>(first + i * a.rs);
          for (index_t l = l0; l < l1; ++l) __builtin_prefetch(row + 64 * l, 0, 2);
        }
      };
      // (Epilogue::a_nonfinite: each thread its rows of A; with split columns, which every thread
      // reads whole, a share of the block's rows each)
      auto tiles = [&](auto can_skip) {
        if (split_m) {  // row bands: an A panel stays in L1 across the B panels
          for (index_t ip = 0; ip < m_panels; ++ip) {
            for (index_t pj = 0; pj < nq; ++pj) {
              tile_at(ip, pj, can_skip);
              if constexpr (decltype(can_skip)::value)
                if (skip_row_panels && ip + 1 < m_panels) request_row_share(ip + 1, pj);
            }
            if (check_a)
              check_a_finite(a, ic + ip * MR, imin(ic + (ip + 1) * MR, ic + mc), p0, kc,
                             ep.a_nonfinite);
          }
        } else {  // column panels: a B panel stays in L1 across the A panels
          for (index_t pj = 0; pj < nq; ++pj) {
            for (index_t ip = 0; ip < m_panels; ++ip) tile_at(ip, pj, can_skip);
            if (check_a && pj == 0)
              check_a_finite(a, ic + mc * tid / nt, ic + mc * (tid + 1) / nt, p0, kc,
                             ep.a_nonfinite);
          }
        }
      };
      // (skip_row_panels with a bias and activation: the block's first kRowProbePanels panels
      // counted first; with no steps to leave out there, as in rows without zeros, the block runs
      // the tile loop without the skipping paths, its other panels read whole. Counting every
      // panel of California housing's rows, which have none, in that loop made one-thread
      // predictions 3.5-5.7% slower (depth 50: kRowSkipMinDepth now leaves them out), and one
      // panel alone left out 9-12% fewer of Fashion-MNIST's steps, four 2-3% fewer,
      // bench/RESULTS.md)
      const bool probe = skip_row_panels && ep.kind == EpilogueKind::bias_activation;
      bool row_skipping = skip_row_panels && !probe;
      for (index_t ip = 0; probe && ip < imin(m_panels, kRowProbePanels); ++ip) {
        row_steps[ip] = find_row_steps(ip);
        row_skipping = row_skipping || row_steps[ip] < kc;
      }
      if (skip_col_panels || row_skipping)
        tiles(std::true_type{});
      else
        tiles(std::false_type{});
      if constexpr (has_row_vector_edge<K>::value) {
        if (edge_by_rows) {
          const index_t j0 = jlo + (nq - 1) * NR;
          edge_columns_by_rows<T, K>(ic, ic + mc, last_nr, kc, a.data + p0 * a.cs, a.cs,
                                     b_panels + (nq - 1) * kc * NR, tile, c + j0, ldc, j0, acc,
                                     last, ep);
        }
      }
      for (int order = 0; order < 2; ++order)
        if (skipped[order] > 0)
          __atomic_fetch_add(&skipped_zero_steps[order], skipped[order], __ATOMIC_RELAXED);
    }
  }
  if (update && colsum != nullptr) update_biases(ep, jlo, jhi);
}

// dst (cols x rows, row-major) := the transpose of src (rows x cols, row-major). With AVX, in
// blocks of 8 x 8 floats or 4 x 4 doubles, one 256-bit vector a row, transposed in registers
// (unpack, shuffle, lane permute: the usual sequence); the edges element by element.
#if defined(__AVX__)
FUSEDMLP_ALWAYS_INLINE void transpose_block(const float* src, index_t lds, float* dst,
                                            index_t ldd) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int h = 0; h < 8; h += 4) {  // rows 0-3, then 4-7
    r[h] = _mm256_shuffle_ps(t[h], t[h + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

FUSEDMLP_ALWAYS_INLINE void transpose_block(const double* src, index_t lds, double* dst,
                                            index_t ldd) {
  __m256d r[4], t[4];
  for (int i = 0; i < 4; ++i) r[i] = _mm256_loadu_pd(src + i * lds);
  t[0] = _mm256_unpacklo_pd(r[0], r[1]);
  t[1] = _mm256_unpackhi_pd(r[0], r[1]);
  t[2] = _mm256_unpacklo_pd(r[2], r[3]);
  t[3] = _mm256_unpackhi_pd(r[2], r[3]);
  _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t[0], t[2], 0x20));
  _mm256_storeu_pd(dst + ldd, _mm256_permute2f128_pd(t[1], t[3], 0x20));
  _mm256_storeu_pd(dst + 2 * ldd, _mm256_permute2f128_pd(t[0], t[2], 0x31));
  _mm256_storeu_pd(dst + 3 * ldd, _mm256_permute2f128_pd(t[1], t[3], 0x31));
}
#endif

template <class T>
void transpose_run(index_t rows, index_t cols, const T* __restrict src, T* __restrict dst) {
  index_t r = 0;
#if defined(__AVX__)
  constexpr index_t B = 32 / sizeof(T);
  for (; r + B <= rows; r += B) {
    index_t c = 0;
    for (; c + B <= cols; c += B)
      transpose_block(src + r * cols + c, cols, dst + c * rows + r, rows);
    for (; c < cols; ++c)
      for (index_t i = 0; i < B; ++i) dst[c * rows + r + i] = src[(r + i) * cols + c];
  }
#endif
  for (; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

// Rows [i0, i1) of a layer's forward from the two half-depth products of dense_forward_halves:
// out := act((out + second) + b), the pre-activations kept and units dropped as the GEMM's own
// write-back does (write_hidden_forward_rows). Compiled for each instruction set: from the
// baseline x86-64 build it took 42-49k cycles a Fashion-MNIST batch and thread, 30-35k here.
template <class T>
void halves_sum_run(index_t i0, index_t i1, index_t n, T* out, const T* second, const T* b,
                    Activation act, const HiddenUnits<T>& hidden) {
  dispatch_hidden_activation(act, [&](auto a_tag) {
    constexpr Activation A = decltype(a_tag)::value;
    const T p = hidden.param, scale = hidden.keep_scale;
    for (index_t i = i0; i < i1; ++i) {
      T* __restrict o = out + i * n;
      const T* __restrict s = second + i * n;
      // (the lines of the row 4 on requested: on two threads one of its two operands was
      // written by the other core; 26-31k cycles a batch and thread against 32-35k without)
      if (i + 4 < i1) {
        const char* oa = reinterpret_cast<const char*>(o + 4 * n);
        const char* sa = reinterpret_cast<const char*>(s + 4 * n);
        for (index_t l = 0; l < n * index_t(sizeof(T)); l += 64) {
          __builtin_prefetch(oa + l, 1, 3);
          __builtin_prefetch(sa + l, 0, 3);
        }
      }
      if (hidden.pre == nullptr && !hidden.dropout()) {
#pragma omp simd
        for (index_t j = 0; j < n; ++j) o[j] = activate<A>(o[j] + s[j] + b[j], p);
        continue;
      }
      T* __restrict z = hidden.pre != nullptr ? hidden.pre + i * hidden.ld_pre : nullptr;
      const std::uint32_t row_hash =
          hidden.dropout() ? dropout_row_hash(hidden.key, hidden.row0 + i) : 0u;
#pragma omp simd
      for (index_t j = 0; j < n; ++j) {
        const T v = o[j] + s[j] + b[j];
        if (z != nullptr) z[j] = v;
        const T a = activate<A>(v, p);
        if (hidden.dropout())
          o[j] = dropout_bits_in_row(row_hash, j) < hidden.threshold ? T(0) : a * scale;
        else
          o[j] = a;
      }
    }
    return 0;
  });
}

template <class T, bool ADAM>
void optimizer_pass_run(T* __restrict p, T* __restrict s0, T* __restrict s1, index_t n,
                        const OptimizerPass<T>& pass) {
  constexpr index_t kChunk = kSqChunk;  // squares summed in T over a chunk (pass.chunk_sq)
  constexpr index_t kAhead = 4;
  const AdamStep<T> adam = pass.adam_step;
  const SgdStep<T> sgd = pass.sgd_step;
  const T alpha = pass.alpha, scale = pass.scale;
  T g[kChunk];
  for (index_t c = 0; c < n; c += kChunk) {
    const int len = static_cast<int>(imin(kChunk, n - c));
    const T* src = pass.partial + c;
    // (the partial gradients kAhead chunks on requested: on two threads half of them were
    // written by the other core, a miss each line; 1.6% faster per California housing epoch)
    if (c + kAhead * kChunk < n) {
      for (index_t b = 0; b < pass.n_partials; ++b) {
        const char* ahead = reinterpret_cast<const char*>(src + b * pass.stride + kAhead * kChunk);
        for (int l = 0; l < kChunk * static_cast<int>(sizeof(T)); l += 64)
          __builtin_prefetch(ahead + l, 0, 3);
      }
    }
    if (pass.split_pairs == nullptr) {
#pragma omp simd
      for (int i = 0; i < len; ++i) g[i] = src[i];
      for (index_t b = 1; b < pass.n_partials; ++b) {
        const T* part = src + b * pass.stride;
#pragma omp simd
        for (int i = 0; i < len; ++i) g[i] += part[i];
      }
    } else {
      for (index_t b = 0; b < pass.n_partials; b += 2) {
        const T* first = src + b * pass.stride;
        const bool split = b + 1 < pass.n_partials && pass.split_pairs[b / 2] != 0;
        const T* second = split ? first + pass.stride : first;  // (no pointer past the last)
        if (b == 0 && split) {
#pragma omp simd
          for (int i = 0; i < len; ++i) g[i] = first[i] + second[i];
        } else if (b == 0) {
#pragma omp simd
          for (int i = 0; i < len; ++i) g[i] = first[i];
        } else if (split) {
#pragma omp simd
          for (int i = 0; i < len; ++i) g[i] += first[i] + second[i];
        } else {
#pragma omp simd
          for (int i = 0; i < len; ++i) g[i] += first[i];
        }
      }
    }
    T part_sq = T(0);
#pragma omp simd reduction(+ : part_sq)
    for (int i = 0; i < len; ++i) {
      const T grad = l2_grad(g[i], alpha, p[c + i], scale);
      if constexpr (ADAM)
        adam_step(p[c + i], s0[c + i], s1[c + i], grad, adam);
      else
        sgd_step(p[c + i], s0[c + i], grad, sgd);
      part_sq += p[c + i] * p[c + i];
    }
    if (pass.chunk_sq != nullptr) pass.chunk_sq[c / kChunk] = static_cast<double>(part_sq);
  }
}

}  // namespace FUSEDMLP_ISA_NS
}  // namespace cpu
}  // namespace fusedmlp
