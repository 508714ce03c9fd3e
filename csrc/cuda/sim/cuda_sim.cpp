// The CUDA simulator's execution model and runtime (see cuda_sim.h).
#include "cuda/sim/cuda_sim.h"

#include <array>
#include <atomic>
#include <barrier>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

thread_local dim3 threadIdx;
thread_local dim3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace fusedmlp {
namespace sim {

namespace {

// What the threads of the running block share.
struct BlockContext {
  explicit BlockContext(unsigned n) : block(static_cast<std::ptrdiff_t>(n)) {
    const unsigned warps = (n + warpSize - 1) / warpSize;
    for (unsigned w = 0; w < warps; ++w) {
      const unsigned size = std::min<unsigned>(warpSize, n - w * warpSize);
      warp.emplace_back(new std::barrier<>(static_cast<std::ptrdiff_t>(size)));
      warp_size.push_back(static_cast<int>(size));
    }
    slots.resize(warps);
  }
  std::barrier<> block;
  std::vector<std::unique_ptr<std::barrier<>>> warp;
  std::vector<int> warp_size;
  std::vector<std::array<std::uint64_t, warpSize>> slots;
};

thread_local BlockContext* t_block = nullptr;
thread_local unsigned t_linear = 0;
thread_local cudaError_t t_last_error = cudaSuccess;

// A pool of threads that run one grid at a time: thread i plays threadIdx i of every block,
// the blocks one after another, all threads meeting at the block barrier between blocks (a
// block's __shared__ statics are the next block's too).
class Pool {
 public:
  static Pool& instance() {
    static Pool pool;
    return pool;
  }

  void run(dim3 grid, dim3 block, const std::function<void()>& body) {
    const unsigned n = block.x * block.y * block.z;
    BlockContext ctx(n);
    std::unique_lock<std::mutex> lock(mu_);
    while (threads_.size() < n) {
      const unsigned index = static_cast<unsigned>(threads_.size());
      threads_.emplace_back([this, index] { worker(index); });
    }
    body_ = &body;
    grid_ = grid;
    block_ = block;
    n_ = n;
    ctx_ = &ctx;
    done_ = 0;
    ++generation_;
    start_.notify_all();
    done_cv_.wait(lock, [&] { return done_ == n_; });
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      ++generation_;
    }
    start_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void worker(unsigned index) {
    std::uint64_t seen = 0;
    for (;;) {
      const std::function<void()>* body;
      dim3 grid, block;
      unsigned n;
      BlockContext* ctx;
      {
        std::unique_lock<std::mutex> lock(mu_);
        start_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stop_) return;
        body = body_;
        grid = grid_;
        block = block_;
        n = n_;
        ctx = ctx_;
      }
      if (index >= n) continue;
      blockDim = block;
      gridDim = grid;
      threadIdx = dim3(index % block.x, index / block.x % block.y, index / (block.x * block.y));
      t_block = ctx;
      t_linear = index;
      for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
          for (unsigned x = 0; x < grid.x; ++x) {
            blockIdx = dim3(x, y, z);
            (*body)();
            ctx->block.arrive_and_wait();
          }
      t_block = nullptr;
      std::lock_guard<std::mutex> lock(mu_);
      if (++done_ == n_) done_cv_.notify_one();
    }
  }

  std::mutex mu_;
  std::condition_variable start_, done_cv_;
  std::vector<std::thread> threads_;
  const std::function<void()>* body_ = nullptr;
  dim3 grid_, block_;
  unsigned n_ = 0;
  BlockContext* ctx_ = nullptr;
  unsigned done_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

// The simulator runs one grid at a time, whoever launches it.
std::mutex& launch_mutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

int lane_id() { return static_cast<int>(t_linear % warpSize); }

std::uint64_t warp_exchange(std::uint64_t bits, int src) {
  BlockContext* ctx = t_block;
  const unsigned warp = t_linear / warpSize;
  const int lane = static_cast<int>(t_linear % warpSize);
  ctx->slots[warp][lane] = bits;
  ctx->warp[warp]->arrive_and_wait();
  const std::uint64_t out = (src >= 0 && src < ctx->warp_size[warp]) ? ctx->slots[warp][src] : bits;
  ctx->warp[warp]->arrive_and_wait();
  return out;
}

void launch(const void* kernel, dim3 grid, dim3 block, cudaStream_t stream, std::function<void()> body);

}  // namespace sim
}  // namespace fusedmlp

using fusedmlp::sim::t_block;
using fusedmlp::sim::t_last_error;
using fusedmlp::sim::t_linear;

void __syncthreads() { t_block->block.arrive_and_wait(); }

void __syncwarp(unsigned) { t_block->warp[t_linear / warpSize]->arrive_and_wait(); }

// ---- streams and graphs -----------------------------------------------------------------------

struct SimGraph {
  std::vector<std::function<void()>> ops;
};

struct SimStream {
  SimGraph* capture = nullptr;  // recording into this graph while capturing
};

namespace {

cudaError_t fail(cudaError_t e) {
  t_last_error = e;
  return e;
}

// Whether a handle is a stream the simulator made (not null, not the legacy or per-thread
// default stream's handle).
bool own_stream(cudaStream_t stream) {
  return stream != nullptr && stream != cudaStreamLegacy && stream != cudaStreamPerThread;
}

// Runs op now, or records it when the stream is being captured.
void enqueue(cudaStream_t stream, std::function<void()> op) {
  if (own_stream(stream) && stream->capture != nullptr)
    stream->capture->ops.push_back(std::move(op));
  else
    op();
}

}  // namespace

namespace fusedmlp {
namespace sim {
namespace {
std::atomic<long long> kernels_run{0};  // grids run, graph replays included
}  // namespace

void launch(const void* kernel, dim3 grid, dim3 block, cudaStream_t stream, std::function<void()> body) {
  const unsigned long long threads =
      static_cast<unsigned long long>(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.y > 65535 || grid.z > 65535) {
    fail(cudaErrorInvalidConfiguration);
    return;
  }
  {
    // the kernels loaded so far (lazy loading: at a kernel's first launch)
    static std::mutex mutex;
    static std::set<const void*> loaded;
    static const bool lazy_no_capture = [] {
      const char* v = std::getenv("FUSEDMLP_CUDA_SIM_LAZY_LOADING");
      return v != nullptr && std::string(v) == "1";
    }();
    std::lock_guard<std::mutex> lock(mutex);
    const bool capturing = own_stream(stream) && stream->capture != nullptr;
    if (capturing && lazy_no_capture && loaded.count(kernel) == 0) {
      fail(cudaErrorStreamCaptureUnsupported);
      return;
    }
    loaded.insert(kernel);
  }
  enqueue(stream, [grid, block, body = std::move(body)] {
    ++kernels_run;
    std::lock_guard<std::mutex> lock(launch_mutex());
    Pool::instance().run(grid, block, body);
  });
}

}  // namespace sim
}  // namespace fusedmlp

namespace fusedmlp {
namespace sim {
namespace {
std::atomic<long long> allocations{0}, host_to_device{0}, device_to_host{0}, host_to_device_bytes{0},
    device_to_host_bytes{0}, graphs{0};

void count_copy(cudaMemcpyKind kind, std::size_t bytes) {
  if (kind == cudaMemcpyHostToDevice) {
    ++host_to_device;
    host_to_device_bytes += static_cast<long long>(bytes);
  }
  if (kind == cudaMemcpyDeviceToHost) {
    ++device_to_host;
    device_to_host_bytes += static_cast<long long>(bytes);
  }
}
}  // namespace

Counters counters() {
  return Counters{allocations.load(), host_to_device.load(), device_to_host.load(),
                  host_to_device_bytes.load(), device_to_host_bytes.load(), graphs.load(),
                  kernels_run.load()};
}

}  // namespace sim
}  // namespace fusedmlp

// ---- runtime API ------------------------------------------------------------------------------

namespace {
// The simulated devices: FUSEDMLP_CUDA_SIM_DEVICES of them (1 by default), the current one per
// host thread as in CUDA, and every allocation remembered with the device it was made on, which
// cudaPointerGetAttributes reports (host memory: unregistered).
int simulated_devices() {
  const char* v = std::getenv("FUSEDMLP_CUDA_SIM_DEVICES");
  const int n = v == nullptr ? 1 : std::atoi(v);
  return n < 1 ? 1 : n;
}
thread_local int t_device = 0;
std::mutex& allocations_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::uintptr_t, std::pair<std::size_t, int>>& allocations_map() {  // base -> (bytes, device)
  static std::map<std::uintptr_t, std::pair<std::size_t, int>> m;
  return m;
}
}  // namespace

cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
  if (ptr == nullptr) return fail(cudaErrorInvalidValue);
  if (bytes == 0) {
    *ptr = nullptr;
    return cudaSuccess;
  }
  ++fusedmlp::sim::allocations;
  *ptr = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (*ptr == nullptr) return fail(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> lock(allocations_mutex());
  allocations_map()[reinterpret_cast<std::uintptr_t>(*ptr)] = {bytes, t_device};
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr != nullptr) {
    std::lock_guard<std::mutex> lock(allocations_mutex());
    allocations_map().erase(reinterpret_cast<std::uintptr_t>(ptr));
  }
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  if (bytes != 0 && (dst == nullptr || src == nullptr)) return fail(cudaErrorInvalidValue);
  fusedmlp::sim::count_copy(kind, bytes);
  if (bytes != 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (bytes != 0 && (dst == nullptr || src == nullptr)) return fail(cudaErrorInvalidValue);
  fusedmlp::sim::count_copy(kind, bytes);
  enqueue(stream, [=] {
    if (bytes != 0) std::memmove(dst, src, bytes);
  });
  return cudaSuccess;
}

cudaError_t cudaMemset(void* dst, int value, std::size_t bytes) {
  if (bytes != 0 && dst == nullptr) return fail(cudaErrorInvalidValue);
  if (bytes != 0) std::memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t bytes, cudaStream_t stream) {
  if (bytes != 0 && dst == nullptr) return fail(cudaErrorInvalidValue);
  enqueue(stream, [=] {
    if (bytes != 0) std::memset(dst, value, bytes);
  });
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  if (stream == nullptr) return fail(cudaErrorInvalidValue);
  *stream = new SimStream;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  if ((flags & ~cudaStreamNonBlocking) != 0) return fail(cudaErrorInvalidValue);
  return cudaStreamCreate(stream);
}

struct SimEvent {};

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  if (event == nullptr || (flags & ~cudaEventDisableTiming) != 0) return fail(cudaErrorInvalidValue);
  *event = new SimEvent;
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  return event == nullptr ? fail(cudaErrorInvalidValue) : cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t event, unsigned flags) {
  return event == nullptr || flags != 0 ? fail(cudaErrorInvalidValue) : cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

cudaError_t cudaGetLastError() {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return t_last_error; }

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
  }
  return "unknown error";
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
  }
  return "cudaErrorUnknown";
}

