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
// The weight gradient of one tile, handed straight to the optimizer: W, its state and the
// norm of the new weights are updated; the gradient never goes to memory.
// One row of update_tile; restrict-qualified parameters so the compiler vectorizes it.
template <class T, int N, bool ADAM, bool ACC>
FUSEDMLP_ALWAYS_INLINE T update_row(int n, const T* __restrict t, const T* __restrict crow,
                                    T* __restrict w, T* __restrict s0, T* __restrict s1, T alpha,
                                    T scale, const AdamStep<T>& adam, const SgdStep<T>& sgd) {
  T row_sq = T(0);
  const int len = N > 0 ? N : n;
#pragma omp simd reduction(+ : row_sq)
  for (int j = 0; j < len; ++j) {
    const T g = ((ACC ? t[j] + crow[j] : t[j]) + alpha * w[j]) * scale;
    if constexpr (ADAM)
      adam_step(w[j], s0[j], s1[j], g, adam);
    else
      sgd_step(w[j], s0[j], g, sgd);
    row_sq += w[j] * w[j];
  }
  return row_sq;
}

// Starts loading a tile's weights and optimizer state while the micro-kernel computes its
// gradient: the write-back then finds them in cache instead of waiting on memory.
template <class T, int NR>
FUSEDMLP_ALWAYS_INLINE void prefetch_update_tile(const Epilogue<T>& ep, index_t i0, index_t j0,
                                                 int mr) {
  constexpr int lines = (NR * static_cast<int>(sizeof(T)) + 63) / 64;
  const T* arrays[3] = {ep.w_update, ep.state_0, ep.state_1};
  for (const T* base : arrays) {
    if (base == nullptr) continue;
    for (int i = 0; i < mr; ++i) {
      const char* row = reinterpret_cast<const char*>(base + (i0 + i) * ep.ld_aux + j0);
      for (int l = 0; l < lines; ++l) __builtin_prefetch(row + 64 * l, 1, 3);
    }
  }
}

template <class T, int NR, bool ADAM, bool ACC>
void update_tile(const T* tile, int mr, int nr, const T* c, index_t ldc, index_t i0, index_t j0,
                 const Epilogue<T>& ep, double& sq) {
  const index_t ld = ep.ld_aux;
  const T alpha = ep.alpha, scale = ep.scale;
  const AdamStep<T> adam = ep.adam;
  const SgdStep<T> sgd = ep.sgd;
  double s = 0.0;  // at most NR terms per row are summed in T
  for (int i = 0; i < mr; ++i) {
    const index_t off = (i0 + i) * ld + j0;
    T* s1 = ADAM ? ep.state_1 + off : nullptr;
    if (nr == NR)
      s += update_row<T, NR, ADAM, ACC>(NR, tile + i * NR, c + i * ldc, ep.w_update + off,
                                         ep.state_0 + off, s1, alpha, scale, adam, sgd);
    else
      s += update_row<T, 0, ADAM, ACC>(nr, tile + i * NR, c + i * ldc, ep.w_update + off,
                                        ep.state_0 + off, s1, alpha, scale, adam, sgd);
  }
  sq += s;
}

