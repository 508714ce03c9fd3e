// Block sizes of the CPU GEMM, one table for every instruction set and type.
//
//   MR x NR  micro-tile held in registers (NR is a whole number of vectors)
//   KC       depth of one packed block: a KC x NR panel of B stays in L1 while every MR-row
//            panel of A streams past it from L2
//   MC       rows of A per block (MC_PANELS panels of MR rows), kept in L2 while every B
//            panel of a thread passes over it
//   MIN_FLOPS_PER_THREAD  below this many multiply-adds per thread a GEMM runs on one thread,
//            so tiny layers do not pay for waking the thread team (a product of fewer than MR
//            rows inside a running team: a sixteenth of it, the threads being awake already;
//            a one-row Fashion-MNIST prediction's 300 x 100 layer on two threads)
//   B_IN_PLACE_PANELS  up to this many MR-row panels of A, full-width panels of a row-major B
//            are read in place: too few passes over a packed panel to repay its packing (96 rows
//            on AVX-512 and AVX2, measured; the portable kernel keeps 8 panels, unmeasured)
#pragma once

#include "fusedmlp/common.h"

// (for the kernels and the loops around them: inlined whatever the compiler's estimate of size)
#define FUSEDMLP_ALWAYS_INLINE inline __attribute__((always_inline))

namespace fusedmlp {
namespace cpu {

// Cache lines a micro-kernel prefetches while it runs (run_steps; a fused weight update's next
// tile: its weights and optimizer state, spread over the kernel instead of all at once).
struct LinePrefetch {
  const char* const* lines = nullptr;
  int count = 0;
};

// A micro-kernel's kc steps (step(): one step of its chains), pf's lines requested among them,
// one every kc / pf.count steps (at least one), the rest after the last. Without lines the plain
// loop runs: it keeps the registers the requests would take.
template <class Step>
FUSEDMLP_ALWAYS_INLINE void run_steps(index_t kc, const LinePrefetch& pf, Step step) {
  if (pf.count == 0) {
    for (index_t p = 0; p < kc; ++p) step();
    return;
  }
  const index_t every = kc / pf.count > 1 ? kc / pf.count : 1;
  int next = 0;
  index_t left = every;
  for (index_t p = 0; p < kc; ++p) {
    if (--left == 0) {
      left = every;
      if (next < pf.count) __builtin_prefetch(pf.lines[next++], 1, 3);
    }
    step();
  }
  while (next < pf.count) __builtin_prefetch(pf.lines[next++], 1, 3);
}

// Where a micro-kernel's sums go: to the tile (the write-back then stores them), or, for a whole
// tile, to C by the kernel itself (DIRECT_C, gemm_impl.h), v := acc ? sums + c : sums and then
// c := v (c), v + bias[j] (c_bias), relu(v + bias[j]) (c_bias_relu), or relu's backward pass
// against the stored activations, aux[i, j] == 0 ? +0 : v (c_relu_grad): the bits of store_tile's
// plain, bias-and-activation and activation-gradient write-backs.
enum class SumsTo { tile, c, c_bias, c_bias_relu, c_relu_grad };

// A whole tile's sums, rows c0[i] and c1[i] of the vector type V, written to C by a kernel. ep:
// the tile's first column's bias, or its first row's stored activations (row stride ld). relu is
// max(0, z) + 0: max returns its second operand when either is NaN or both are zeros, and adding
// +0 turns -0 into +0, so NaN propagates and the result is activate<relu>'s; its backward pass
// zeroes the lanes whose activation compares equal to 0 (-0 too, NaN not), as
// backprop_activation<relu> selects.
template <class V, SumsTo TO, int MR, class R, class T>
FUSEDMLP_ALWAYS_INLINE void sums_to_c(R (&c0)[MR], R (&c1)[MR], T* c, index_t ldc, bool acc,
                                      const T* ep, index_t ld) {
  static_assert(TO != SumsTo::tile, "sums written to C");
  if (acc) {
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = V::add(c0[i], V::load(c + i * ldc));
      c1[i] = V::add(c1[i], V::load(c + i * ldc + V::width));
    }
  }
  if constexpr (TO == SumsTo::c_bias || TO == SumsTo::c_bias_relu) {
    const R b0 = V::load(ep), b1 = V::load(ep + V::width);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = V::add(c0[i], b0);
      c1[i] = V::add(c1[i], b1);
    }
  }
  if constexpr (TO == SumsTo::c_bias_relu) {
    const R zero = V::zero();
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = V::add(V::max(zero, c0[i]), zero);
      c1[i] = V::add(V::max(zero, c1[i]), zero);
    }
  }
  if constexpr (TO == SumsTo::c_relu_grad) {
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = V::zero_where_zero(c0[i], V::load(ep + i * ld));
      c1[i] = V::zero_where_zero(c1[i], V::load(ep + i * ld + V::width));
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    V::storeu(c + i * ldc, c0[i]);
    V::storeu(c + i * ldc + V::width, c1[i]);
  }
}

template <int MR_, int NR_, int KC_, int B_IN_PLACE_PANELS_ = 8, int MC_PANELS = 32>
struct Blocking {
  static constexpr int MR = MR_;
  static constexpr int NR = NR_;
  static constexpr int KC = KC_;
  static constexpr index_t MC = index_t(MC_PANELS) * MR_;
  static constexpr index_t MIN_FLOPS_PER_THREAD = 64 * 1024;
  static constexpr index_t B_IN_PLACE_PANELS = B_IN_PLACE_PANELS_;
};

// KC is 256 for every kernel: a batch of 200 rows (the estimators' default) is one depth block of
// the weight gradients' products, and every dot product is split at the same steps on every
// instruction set. (AVX-512's float64 kernel had 192: its B panels 24 KiB instead of 32, but a
// batch of 200 ran two depth blocks of 100, each tile's partial sums written to C and read back
// by the fused update; a Fashion-MNIST dtype=float64 epoch took 1.19-1.48 times as long on Zen 4,
// bench/RESULTS.md.)
//                              MR  NR   KC  B_IN_PLACE_PANELS
using BlockingAvx512F32 = Blocking<12, 32, 256, 8>;
using BlockingAvx512F64 = Blocking<12, 16, 256, 8>;
using BlockingAvx2F32 = Blocking<6, 16, 256, 16>;
using BlockingAvx2F64 = Blocking<6, 8, 256, 16>;
using BlockingGenericF32 = Blocking<4, 16, 256, 8>;
using BlockingGenericF64 = Blocking<4, 8, 256, 8>;

}  // namespace cpu
}  // namespace fusedmlp
