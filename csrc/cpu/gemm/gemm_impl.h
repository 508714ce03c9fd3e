// Packing and blocking loops of the CPU GEMM, shared by every instruction set.
//
// Included once by each gemm_<isa>.cpp after it defines FUSEDMLP_ISA_NS and its micro-kernel
// `Kernel<T>` (contract: tile := A_panel * B_panel for one MR x NR tile, see ukernel_*.h).
// Everything here lives in that instruction set's namespace and uses no standard-library
// templates, so no function compiled for one instruction set can be shared through the
// linker with code compiled for another.
//
// Loop structure (per thread, threads split the columns of C into NR-wide panels):
//   for each KC-deep block of k:
//     pack this thread's B panels (KC x NR each), fusing the column sum of B if asked
//     for each MC-row block of A:
//       pack the A block into MR-row panels, shared by all threads (unless A is column-major,
//       then full MR-row panels are read in place)
//       for each of my B panels, for each A panel: micro-kernel, then the write-back applies
//       accumulation and, on the last k block, the epilogue while the tile is in L1.
#ifndef FUSEDMLP_ISA_NS
#error "define FUSEDMLP_ISA_NS before including gemm_impl.h"
#endif

#include <omp.h>

#include <cstddef>
#include <cstdint>

#include "cpu/gemm/gemm.h"
#include "fusedmlp/activation.h"

#define FUSEDMLP_ALWAYS_INLINE inline __attribute__((always_inline))

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
  } else {
    for (index_t p = 0; p < kc; ++p) {
      const T* src = a.data + i0 * a.rs + (p0 + p) * a.cs;
      T* d = dst + p * MR;
      for (int i = 0; i < mr; ++i) d[i] = src[i * a.rs];
      for (int i = mr; i < MR; ++i) d[i] = T(0);
    }
  }
}

