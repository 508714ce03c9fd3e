// The GEMM compiled for the generic instruction set (see CMakeLists.txt for its flags).
#define FUSEDMLP_ISA_NS isa_generic
#include "cpu/gemm/ukernel_generic.h"
#include "cpu/gemm/gemm_impl.h"
#include "cpu/gemm/gemm_isa.inc"
