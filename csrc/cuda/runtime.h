// The CUDA runtime, real or simulated, and the one check every call goes through.
//
// Under nvcc the real runtime; compiled by the host compiler (the simulated build used by the
// tests) the simulator in cuda/sim/. Everything in csrc/cuda/ includes this header instead of
// cuda_runtime.h, so the same sources build both ways.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#define FUSEDMLP_CUDA_SIMULATED 0
#else
#include "cuda/sim/cuda_sim.h"
#define FUSEDMLP_CUDA_SIMULATED 1
#endif

// Unrolls the loop that follows under nvcc. A register array (a GEMM thread's accumulators)
// stays in registers only when every index into it is a compile-time constant: a loop over it
// that is not unrolled puts the whole array in local memory (a stack frame in ptxas -v).
// The loop's trip count must be a constant. The simulator's compiler keeps its own choice.
#if defined(__CUDACC__)
#define FUSEDMLP_UNROLL _Pragma("unroll")
#else
#define FUSEDMLP_UNROLL
#endif

namespace fusedmlp {
namespace cuda {

// Throws std::runtime_error naming the call and the runtime's error string.
inline void check(cudaError_t status, const char* call) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + call + ": " +
                             cudaGetErrorString(status));
}

#define FUSEDMLP_CUDA_CHECK(call) ::fusedmlp::cuda::check((call), #call)

// Device memory owned by one object (RAII): freed when it goes, moved not copied.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) { resize(n); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      ptr_ = std::exchange(other.ptr_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }

  // Grows to at least n elements; contents are not kept.
  void resize(std::size_t n) {
    if (n <= size_) return;
    release();
    void* p = nullptr;
    FUSEDMLP_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    ptr_ = static_cast<T*>(p);
    size_ = n;
  }
  T* get() const { return ptr_; }
  std::size_t size() const { return size_; }

 private:
  void release() {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    size_ = 0;
  }
  T* ptr_ = nullptr;
  std::size_t size_ = 0;
};

// A stream owned by one object.
// A stream that does not synchronise with the legacy default stream (other libraries' work
// there neither waits for the engine's nor makes it wait); producers are waited for by events.
class Stream {
 public:
  Stream() { FUSEDMLP_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// An event without timing, for ordering one stream after another's work.
class Event {
 public:
  Event() { FUSEDMLP_CUDA_CHECK(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  ~Event() { cudaEventDestroy(e_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

// An instantiated graph owned by one object.
class GraphExec {
 public:
  GraphExec() = default;
  ~GraphExec() { reset(); }
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;
  void reset() {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    exec_ = nullptr;
  }
  // Ends the capture on `stream` and instantiates what it recorded.
  void end_capture(cudaStream_t stream) {
    cudaGraph_t graph = nullptr;
    FUSEDMLP_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    reset();
    const cudaError_t status = cudaGraphInstantiate(&exec_, graph, 0);
    cudaGraphDestroy(graph);
    FUSEDMLP_CUDA_CHECK(status);
  }
  void launch(cudaStream_t stream) const { FUSEDMLP_CUDA_CHECK(cudaGraphLaunch(exec_, stream)); }
  bool ready() const { return exec_ != nullptr; }

 private:
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace cuda
}  // namespace fusedmlp
