// One optimizer step for one parameter, written once; the engines run it over the flat
// parameter buffer. The arithmetic order follows scikit-learn's _stochastic_optimizers.py so
// that float64 runs reproduce its numbers.
#pragma once

#include "fusedmlp/common.h"
#include "fusedmlp/math.h"

namespace fusedmlp {

enum class Solver : int { sgd = 0, adam = 1 };

// Coefficients of one step, computed in double on the host (as Python does) and then rounded
// to the compute type once.
template <class T>
struct SgdStep {
  T lr;
  T momentum;
  bool nesterov;
};

template <class T>
struct AdamStep {
  T beta_1, one_minus_beta_1;
  T beta_2, one_minus_beta_2;
  T lr_t;  // learning_rate_init * sqrt(1 - beta_2^t) / (1 - beta_1^t)
  T epsilon;
};

// velocity = momentum * velocity - lr * g; update = nesterov ? momentum * velocity - lr * g
//                                                            : velocity
template <class T>
FUSEDMLP_HD void sgd_step(T& param, T& velocity, T g, const SgdStep<T>& s) {
  T update = s.momentum * velocity - s.lr * g;
  velocity = update;
  if (s.nesterov) update = s.momentum * update - s.lr * g;
  param += update;
}

// scikit-learn's Adam: bias correction folded into the step size, epsilon added to the
// uncorrected sqrt(v).
template <class T>
FUSEDMLP_HD void adam_step(T& param, T& m, T& v, T g, const AdamStep<T>& s) {
  m = s.beta_1 * m + s.one_minus_beta_1 * g;
  v = s.beta_2 * v + s.one_minus_beta_2 * (g * g);
  param += (-s.lr_t * m) / (math::sqrt(v) + s.epsilon);
}

// Adam's step size at step t (1-based), the bias correction folded in as scikit-learn does.
FUSEDMLP_HD double adam_lr_t(double learning_rate_init, double beta_1, double beta_2, long long t) {
  return learning_rate_init * math::sqrt(1.0 - math::pow(beta_2, static_cast<double>(t))) /
         (1.0 - math::pow(beta_1, static_cast<double>(t)));
}

// A weight's gradient with the L2 term, scikit-learn's: (dL/dW + alpha * W) / sum of weights,
// with `scale` the reciprocal of the batch's sample-weight sum (biases take g * scale).
template <class T>
FUSEDMLP_HD T l2_grad(T g, T alpha, T w, T scale) {
  return (g + alpha * w) * scale;
}

}  // namespace fusedmlp
