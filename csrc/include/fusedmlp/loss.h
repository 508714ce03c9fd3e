// Losses fused with the output activation and the output gradient, written once.
//
// Each loss pairs with its canonical output activation (scikit-learn's choice), so the
// gradient with respect to the output layer's pre-activation z is (a - y) * w for all four.
// The loss value follows scikit-learn's formulas exactly, including the clipping of
// probabilities to [eps, 1 - eps] and xlogy's 0 * log(0) = 0.
#pragma once

#include <stdexcept>
#include <string>

#include "fusedmlp/activation.h"
#include "fusedmlp/common.h"
#include "fusedmlp/math.h"

namespace fusedmlp {

enum class Loss : int {
  squared_error = 0,    // identity output; 0.5 * mean over outputs of the weighted mean
  poisson = 1,          // exp output; half Poisson deviance, summed over outputs
  log_loss = 2,         // softmax output; multiclass cross-entropy
  binary_log_loss = 3,  // logistic output; binary and multilabel cross-entropy
};

template <class T>
FUSEDMLP_HD T xlogy(T x, T y) {
  return x == T(0) ? T(0) : x * math::log(y);
}

template <Loss L>
constexpr Activation output_activation_of() {
  if constexpr (L == Loss::squared_error) return Activation::identity;
  if constexpr (L == Loss::poisson) return Activation::exp;
  if constexpr (L == Loss::log_loss) return Activation::softmax;
  return Activation::logistic;
}

// Applies the output activation to one row in place: z (pre-activation) becomes a.
template <Loss L, class T>
FUSEDMLP_HD void output_activation_row(T* z, index_t n_out) {
  if constexpr (L == Loss::log_loss) {
    T zmax = z[0];
    for (index_t k = 1; k < n_out; ++k) zmax = math::max(zmax, z[k]);
    T sum = T(0);
    for (index_t k = 0; k < n_out; ++k) {
      z[k] = math::exp(z[k] - zmax);
      sum += z[k];
    }
    for (index_t k = 0; k < n_out; ++k) z[k] /= sum;
  } else {
    constexpr Activation A = output_activation_of<L>();
    for (index_t k = 0; k < n_out; ++k) z[k] = activate<A>(z[k]);
  }
}

// For one sample: turns z into the output a, writes delta = (a - y) * w, and returns the
// sample's weighted, unnormalised loss (the caller divides by loss_denominator).
template <Loss L, class T>
FUSEDMLP_HD double output_loss_grad_row(T* z, const T* y, T w, bool weighted, T* delta,
                                        index_t n_out) {
  output_activation_row<L>(z, n_out);
  double loss = 0.0;
  for (index_t k = 0; k < n_out; ++k) {
    const T a = z[k];
    const T t = y[k];
    T l;
    if constexpr (L == Loss::squared_error) {
      l = (t - a) * (t - a);
    } else if constexpr (L == Loss::poisson) {
      l = xlogy(t, t / a) - t + a;
    } else if constexpr (L == Loss::log_loss) {
      const T p = math::clip(a, math::eps<T>::value, T(1) - math::eps<T>::value);
      l = -xlogy(t, p);
    } else {
      const T p = math::clip(a, math::eps<T>::value, T(1) - math::eps<T>::value);
      l = -(xlogy(t, p) + xlogy(T(1) - t, T(1) - p));
    }
    loss += static_cast<double>(weighted ? l * w : l);
    delta[k] = weighted ? (a - t) * w : (a - t);
  }
  return loss;
}

// The batch loss is sum(row losses) / loss_denominator(sum of weights, n_out).
template <Loss L>
FUSEDMLP_HD double loss_denominator(double weight_sum, index_t n_out) {
  if constexpr (L == Loss::squared_error) return 2.0 * weight_sum * static_cast<double>(n_out);
  return weight_sum;
}

template <class F>
decltype(auto) dispatch_loss(Loss loss, F&& f) {
  switch (loss) {
    case Loss::squared_error:
      return f(std::integral_constant<Loss, Loss::squared_error>{});
    case Loss::poisson:
      return f(std::integral_constant<Loss, Loss::poisson>{});
    case Loss::log_loss:
      return f(std::integral_constant<Loss, Loss::log_loss>{});
    case Loss::binary_log_loss:
      return f(std::integral_constant<Loss, Loss::binary_log_loss>{});
  }
  throw std::invalid_argument("unsupported loss code " + std::to_string(static_cast<int>(loss)));
}

inline Loss loss_from_name(const std::string& name) {
  if (name == "squared_error") return Loss::squared_error;
  if (name == "poisson") return Loss::poisson;
  if (name == "log_loss") return Loss::log_loss;
  if (name == "binary_log_loss") return Loss::binary_log_loss;
  throw std::invalid_argument("unknown loss '" + name + "'");
}

}  // namespace fusedmlp
