// The perceptron on the CPU: scikit-learn's SGDClassifier(loss="perceptron",
// learning_rate="constant") inner loop, `_plain_sgd` in sklearn/linear_model/_sgd_fast.pyx.tp,
// with its WeightVector (sklearn/utils/_weight_vector.pyx.tp) and its shuffling
// (sklearn/utils/_seq_dataset.pyx.tp, our_rand_r in sklearn/utils/_random.pxd).
//
// A fit is a set of binary tasks (one for a binary problem, one per class for one-vs-rest),
// each training one weight row over the same data; tasks run on parallel threads. Python calls
// PerceptronSolver::run once for a whole fit (or once per epoch when it prints progress); the
// per-sample loop, the epoch loop and the stopping rule are all here.
//
// Every operation is scikit-learn's, in its order and its types: float64 input gives
// scikit-learn's float64 numbers, float32 input its float32 numbers. The fast path (dense rows
// of 32 features or more) only decides sooner, with a certified error bound, that a sample lies
// beyond the margin (from an int16 copy of the rows when it reads them more than once); it
// computes the same numbers as the reference loop, which tests check bit for bit.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "cpu/dense.h"
#include "cpu/stop_clock.h"
#include "fusedmlp/common.h"

namespace fusedmlp {
namespace cpu {

// scikit-learn's codes (PENALTY_TYPES in _stochastic_gradient.py)
enum class Penalty : int { none = 0, l1 = 1, l2 = 2, elasticnet = 3 };

struct PerceptronOptions {
  Penalty penalty = Penalty::none;
  double alpha = 1e-4;
  double l1_ratio = 0.15;  // elasticnet's mix; the l2 penalty uses 0 and l1 uses 1
  double eta0 = 1.0;       // the constant learning rate
  bool fit_intercept = true;
  double intercept_decay = 1.0;  // scikit-learn damps the intercept's steps to 0.01 for sparse X
  index_t max_iter = 1000;
  double tol = -std::numeric_limits<double>::infinity();  // -inf: no tolerance rule (tol=None)
  index_t n_iter_no_change = 5;
  bool shuffle = true;
  bool early_stopping = false;
  bool verbose = false;  // keep the loss sums and norms scikit-learn prints each epoch
};

// The training set every task reads.
template <class T>
struct PerceptronData {
  InputMatrix x;                          // dense (any strides) or CSR, of type T
  const std::int32_t* y_class = nullptr;  // per sample: the index of its class, -1 for none
  const T* sample_weight = nullptr;       // per sample, or null for all ones
  const std::uint8_t* validation = nullptr;  // per sample: 1 on the early-stopping validation
                                             // set (null: no validation set)
  double validation_weight_sum = 0.0;  // sum of sample_weight over the validation set, in
                                       // float64 as numpy.average sums it
};

// One binary problem: class `positive` (+1) against every other sample (-1).
struct PerceptronTaskSpec {
  std::int64_t positive = 1;
  double intercept = 0.0;  // the initial intercept
  double weight_pos = 1.0, weight_neg = 1.0;
  std::uint32_t seed = 1;  // the shuffle seed
};

// scikit-learn's verbose report of one epoch.
struct PerceptronEpochReport {
  double norm = 0.0;       // ||w||, from the norm WeightVector keeps
  index_t nnz = 0;         // weights that are not zero
  double intercept = 0.0;
  std::uint32_t count = 0;  // samples trained on so far
  double avg_loss = 0.0, objective = 0.0;  // per training sample
  double score = 0.0;      // validation accuracy (early stopping)
};

struct PerceptronTaskStatus {
  index_t n_iter = 0;  // epochs run (counting an interrupted one)
  bool done = false;   // reached max_iter, or stopped by the no-improvement rule, or diverged
  bool converged = false;  // stopped by the no-improvement rule
  bool diverged = false;   // a weight or the intercept was not finite after epoch n_iter
  double intercept = 0.0;
  PerceptronEpochReport last;
};

// Dense X read once, before a fit, on n_threads threads: whether every value is finite (the
// check scikit-learn's validation makes) and, when the fit will screen its samples from them (32
// features or more, more than one epoch, at most 1 GiB), the samples' records (the int16 copies
// of the rows; see perceptron.cpp), which the solver completes with labels and weights.
template <class T>
class PerceptronRows {
 public:
  PerceptronRows(const InputMatrix& x, index_t max_iter, int n_threads);
  ~PerceptronRows();
  PerceptronRows(const PerceptronRows&) = delete;
  PerceptronRows& operator=(const PerceptronRows&) = delete;

  static bool makes_records(const InputMatrix& x, index_t max_iter);
  bool all_finite() const { return all_finite_; }
  const InputMatrix& x() const { return x_; }
  unsigned char* records() const { return records_; }  // null: none

 private:
  InputMatrix x_;
  bool all_finite_ = true;
  std::unique_ptr<unsigned char[]> storage_;
  size_t capacity_ = 0;
  unsigned char* records_ = nullptr;  // n_rows records, cache-line aligned
};

template <class T>
class PerceptronSolver {
 public:
  // coef: n_tasks x n_features row-major, the initial weights, trained in place. `reference`
  // runs the plain loop everywhere (for tests). `rows`: X read beforehand (of this data), or
  // null (the solver reads it when it needs to).
  PerceptronSolver(const PerceptronData<T>& data, const PerceptronOptions& opts,
                   const std::vector<PerceptronTaskSpec>& tasks, T* coef, bool reference,
                   PerceptronRows<T>* rows = nullptr);
  ~PerceptronSolver();
  PerceptronSolver(const PerceptronSolver&) = delete;
  PerceptronSolver& operator=(const PerceptronSolver&) = delete;

  index_t n_tasks() const;

  // Advances each listed task that is not done by up to `epochs` epochs, `n_threads` tasks at a
  // time. A task that finishes has its weights in coef (scikit-learn's reset_wscale). Returns
  // false when should_stop() interrupted the call; then call finish().
  bool run(const std::vector<index_t>& tasks, index_t epochs, int n_threads,
           const StopCheck& should_stop);

  // The weights of every task as they are now, in coef (ends the fit).
  void finish();

  // The weights of every task as they are now (w times its scale, as finish() leaves them),
  // into out (n_tasks x n_features), without changing the training state: what callbacks
  // read between epochs.
  void current_weights(T* out) const;

  PerceptronTaskStatus status(index_t task) const;

  struct State;  // one task's training state (perceptron.cpp)

 private:
  // The samples' screening records, completed (or made) on the first run when they pay.
  void prepare_records(int n_threads);

  PerceptronData<T> data_;
  PerceptronOptions opts_;
  T* coef_;
  bool reference_;
  std::vector<index_t> validation_rows_;
  std::vector<std::unique_ptr<State>> states_;
  PerceptronRows<T>* rows_;
  std::unique_ptr<PerceptronRows<T>> own_rows_;
  bool records_ready_ = false;
  unsigned char* records_ = nullptr;  // the records the epochs read, or null
};

// scikit-learn's our_rand_r (an xorshift generator, sklearn/utils/_random.pxd).
std::uint32_t our_rand_r(std::uint32_t* seed);

// SequentialDataset.shuffle: Fisher-Yates over `index` with a copy of `seed`.
void sequential_dataset_shuffle(std::int32_t* index, std::int32_t n, std::uint32_t seed);

// numpy's float64 add.reduce over a contiguous array: 0 + the pairwise sum.
double numpy_sum(const double* a, index_t n);

}  // namespace cpu
}  // namespace fusedmlp
