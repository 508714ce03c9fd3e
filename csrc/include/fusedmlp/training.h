// What every engine's trainer takes and returns for an epoch: the options, the optimizer state
// (host arrays in the flat parameter layout), the result, and the Ctrl-C poll. One definition
// for the CPU and CUDA trainers and their bindings.
#pragma once

#include <functional>
#include <vector>

#include "fusedmlp/common.h"
#include "fusedmlp/optimizer.h"

namespace fusedmlp {

// The epoch contract, listed once: X(type, name, default, in_graph). The struct, the bindings'
// parser (every option is required, by name) and the CUDA engine's graph key are generated from
// it, so an option cannot be added to one and forgotten in another. in_graph: the option's
// value is baked into the CUDA engine's captured per-batch graph (a change re-captures it);
// false: the graph reads it from device state each replay.
#define FUSEDMLP_EPOCH_OPTIONS(X)                                                   \
  X(Solver, solver, Solver::adam, true)                                             \
  X(index_t, batch_size, 200, true)                                                 \
  X(double, learning_rate, 1e-3, false) /* sgd: the current rate; adam: the initial */ \
  X(double, momentum, 0.9, true)                                                    \
  X(bool, nesterov, true, true)                                                     \
  X(double, beta_1, 0.9, true)                                                      \
  X(double, beta_2, 0.999, true)                                                    \
  X(double, epsilon, 1e-8, true)                                                    \
  X(double, alpha, 1e-4, true) /* L2 strength */                                   \
  X(index_t, dropout_seed, 0, false) /* dropout's masks: (seed, epoch, batch, ...) */ \
  X(index_t, epoch, 0, false)

struct EpochOptions {
#define FUSEDMLP_FIELD_ROW(type, name, value, in_graph) type name = value;
  FUSEDMLP_EPOCH_OPTIONS(FUSEDMLP_FIELD_ROW)
#undef FUSEDMLP_FIELD_ROW
  // A schedule's rates, one per batch of the epoch (host memory, read per batch; never part
  // of a captured graph), or null: every batch takes learning_rate. For adam, each is the
  // step's learning_rate_init, bias correction applied on top.
  const double* batch_learning_rates = nullptr;
  // Where each batch's loss goes (host memory, one per batch), or null: only the epoch's sum
  // is returned. What the learning-rate finder and per-batch logs read.
  double* batch_losses = nullptr;
};

// The learning rate of batch `b` of an epoch.
inline double batch_learning_rate(const EpochOptions& o, index_t b) {
  return o.batch_learning_rates != nullptr ? o.batch_learning_rates[b] : o.learning_rate;
}

// The options a captured CUDA graph depends on, as one comparable key.
inline std::vector<double> graph_key(const EpochOptions& o) {
  std::vector<double> key;
#define FUSEDMLP_KEY_ROW(type, name, value, in_graph) \
  if (in_graph) key.push_back(static_cast<double>(o.name));
  FUSEDMLP_EPOCH_OPTIONS(FUSEDMLP_KEY_ROW)
#undef FUSEDMLP_KEY_ROW
  return key;
}

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