namespace {
std::string simulated_driver() {
  const char* v = std::getenv("FUSEDMLP_CUDA_SIM_DRIVER");
  return v == nullptr ? std::string() : std::string(v);
}

}  // namespace

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return fail(cudaErrorInvalidValue);
  *count = 0;
  const std::string driver = simulated_driver();
  if (driver == "absent" || driver == "old") return fail(cudaErrorInsufficientDriver);
  if (driver == "nodevice") return fail(cudaErrorNoDevice);
  *count = simulated_devices();
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
  if (version == nullptr) return fail(cudaErrorInvalidValue);
  const std::string driver = simulated_driver();
  *version = driver == "absent" ? 0 : driver == "old" ? 12040 : 13000;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* version) {
  if (version == nullptr) return fail(cudaErrorInvalidValue);
  *version = 13000;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= simulated_devices()) return fail(cudaErrorInvalidDevice);
  t_device = device;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr || attr != cudaDevAttrMultiProcessorCount) return fail(cudaErrorInvalidValue);
  if (device < 0 || device >= simulated_devices()) return fail(cudaErrorInvalidDevice);
  const char* v = std::getenv("FUSEDMLP_CUDA_SIM_SMS");
  *value = v == nullptr ? 108 : std::atoi(v);
  if (*value < 1) *value = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return fail(cudaErrorInvalidValue);
  *device = t_device;
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  if (attributes == nullptr) return fail(cudaErrorInvalidValue);
  const auto p = reinterpret_cast<std::uintptr_t>(ptr);
  attributes->type = cudaMemoryTypeUnregistered;
  attributes->device = -2;
  attributes->devicePointer = nullptr;
  attributes->hostPointer = const_cast<void*>(ptr);
  std::lock_guard<std::mutex> lock(allocations_mutex());
  const auto& m = allocations_map();
  auto it = m.upper_bound(p);
  if (it != m.begin()) {
    --it;
    if (p < it->first + it->second.first) {
      attributes->type = cudaMemoryTypeDevice;
      attributes->device = it->second.second;
      attributes->devicePointer = const_cast<void*>(ptr);
      attributes->hostPointer = nullptr;
    }
  }
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  if (!own_stream(stream)) return fail(cudaErrorStreamCaptureUnsupported);
  if (stream->capture != nullptr) return fail(cudaErrorInvalidValue);
  stream->capture = new SimGraph;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (!own_stream(stream) || stream->capture == nullptr || graph == nullptr)
    return fail(cudaErrorInvalidValue);
  *graph = stream->capture;
  stream->capture = nullptr;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  ++fusedmlp::sim::graphs;
  if (exec == nullptr || graph == nullptr) return fail(cudaErrorInvalidValue);
  *exec = new SimGraph(*graph);
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return fail(cudaErrorInvalidValue);
  for (const auto& op : exec->ops) enqueue(stream, op);
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
