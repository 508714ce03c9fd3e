// The CUDA engine compiled by the host compiler against the simulator (cuda/sim/cuda_sim.h):
// the very same source as the nvcc build.
#include "cuda/trainer.cu"
