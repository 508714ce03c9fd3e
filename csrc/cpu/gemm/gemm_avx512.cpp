// The GEMM compiled for the avx512 instruction set (see CMakeLists.txt for its flags).
#define FUSEDMLP_ISA_NS isa_avx512
#include "cpu/gemm/ukernel_avx512.h"
#include "cpu/gemm/gemm_impl.h"
#include "cpu/gemm/gemm_isa.inc"
