// Block sizes of the CPU GEMM, one table for every instruction set and type.
//
//   MR x NR  micro-tile held in registers (NR is a whole number of vectors)
//   KC       depth of one packed block: a KC x NR panel of B stays in L1 while every MR-row
//            panel of A streams past it from L2
//   MC       rows of A per block (MC_PANELS panels of MR rows), kept in L2 while every B
//            panel of a thread passes over it
//   MIN_FLOPS_PER_THREAD  below this many multiply-adds per thread a GEMM runs on one thread,
//            so tiny layers do not pay for waking the thread team
#pragma once

#include "fusedmlp/common.h"

namespace fusedmlp {
namespace cpu {

template <int MR_, int NR_, int KC_, int MC_PANELS = 32>
struct Blocking {
  static constexpr int MR = MR_;
  static constexpr int NR = NR_;
  static constexpr int KC = KC_;
  static constexpr index_t MC = index_t(MC_PANELS) * MR_;
  static constexpr index_t MIN_FLOPS_PER_THREAD = 64 * 1024;
};

//                              MR  NR   KC
using BlockingAvx512F32 = Blocking<12, 32, 256>;
using BlockingAvx512F64 = Blocking<12, 16, 192>;
using BlockingAvx2F32 = Blocking<6, 16, 256>;
using BlockingAvx2F64 = Blocking<6, 8, 256>;
using BlockingGenericF32 = Blocking<4, 16, 256>;
using BlockingGenericF64 = Blocking<4, 8, 256>;

}  // namespace cpu
}  // namespace fusedmlp
