// What every engine's trainer takes and returns for an epoch: the options, the optimizer state
// (host arrays in the flat parameter layout), the result, and the Ctrl-C poll. One definition
// for the CPU and CUDA trainers and their bindings.
#pragma once

#include <functional>

#include "fusedmlp/common.h"
#include "fusedmlp/optimizer.h"

namespace fusedmlp {

struct EpochOptions {
  Solver solver = Solver::adam;
  index_t batch_size = 200;
  double learning_rate = 1e-3;  // sgd: the current rate; adam: learning_rate_init
  double momentum = 0.9;
  bool nesterov = true;
  double beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-8;
  double alpha = 1e-4;  // L2 strength
};

template <class T>
struct OptimizerState {
  T* velocity = nullptr;  // sgd
  T* m = nullptr;         // adam
  T* v = nullptr;
  long long t = 0;        // adam step count, carried across epochs and partial_fit calls
};

struct EpochResult {
  double accumulated_loss = 0.0;  // sum over batches of batch loss * batch rows
  index_t samples_seen = 0;
  bool interrupted = false;       // should_stop() asked to stop between two batches
};

// Called by the calling thread between batches (at most every few tens of milliseconds);
// returning true stops after the current batch, leaving the parameters consistent.
using StopCheck = std::function<bool()>;

}  // namespace fusedmlp