template <class T, int NR>
void store_tile(const T* tile, int mr, int nr, T* c, index_t ldc, index_t i0, index_t j0, bool acc,
                bool last, const Epilogue<T>& ep, double& sq) {
  if (last && ep.kind == EpilogueKind::weight_update_adam) {
    if (acc)
      update_tile<T, NR, true, true>(tile, mr, nr, c, ldc, i0, j0, ep, sq);
    else
      update_tile<T, NR, true, false>(tile, mr, nr, c, ldc, i0, j0, ep, sq);
    return;
  }
  if (last && ep.kind == EpilogueKind::weight_update_sgd) {
    if (acc)
      update_tile<T, NR, false, true>(tile, mr, nr, c, ldc, i0, j0, ep, sq);
    else
      update_tile<T, NR, false, false>(tile, mr, nr, c, ldc, i0, j0, ep, sq);
    return;
  }
  auto plain = [](T v, int, int) { return v; };
  if (!last || ep.kind == EpilogueKind::none || ep.kind == EpilogueKind::weight_update_adam ||
      ep.kind == EpilogueKind::weight_update_sgd) {
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
  constexpr index_t MC = K::MC;
  if (m <= 0 || n <= 0) return;

  const index_t n_panels = (n + NR - 1) / NR;
  alignas(64) T zero_tile[MR * NR];
  if (k <= 0) {  // A * B is the zero matrix; the epilogue still applies
    for (int i = 0; i < MR * NR; ++i) zero_tile[i] = T(0);
    double sq = 0.0;
    for (index_t i0 = 0; i0 < m; i0 += MR)
      for (index_t j0 = 0; j0 < n; j0 += NR)
        store_tile<T, NR>(zero_tile, static_cast<int>(imin(MR, m - i0)),
                          static_cast<int>(imin(NR, n - j0)), c + i0 * ldc + j0, ldc, i0, j0,
                          accumulate, true, ep, sq);
    if (ep.colsum_b != nullptr && !accumulate)
      for (index_t j = 0; j < n; ++j) ep.colsum_b[j] = T(0);
    if (ep.sq_norm != nullptr) *ep.sq_norm += sq;
    return;
  }

  const index_t n_kblocks = (k + KC - 1) / KC;
  const index_t kc_max = (k + n_kblocks - 1) / n_kblocks;  // balanced depth blocks
  const index_t m_panels_all = (m + MR - 1) / MR;

  // A is read in place when one of its strides is 1 (row- or column-major, the only layouts
  // the trainer uses); other strides are packed into MR-row panels.
  enum { kColumnMajor, kRowMajor, kPacked };
  const int a_mode = a.rs == 1 ? kColumnMajor : (a.cs == 1 ? kRowMajor : kPacked);

  // Threads split the columns of C (each packs only its B panels and A is shared in place),
  // or its rows when the epilogue updates weights: then each thread walks a contiguous block
  // of W and the optimizer state row after row, which the prefetcher streams, at the price of
  // every thread packing all of B (k x n, small next to the m x n x k work).
  const bool update = ep.kind == EpilogueKind::weight_update_adam ||
                      ep.kind == EpilogueKind::weight_update_sgd;
  const bool split_m = update || n_panels < n_threads;
  const index_t split_units = split_m ? m_panels_all : n_panels;
  const index_t work_threads = (m * n * k) / K::MIN_FLOPS_PER_THREAD;
  int nt = n_threads;
  if (nt > split_units) nt = static_cast<int>(split_units);
  if (nt > work_threads) nt = static_cast<int>(work_threads);
  if (nt > 64) nt = 64;
  if (nt < 1) nt = 1;

  const index_t n_mblocks = (m + MC - 1) / MC;
  const index_t mc_max = ((m + n_mblocks - 1) / n_mblocks + MR - 1) / MR * MR;
  const bool shared_a_pack = a_mode == kPacked && !split_m;
  T* a_pack = shared_a_pack
                  ? static_cast<T*>(ws.shared(sizeof(T) * static_cast<std::size_t>(mc_max * kc_max)))
                  : nullptr;
  const index_t max_my_panels = split_m ? n_panels : (n_panels + nt - 1) / nt;
  const index_t b_elems = kc_max * NR * max_my_panels;
  const index_t a_elems = (a_mode == kPacked && split_m) ? mc_max * kc_max : MR * kc_max;
  const index_t tile_elems = MR * NR;
  ws.reserve_threads(nt);
  T* thread_buf[64];
  for (int t = 0; t < nt; ++t)
    thread_buf[t] = static_cast<T*>(
        ws.per_thread(t, sizeof(T) * static_cast<std::size_t>(b_elems + a_elems + tile_elems + 64)));

  double sq_part[64] = {};
  auto body = [&](int tid, int nth) {
    double& sq = sq_part[tid];
    index_t pj0 = 0, pj1 = n_panels, r0 = 0, r1 = m;
    if (split_m) {
      r0 = imin(m, m_panels_all * tid / nth * MR);
      r1 = imin(m, m_panels_all * (tid + 1) / nth * MR);
    } else {
      pj0 = n_panels * tid / nth;
      pj1 = n_panels * (tid + 1) / nth;
    }
    // With split rows every thread packs all of B; one of them computes the column sum.
    T* colsum = (ep.colsum_b != nullptr && (!split_m || tid == 0)) ? ep.colsum_b : nullptr;
    T* b_block = thread_buf[tid];
    T* a_own = b_block + b_elems;  // edge panel, or this thread's packed A block
    T* tile = a_own + a_elems;
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
                            colsum != nullptr ? colsum + j0 : nullptr, ep.colsum_scale,
                            kb == 0 && !accumulate);
      }
      // The barrier-free paths: in-place A, or (split rows) each thread packing its own rows.
      for (index_t ic = r0; ic < r1; ic += mc_max) {
        const index_t mc = imin(mc_max, r1 - ic);
        const index_t m_panels = (mc + MR - 1) / MR;
        const T* a_block = nullptr;
        if (a_mode == kPacked) {
          T* dst = shared_a_pack ? a_pack : a_own;
          const index_t first = shared_a_pack ? tid : 0, step = shared_a_pack ? nth : 1;
          for (index_t ip = first; ip < m_panels; ip += step)
            pack_a_panel<T, MR>(a, ic + ip * MR, static_cast<int>(imin(MR, mc - ip * MR)), p0, kc,
                                dst + ip * MR * kc);
          if (shared_a_pack && nth > 1) {
#pragma omp barrier
          }
          a_block = dst;
        }
        bool edge_packed = false;
        auto tile_at = [&](index_t ip, index_t pj) {
          const index_t i0 = ic + ip * MR;
          const int mr = static_cast<int>(imin(MR, m - i0));
          const index_t j0 = pj * NR;
          const int nr = static_cast<int>(imin(NR, n - j0));
          const T* bp = b_block + (pj - pj0) * kc * NR;
          T* ct = c + i0 * ldc + j0;
          if (update && last) prefetch_update_tile<T, NR>(ep, i0, j0, mr);
          if (a_mode == kPacked) {
            K::template run<false>(kc, a_block + ip * MR * kc, MR, bp, tile, ct, ldc);
          } else if (mr < MR) {  // short edge panel: copy it so every MR row is readable
            if (!edge_packed) {
              pack_a_panel<T, MR>(a, i0, mr, p0, kc, a_own);
              edge_packed = true;
            }
            K::template run<false>(kc, a_own, MR, bp, tile, ct, ldc);
          } else if (a_mode == kColumnMajor) {
            K::template run<false>(kc, a.data + i0 + p0 * a.cs, a.cs, bp, tile, ct, ldc);
          } else {
            K::template run<true>(kc, a.data + i0 * a.rs + p0, a.rs, bp, tile, ct, ldc);
          }
          store_tile<T, NR>(tile, mr, nr, ct, ldc, i0, j0, acc, last, ep, sq);
        };
        if (split_m) {  // row bands: an A panel stays in L1 across the B panels
          for (index_t ip = 0; ip < m_panels; ++ip)
            for (index_t pj = pj0; pj < pj1; ++pj) tile_at(ip, pj);
        } else {  // column panels: a B panel stays in L1 across the A panels
          for (index_t pj = pj0; pj < pj1; ++pj)
            for (index_t ip = 0; ip < m_panels; ++ip) tile_at(ip, pj);
        }
        if (shared_a_pack && nth > 1) {
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
  if (ep.sq_norm != nullptr)
    for (int t = 0; t < nt; ++t) *ep.sq_norm += sq_part[t];
}

}  // namespace FUSEDMLP_ISA_NS
}  // namespace cpu
}  // namespace fusedmlp
