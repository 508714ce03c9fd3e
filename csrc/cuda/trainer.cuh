// The CUDA trainer: the same three calls as the CPU trainer (cpu/trainer.h), on a device.
//
// The training data goes to the device once per fit (load_training_data) and stays there, or
// is read in place when it already is device memory. Each epoch uploads the row order and the
// parameters, replays the captured per-batch launch sequence (a CUDA graph: gather, forward,
// fused loss, backward, optimizer) once per batch with no host synchronisation in between,
// and brings back the parameters, the optimizer state and the epoch's loss.
//
// This header is plain C++ (no kernels): the bindings include it; trainer.cu holds the code.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "fusedmlp/common.h"
#include "fusedmlp/network.h"
#include "fusedmlp/optimizer.h"
#include "fusedmlp/training.h"

namespace fusedmlp {
namespace cuda {

// A dense matrix the engine reads: device memory, or host memory it copies.
struct MatrixView {
  const void* data = nullptr;
  bool f32 = true;        // float32, else float64
  bool on_device = false;
  index_t rows = 0, cols = 0;
  index_t rs = 0, cs = 0;  // element strides
};

int device_count();  // usable devices (the simulator reports one)
// What the runtime says about the machine: the usable devices, the driver's and the runtime's
// CUDA versions (1000 * major + 10 * minor; driver 0: no driver installed), and when there is no
// device, the runtime's error (name and text).
struct DeviceStatus {
  int count = 0;
  int driver_version = 0;
  int runtime_version = 0;
  std::string error_name, error_text;
};
DeviceStatus device_status();
bool simulated();    // this build runs kernels on the CPU simulator
// Whether every element of a device matrix is finite (NaN and infinities are not).
bool all_finite(const MatrixView& x);
// The device that owns a device pointer, or -1 when the runtime does not know it; and the
// current device.
int pointer_device(const void* p);
int current_device();
void set_device(int device);
// A copy of `bytes` host bytes in device memory of the current device, and its release (the
// tests' device arrays on a chosen device).
void* device_copy(const void* host, std::size_t bytes);
void device_free(void* p);
// Blocks until the work queued on a foreign stream (a __cuda_array_interface__ producer's)
// has run: 0 none, 1 and 2 the legacy and per-thread default streams, else a cudaStream_t.
// (Engines order their own stream after a producer's with an event instead: order_after.)
void wait_for_stream(std::uintptr_t stream);

// The simulator's count of allocations and of copies each way since the module was loaded
// (the tests check what an engine transfers); a build for a real device throws.
struct RuntimeCounts {
  long long allocations = 0, host_to_device = 0, device_to_host = 0, host_to_device_bytes = 0,
            device_to_host_bytes = 0, graphs = 0, kernels = 0;
};
RuntimeCounts runtime_counts();

template <class T>
class Trainer {
 public:
  explicit Trainer(NetworkLayout layout);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  const NetworkLayout& layout() const;
  // The device that was current when the engine was built; every call runs on it.
  int device() const;

  // Queue the work on this stream (a cudaStream_t, e.g. CuPy's current one) instead of the
  // trainer's own; 0 goes back to its own. Graphs are captured on the own stream either way.
  void set_stream(std::uintptr_t stream);
  // Orders the work stream after the work queued so far on a producer's stream (a
  // __cuda_array_interface__ "stream": 0 none, 1 and 2 the legacy and per-thread default
  // streams, else a cudaStream_t of the engine's device) by an event, without blocking the host.
  void order_after(std::uintptr_t producer);

  // X (n x n_inputs), Y (n x n_outputs, host, T) and the sample weights (host, or null): kept
  // on the device for the epochs and loss evaluations that follow.
  void load_training_data(const MatrixView& x, const T* y, const T* sample_weight);

  // One epoch over the rows `order` of the loaded data. With `params` (host), the parameters and
  // the optimizer state go to the device and come back (state.m/v/velocity); with params null,
  // the epoch trains the device-resident ones (set_parameters) and only Adam's step count
  // (state.t) crosses.
  EpochResult run_epoch(const index_t* order, index_t n_order, T* params, OptimizerState<T>& state,
                        const EpochOptions& opts, const StopCheck& should_stop);

  // Device-resident training: the parameters and the optimizer state (the solver's arrays of
  // `state`) go to the device once and stay there through the epochs that pass no parameters,
  // until get_parameters brings them back. Prediction and loss_grad with host parameters
  // overwrite them: call set_parameters again after those.
  void set_parameters(const T* params, const OptimizerState<T>& state, Solver solver);
  void get_parameters(T* params, OptimizerState<T>& state, Solver solver);
  // The end of training for an engine that goes on to predict: frees what only training needs
  // (the data, the validation set, the snapshot, the gradient, the optimizer's state, the split
  // workspace, the graph); the parameters stay, and a prediction with the values the host last
  // received from get_parameters (or sent to loss_grad) uploads nothing.
  void end_training();
  // Whether every resident parameter is finite (one flag crosses).
  bool parameters_finite();
  // Early stopping's snapshot on the device: set from the host, taken from the resident
  // parameters (a device-to-device copy), brought back.
  void set_best(const T* params);
  void keep_best();
  void get_best(T* params);
  // The parameters become the snapshot (a device-to-device copy) whose values get_best last
  // gave the host: early stopping's restored model, which predictions then use as it is.
  void restore_best();

  // The validation set of the resident model: `x` (host, copied once, or device memory), or,
  // with x null, the rows `rows` (n of them) of the loaded training X, read in place; y (n x
  // n_outputs) and the sample weights (or null) on the host, copied once.
  void set_validation(const MatrixView* x, const index_t* rows, index_t n, const T* y,
                      const T* sample_weight);
  // One forward pass over the validation set with the resident parameters: out (n x n_outputs,
  // host, float64) = the outputs, output activation applied, as predict gives them; returns
  // the training objective (loss + L2 term with `alpha`, as loss_grad's).
  double evaluate(double alpha, double* out, const StopCheck& should_stop = {});

  // The full-batch loss and gradient over the loaded data (the L-BFGS path). Throws
  // std::runtime_error("interrupted") when should_stop() says so (polled between chunks).
  double loss_grad(const T* params, double alpha, T* grad, const StopCheck& should_stop = {});

  // out (x.rows x n_outputs, float64) = the network's output; out is device memory when
  // out_on_device. Returns false, with out partly written, when should_stop() said so.
  bool predict(const MatrixView& x, const T* params, double* out, bool out_on_device,
               const StopCheck& should_stop = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Single operations on host arrays, for the tests: the kernels exactly as the trainer
// launches them, with the data copied to the device and back.
template <class T>
void test_gemm(index_t m, index_t n, index_t k, const T* a, index_t a_rs, index_t a_cs, const T* b,
               index_t b_rs, index_t b_cs, T* c, int epilogue, Activation act, const T* bias,
               const T* aux, T alpha, T scale, T* colsum, bool accumulate, int splits = 1);

}  // namespace cuda
}  // namespace fusedmlp
