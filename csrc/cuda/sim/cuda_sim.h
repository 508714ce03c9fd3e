// A CPU simulator of the CUDA execution model, so the CUDA engine's kernels run and are tested
// where no GPU exists: the same .cu sources, compiled by the host compiler with this header
// instead of nvcc's.
//
// The model:
// - a grid's blocks run one after another; a block's threads run as real threads (a pool,
//   reused across launches), so ThreadSanitizer sees every data race a GPU could have;
// - __syncthreads() is a barrier across the block's threads; __syncwarp() and the warp
//   shuffles synchronise the 32 threads of a warp;
// - __shared__ variables are `static`: with one block at a time, every thread of the block
//   sees the same object, as on a GPU (a kernel must not run from two host threads at once);
// - atomics are std::atomic_ref operations;
// - device memory is host memory; streams run their work in order at once, except while a
//   stream is being captured into a graph, when kernels and copies are recorded and a graph
//   launch replays them.
// What is not simulated: timing, occupancy, memory coalescing, dynamic shared memory.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

// ---- language ---------------------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __restrict__ __restrict

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

extern thread_local dim3 threadIdx;
extern thread_local dim3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

void __syncthreads();
void __syncwarp(unsigned mask = 0xffffffffu);

namespace fusedmlp {
namespace sim {
// The warp exchange behind the shuffles: publishes this thread's 8 bytes, waits for its warp,
// returns lane `src`'s (or its own when src is outside the warp), waits again.
std::uint64_t warp_exchange(std::uint64_t bits, int src);
int lane_id();
}  // namespace sim
}  // namespace fusedmlp

template <class T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a small value");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const int lane = fusedmlp::sim::lane_id();
  const int base = lane / width * width;
  bits = fusedmlp::sim::warp_exchange(bits, base + (src % width));
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const int lane = fusedmlp::sim::lane_id();
  const int src = (lane % width) + static_cast<int>(delta) < width ? lane + static_cast<int>(delta) : -1;
  bits = fusedmlp::sim::warp_exchange(bits, src);
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

template <class T>
T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const int lane = fusedmlp::sim::lane_id();
  const int src = lane ^ lane_mask;
  bits = fusedmlp::sim::warp_exchange(bits, (src / width == lane / width) ? src : -1);
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

template <class T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value, std::memory_order_relaxed);
}

template <class T>
T atomicMax(T* address, T value) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load(std::memory_order_relaxed);
  while (old < value && !ref.compare_exchange_weak(old, value, std::memory_order_relaxed)) {
  }
  return old;
}

template <class T>
T __ldg(const T* p) {
  return *p;
}

// ---- runtime API (the subset the engine uses) -------------------------------------------------

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorStreamCaptureUnsupported = 900,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};

enum cudaMemoryType {
  cudaMemoryTypeUnregistered = 0,
  cudaMemoryTypeHost = 1,
  cudaMemoryTypeDevice = 2,
  cudaMemoryTypeManaged = 3,
};
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
  void* devicePointer;
  void* hostPointer;
};

struct SimStream;
struct SimGraph;
struct SimEvent;
using cudaStream_t = SimStream*;
using cudaEvent_t = SimEvent*;
// the default streams' handles, as the runtime defines them
#define cudaStreamLegacy (reinterpret_cast<cudaStream_t>(0x1))
#define cudaStreamPerThread (reinterpret_cast<cudaStream_t>(0x2))
constexpr unsigned cudaStreamNonBlocking = 0x1;
constexpr unsigned cudaEventDisableTiming = 0x2;
using cudaGraph_t = SimGraph*;
using cudaGraphExec_t = SimGraph*;

cudaError_t cudaMalloc(void** ptr, std::size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* dst, int value, std::size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
// The simulator runs a stream's work when it is enqueued, so an event is complete when recorded
// and waiting for one never waits; the calls check their arguments.
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t error);
const char* cudaGetErrorName(cudaError_t error);
// The simulated machine has one device and a CUDA 13.0 driver; FUSEDMLP_CUDA_SIM_DRIVER makes it
// one without a device ("nodevice"), without a driver ("absent") or with a driver too old for
// the runtime ("old": CUDA 12.4), so the error reports users would see can be tested.
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
// Device attributes: only the multiprocessor count, FUSEDMLP_CUDA_SIM_SMS (default 108, an
// A100's), which the trainer's split-k choice reads.
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
// The simulated device's memory is host memory: every pointer is the device's.
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr);
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                 unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

namespace fusedmlp {
namespace sim {

// Runs body once per thread of every block of the grid (or records it while the stream is
// capturing). Called by launch() in cuda/launch.cuh with the kernel's address; kernels are
// never called directly. With FUSEDMLP_CUDA_SIM_LAZY_LOADING=1 the simulator is a driver older
// than CUDA 12.3 with lazy loading: a kernel loads at its first launch, and a first launch into
// a capturing stream fails with cudaErrorStreamCaptureUnsupported.
void launch(const void* kernel, dim3 grid, dim3 block, cudaStream_t stream, std::function<void()> body);

// What the runtime API has been asked for since the module was loaded: allocations and copies
// each way (the tests count them: a kept engine allocates nothing, parameters stay put).
struct Counters {
  long long allocations = 0;
  long long host_to_device = 0;
  long long device_to_host = 0;
  long long host_to_device_bytes = 0;
  long long device_to_host_bytes = 0;
  long long graphs = 0;  // graphs instantiated
  long long kernels = 0;  // kernels run (a graph's, each time it is launched)
};
Counters counters();

}  // namespace sim
}  // namespace fusedmlp