// B panel (kc x NR columns from j0) -> dst[p * NR + j], zero columns past nr. When colsum is
// given, colsum[j] (+)= scale * sum_p B(p, j) for this block ('=' when set).
template <class T, int NR>
void pack_b_panel(const Operand<T>& b, index_t p0, index_t kc, index_t j0, int nr, T* dst,
                  T* colsum, T scale, bool set) {
  T sums[NR];
  for (int j = 0; j < NR; ++j) sums[j] = T(0);
  if (b.cs == 1) {
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
}

// C tile := op(tile [+ C]); op(v, i, j) is the epilogue at tile coordinates (i, j).
template <class T, int NR, class Op>
FUSEDMLP_ALWAYS_INLINE void write_tile(const T* tile, int mr, int nr, T* c, index_t ldc, bool acc,
                                       Op op) {
  for (int i = 0; i < mr; ++i) {
    T* crow = c + i * ldc;
    const T* t = tile + i * NR;
    if (acc) {
#pragma omp simd
      for (int j = 0; j < nr; ++j) crow[j] = op(t[j] + crow[j], i, j);
    } else {
#pragma omp simd
      for (int j = 0; j < nr; ++j) crow[j] = op(t[j], i, j);
    }
  }
}

template <class T, int NR, Activation A>
FUSEDMLP_ALWAYS_INLINE void write_bias_activation(const T* tile, int mr, int nr, T* c, index_t ldc,
                                                  bool acc, const T* bias) {
  write_tile<T, NR>(tile, mr, nr, c, ldc, acc,
                    [bias](T v, int, int j) { return activate<A>(v + bias[j]); });
}

template <class T, int NR, Activation A>
FUSEDMLP_ALWAYS_INLINE void write_activation_grad(const T* tile, int mr, int nr, T* c, index_t ldc,
                                                  bool acc, const T* aux, index_t ld) {
  write_tile<T, NR>(tile, mr, nr, c, ldc, acc, [aux, ld](T v, int i, int j) {
    return v * activation_grad_from_output<A>(aux[i * ld + j]);
  });
}

// Stores one tile at C(i0, j0); the epilogue runs only on the last k block. Activation codes
// were validated by the dispatcher, so the switches below cover every case they can get.
template <class T, int NR>
void store_tile(const T* tile, int mr, int nr, T* c, index_t ldc, index_t i0, index_t j0, bool acc,
                bool last, const Epilogue<T>& ep) {
  auto plain = [](T v, int, int) { return v; };
  if (!last || ep.kind == EpilogueKind::none) {
    write_tile<T, NR>(tile, mr, nr, c, ldc, acc, plain);
    return;
  }
  switch (ep.kind) {
    case EpilogueKind::bias_activation: {
      const T* bias = ep.bias + j0;
      switch (ep.act) {
        case Activation::logistic:
          write_bias_activation<T, NR, Activation::logistic>(tile, mr, nr, c, ldc, acc, bias);
          return;
        case Activation::tanh:
          write_bias_activation<T, NR, Activation::tanh>(tile, mr, nr, c, ldc, acc, bias);
          return;
        case Activation::relu:
          write_bias_activation<T, NR, Activation::relu>(tile, mr, nr, c, ldc, acc, bias);
          return;
        default:
          write_bias_activation<T, NR, Activation::identity>(tile, mr, nr, c, ldc, acc, bias);
          return;
      }
    }
    case EpilogueKind::weight_grad: {
      const T* aux = ep.aux + i0 * ep.ld_aux + j0;
      const index_t ld = ep.ld_aux;
      const T alpha = ep.alpha, scale = ep.scale;
      write_tile<T, NR>(tile, mr, nr, c, ldc, acc, [=](T v, int i, int j) {
        return (v + alpha * aux[i * ld + j]) * scale;
      });
      return;
    }
    case EpilogueKind::activation_grad: {
      const T* aux = ep.aux + i0 * ep.ld_aux + j0;
      const index_t ld = ep.ld_aux;
      switch (ep.act) {
        case Activation::logistic:
          write_activation_grad<T, NR, Activation::logistic>(tile, mr, nr, c, ldc, acc, aux, ld);
          return;
        case Activation::tanh:
          write_activation_grad<T, NR, Activation::tanh>(tile, mr, nr, c, ldc, acc, aux, ld);
          return;
        case Activation::relu:
          write_activation_grad<T, NR, Activation::relu>(tile, mr, nr, c, ldc, acc, aux, ld);
          return;
        default:
          write_tile<T, NR>(tile, mr, nr, c, ldc, acc, plain);
          return;
      }
    }
    default:
      write_tile<T, NR>(tile, mr, nr, c, ldc, acc, plain);
      return;
  }
}

template <class T, class K>
void gemm_run(index_t m, index_t n, index_t k, Operand<T> a, Operand<T> b, T* c, index_t ldc,
              const Epilogue<T>& ep, bool accumulate, int n_threads, GemmWorkspace& ws) {
  constexpr int MR = K::MR;
  constexpr int NR = K::NR;
  constexpr index_t KC = K::KC;
  constexpr index_t MC = 32 * MR;
  if (m <= 0 || n <= 0) return;

  const index_t n_panels = (n + NR - 1) / NR;
  alignas(64) T zero_tile[MR * NR];
  if (k <= 0) {  // A * B is the zero matrix; the epilogue still applies
    for (int i = 0; i < MR * NR; ++i) zero_tile[i] = T(0);
    for (index_t i0 = 0; i0 < m; i0 += MR)
      for (index_t j0 = 0; j0 < n; j0 += NR)
        store_tile<T, NR>(zero_tile, static_cast<int>(imin(MR, m - i0)),
                          static_cast<int>(imin(NR, n - j0)), c + i0 * ldc + j0, ldc, i0, j0,
                          accumulate, true, ep);
    if (ep.colsum_b != nullptr && !accumulate)
      for (index_t j = 0; j < n; ++j) ep.colsum_b[j] = T(0);
    return;
  }

  const index_t n_kblocks = (k + KC - 1) / KC;
  const index_t kc_max = (k + n_kblocks - 1) / n_kblocks;  // balanced depth blocks
  const index_t n_mblocks = (m + MC - 1) / MC;
  const index_t mc_max = ((m + n_mblocks - 1) / n_mblocks + MR - 1) / MR * MR;
  const bool a_in_place = (a.rs == 1);

  index_t work_threads = (m * n * k) / K::MIN_FLOPS_PER_THREAD;
  int nt = n_threads;
  if (nt > n_panels) nt = static_cast<int>(n_panels);
  if (nt > work_threads) nt = static_cast<int>(work_threads);
  if (nt < 1) nt = 1;

  T* a_pack = a_in_place ? nullptr
                         : static_cast<T*>(ws.shared(sizeof(T) * static_cast<std::size_t>(mc_max * kc_max)));
  const index_t max_my_panels = (n_panels + nt - 1) / nt;
  const index_t b_elems = kc_max * NR * max_my_panels;
  const index_t edge_elems = MR * kc_max;
  const index_t tile_elems = MR * NR;
  ws.reserve_threads(nt);
  T* thread_buf[64];
  if (nt > 64) nt = 64;
  for (int t = 0; t < nt; ++t)
    thread_buf[t] = static_cast<T*>(
        ws.per_thread(t, sizeof(T) * static_cast<std::size_t>(b_elems + edge_elems + tile_elems + 64)));

  auto body = [&](int tid, int nth) {
    const index_t pj0 = n_panels * tid / nth;
    const index_t pj1 = n_panels * (tid + 1) / nth;
    T* b_block = thread_buf[tid];
    T* edge = b_block + b_elems;
    T* tile = edge + edge_elems;
    tile = reinterpret_cast<T*>((reinterpret_cast<std::uintptr_t>(tile) + 63) & ~std::uintptr_t(63));

    for (index_t kb = 0; kb < n_kblocks; ++kb) {
      const index_t p0 = kb * kc_max;
      const index_t kc = imin(kc_max, k - p0);
      const bool acc = accumulate || kb > 0;
      const bool last = kb == n_kblocks - 1;
      for (index_t pj = pj0; pj < pj1; ++pj) {
        const index_t j0 = pj * NR;
        const int nr = static_cast<int>(imin(NR, n - j0));
        pack_b_panel<T, NR>(b, p0, kc, j0, nr, b_block + (pj - pj0) * kc * NR,
                            ep.colsum_b != nullptr ? ep.colsum_b + j0 : nullptr, ep.colsum_scale,
                            kb == 0 && !accumulate);
      }
      for (index_t ic = 0; ic < m; ic += mc_max) {
        const index_t mc = imin(mc_max, m - ic);
        const index_t m_panels = (mc + MR - 1) / MR;
        if (!a_in_place) {
          for (index_t ip = tid; ip < m_panels; ip += nth)
            pack_a_panel<T, MR>(a, ic + ip * MR, static_cast<int>(imin(MR, mc - ip * MR)), p0, kc,
                                a_pack + ip * MR * kc);
          if (nth > 1) {
#pragma omp barrier
          }
        }
        bool edge_packed = false;
        for (index_t pj = pj0; pj < pj1; ++pj) {
          const index_t j0 = pj * NR;
          const int nr = static_cast<int>(imin(NR, n - j0));
          const T* bp = b_block + (pj - pj0) * kc * NR;
          for (index_t ip = 0; ip < m_panels; ++ip) {
            const index_t i0 = ic + ip * MR;
            const int mr = static_cast<int>(imin(MR, m - i0));
            const T* ap;
            index_t a_ks;
            if (!a_in_place) {
              ap = a_pack + ip * MR * kc;
              a_ks = MR;
            } else if (mr == MR) {
              ap = a.data + i0 + p0 * a.cs;
              a_ks = a.cs;
            } else {
              if (!edge_packed) {
                pack_a_panel<T, MR>(a, i0, mr, p0, kc, edge);
                edge_packed = true;
              }
              ap = edge;
              a_ks = MR;
            }
            K::run(kc, ap, a_ks, bp, tile);
            store_tile<T, NR>(tile, mr, nr, c + i0 * ldc + j0, ldc, i0, j0, acc, last, ep);
          }
        }
        if (!a_in_place && nth > 1) {
#pragma omp barrier
        }
      }
    }
  };

  if (nt == 1) {
    body(0, 1);
  } else {
#pragma omp parallel num_threads(nt)
    body(omp_get_thread_num(), omp_get_num_threads());
  }
}

}  // namespace FUSEDMLP_ISA_NS
}  // namespace cpu
}  // namespace fusedmlp
