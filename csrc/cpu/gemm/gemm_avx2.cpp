// The GEMM compiled for the avx2 instruction set (see CMakeLists.txt for its flags).
#define FUSEDMLP_ISA_NS isa_avx2
#include "cpu/gemm/ukernel_avx2.h"
#include "cpu/gemm/gemm_impl.h"
#include "cpu/gemm/gemm_isa.inc"
