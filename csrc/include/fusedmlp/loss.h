// Losses and output layers, written once for every engine.
//
// A loss knows its value and its gradient with respect to the network's output a; the output
// activation is separate (activation.h), and a (loss, output activation) pair is the "head" of
// the network. Canonical pairs (scikit-learn's: squared error with identity, Poisson with exp,
// log loss with softmax, binary log loss with logistic) keep the fused gradient with respect to
// the pre-activation, (a - y) * w. Any other pair, which only the regression losses form, uses
// dL/da * f'(z) * w. Loss values follow scikit-learn's formulas exactly, including the clipping
// of probabilities to [eps, 1 - eps] and xlogy's 0 * log(0) = 0.
//
// To add a loss: one row in FUSEDMLP_LOSSES and one branch in each of loss_value() and
// loss_grad() below; loss_denominator() if it is not a weighted mean over samples.
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>

#include "fusedmlp/activation.h"
#include "fusedmlp/common.h"
#include "fusedmlp/math.h"

namespace fusedmlp {

// X(name, canonical output activation, regression, positive, fused)
//   regression: pairs with any element-wise output activation (else only with its canonical one)
//   positive:   needs outputs > 0 (a positive mean): pairs only with positive activations
//   fused:      with its canonical output, d loss / d z = a - y (scikit-learn's four losses);
//               else the gradient is d loss / d a * f'(z), over the outputs' mean
#define FUSEDMLP_LOSSES(X)                                     \
  X(squared_error, Activation::identity, true, false, true)    \
  X(poisson, Activation::exp, true, true, true)                \
  X(log_loss, Activation::softmax, false, false, true)         \
  X(binary_log_loss, Activation::logistic, false, false, true) \
  X(absolute_error, Activation::identity, true, false, false)  \
  X(huber, Activation::identity, true, false, false)           \
  X(quantile, Activation::identity, true, false, false)

// The losses' parameters, listed once: X(name, default). The struct and the bindings' parser
// are generated from it; they travel with the network's head (NetworkLayout).
#define FUSEDMLP_LOSS_PARAMS(X) \
  X(huber_delta, 1.0)           \
  X(quantile, 0.5)

struct LossParams {
#define FUSEDMLP_FIELD_ROW(name, value) double name = value;
  FUSEDMLP_LOSS_PARAMS(FUSEDMLP_FIELD_ROW)
#undef FUSEDMLP_FIELD_ROW
};

enum class Loss : int {
#define FUSEDMLP_ENUM_ROW(name, ...) name,
  FUSEDMLP_LOSSES(FUSEDMLP_ENUM_ROW)
#undef FUSEDMLP_ENUM_ROW
};

struct LossInfo {
  const char* name;
  Activation canonical_output;
  bool regression;
  bool positive;
  bool fused;
};

inline constexpr LossInfo kLosses[] = {
#define FUSEDMLP_INFO_ROW(name, canonical, regression, positive, fused) \
  {#name, canonical, regression, positive, fused},
    FUSEDMLP_LOSSES(FUSEDMLP_INFO_ROW)
#undef FUSEDMLP_INFO_ROW
};
inline constexpr int kNumLosses = static_cast<int>(sizeof(kLosses) / sizeof(kLosses[0]));

constexpr const LossInfo& loss_info(Loss l) { return kLosses[static_cast<int>(l)]; }

template <Loss>
inline constexpr bool kNoSuchLoss = false;

template <class T>
FUSEDMLP_HD T xlogy(T x, T y) {
  return x == T(0) ? T(0) : x * math::log(y);
}

// The loss of one output a against its target t (unweighted, before loss_denominator).
template <Loss L, class T>
FUSEDMLP_HD T loss_value(T a, T t, const LossParams& p) {
  if constexpr (L == Loss::squared_error) {
    return (t - a) * (t - a);
  } else if constexpr (L == Loss::poisson) {
    return xlogy(t, t / a) - t + a;  // half the Poisson deviance
  } else if constexpr (L == Loss::log_loss) {
    const T p = math::clip(a, math::eps<T>::value, T(1) - math::eps<T>::value);
    return -xlogy(t, p);
  } else if constexpr (L == Loss::binary_log_loss) {
    const T p = math::clip(a, math::eps<T>::value, T(1) - math::eps<T>::value);
    return -(xlogy(t, p) + xlogy(T(1) - t, T(1) - p));
  } else if constexpr (L == Loss::absolute_error) {
    return math::abs(a - t);
  } else if constexpr (L == Loss::huber) {  // PyTorch's HuberLoss(delta)
    const T r = math::abs(a - t), d = static_cast<T>(p.huber_delta);
    return r <= d ? T(0.5) * r * r : d * (r - T(0.5) * d);
  } else if constexpr (L == Loss::quantile) {  // the pinball loss of quantile q
    const T r = t - a, q = static_cast<T>(p.quantile);
    return r >= T(0) ? q * r : (q - T(1)) * r;
  } else {
    static_assert(kNoSuchLoss<L>, "a loss needs a value here");
    return T(0);
  }
}

// d loss / d a, on scikit-learn's scale: the gradient it follows for the half squared error is
// (a - t), for the half Poisson deviance 1 - t / a (so that with their canonical outputs both
// give a - t, as the fused path computes).
template <Loss L, class T>
FUSEDMLP_HD T loss_grad(T a, T t, const LossParams& p) {
  if constexpr (L == Loss::squared_error) {
    return a - t;
  } else if constexpr (L == Loss::poisson) {
    return T(1) - t / a;
  } else if constexpr (L == Loss::absolute_error) {
    return a > t ? T(1) : (a < t ? T(-1) : T(0));  // sign(a - t), 0 at the kink as PyTorch
  } else if constexpr (L == Loss::huber) {
    const T r = a - t, d = static_cast<T>(p.huber_delta);
    return r > d ? d : (r < -d ? -d : r);
  } else if constexpr (L == Loss::quantile) {
    const T q = static_cast<T>(p.quantile);
    return a < t ? -q : (a > t ? T(1) - q : T(0));
  } else {
    static_assert(loss_info(L).regression, "classification losses pair only with their canonical output");
    return T(0);
  }
}

// The batch loss is sum(row losses) / loss_denominator(sum of weights, n_out): scikit-learn's
// for its losses, the weighted mean over samples and outputs (PyTorch's "mean") for the others.
template <Loss L>
FUSEDMLP_HD double loss_denominator(double weight_sum, index_t n_out) {
  if constexpr (L == Loss::squared_error) return 2.0 * weight_sum * static_cast<double>(n_out);
  if constexpr (!loss_info(L).fused) return weight_sum * static_cast<double>(n_out);
  return weight_sum;
}

// Applies the output activation to one row in place: z (pre-activation) becomes a.
template <Activation A, class T>
FUSEDMLP_HD void output_activation_row(T* z, index_t n_out) {
  if constexpr (A == Activation::softmax) {
    T zmax = z[0];
    for (index_t k = 1; k < n_out; ++k) zmax = math::max(zmax, z[k]);
    T sum = T(0);
    for (index_t k = 0; k < n_out; ++k) {
      z[k] = math::exp(z[k] - zmax);
      sum += z[k];
    }
    for (index_t k = 0; k < n_out; ++k) z[k] /= sum;
  } else {
    for (index_t k = 0; k < n_out; ++k) z[k] = activate<A>(z[k]);
  }
}

// For one sample: turns z into the output a, writes delta = d loss / d z (times the weight), and
// returns the sample's weighted, unnormalised loss (the caller divides by loss_denominator).
template <Loss L, Activation A, class T>
FUSEDMLP_HD double output_loss_grad_row(T* z, const T* y, T w, bool weighted, T* delta,
                                        index_t n_out, const LossParams& p) {
  constexpr bool fused = loss_info(L).fused && A == loss_info(L).canonical_output;
  double loss = 0.0;
  if constexpr (fused) {
    output_activation_row<A>(z, n_out);
    for (index_t k = 0; k < n_out; ++k) {
      const T a = z[k];
      const T t = y[k];
      const T l = loss_value<L>(a, t, p);
      loss += static_cast<double>(weighted ? l * w : l);
      delta[k] = weighted ? (a - t) * w : (a - t);
    }
  } else {
    // the losses beyond scikit-learn's average over the outputs, their gradient too
    const T scale = loss_info(L).fused ? T(1) : T(1) / static_cast<T>(n_out);
    for (index_t k = 0; k < n_out; ++k) {
      const T pre = z[k];
      const T a = activate<A>(pre);
      z[k] = a;
      const T t = y[k];
      const T l = loss_value<L>(a, t, p);
      const T d = loss_grad<L>(a, t, p) * activation_grad<A>(needs_pre_activation<A> ? pre : a) * scale;
      loss += static_cast<double>(weighted ? l * w : l);
      delta[k] = weighted ? d * w : d;
    }
  }
  return loss;
}

// Whether a network may end in `output` under `loss`.
inline bool valid_head(Loss loss, Activation output) {
  const int l = static_cast<int>(loss), a = static_cast<int>(output);
  if (l < 0 || l >= kNumLosses) return false;
  if (output == kLosses[l].canonical_output) return true;
  // (an output activation has no parameter, and a gradient)
  return kLosses[l].regression && a >= 0 && a < kNumActivations &&
         kActivations[a].param[0] == '\0' && kActivations[a].derivative != Derivative::none &&
         (!kLosses[l].positive || kActivations[a].positive);
}

// Throws std::invalid_argument, naming both, unless a network may end in `output` under `loss`.
inline void check_head(Loss loss, Activation output) {
  if (valid_head(loss, output)) return;
  const int l = static_cast<int>(loss);
  if (l < 0 || l >= kNumLosses) throw std::invalid_argument("unsupported loss code " + std::to_string(l));
  throw std::invalid_argument(std::string("the ") + kLosses[l].name + " loss cannot follow the '" +
                              activation_name(output) + "' output activation");
}

// The one switch from a runtime loss to a template argument.
template <class F>
decltype(auto) dispatch_loss(Loss loss, F&& f) {
  switch (loss) {
#define FUSEDMLP_CASE_ROW(name, ...) \
  case Loss::name:                   \
    return f(std::integral_constant<Loss, Loss::name>{});
    FUSEDMLP_LOSSES(FUSEDMLP_CASE_ROW)
#undef FUSEDMLP_CASE_ROW
  }
  throw std::invalid_argument("unsupported loss code " + std::to_string(static_cast<int>(loss)));
}

// The one switch from a runtime head (loss, output activation) to template arguments: f is
// called as f(loss tag, activation tag) for valid pairs only; others throw.
template <class F>
decltype(auto) dispatch_head(Loss loss, Activation output, F&& f) {
  check_head(loss, output);
  using R = decltype(f(std::integral_constant<Loss, Loss::squared_error>{},
                       std::integral_constant<Activation, Activation::identity>{}));
  return dispatch_loss(loss, [&](auto l) -> R {
    constexpr Loss L = decltype(l)::value;
    if constexpr (loss_info(L).regression) {
      return dispatch_activation(output, [&](auto a) -> R { return f(l, a); });
    } else {
      return f(l, std::integral_constant<Activation, loss_info(L).canonical_output>{});
    }
  });
}

// The head's output activation alone (prediction).
template <class F>
decltype(auto) dispatch_output(Loss loss, Activation output, F&& f) {
  return dispatch_head(loss, output, [&](auto, auto a) { return f(a); });
}

// The batch's reported loss, scikit-learn's: the summed row losses over the loss's denominator,
// plus the L2 term 0.5 * alpha * ||W||^2 over the sum of sample weights.
template <Loss L>
FUSEDMLP_HD double batch_loss(double row_loss, double weight_sum, index_t n_out, double alpha,
                              double weights_sq_norm) {
  return row_loss / loss_denominator<L>(weight_sum, n_out) + 0.5 * alpha * weights_sq_norm / weight_sum;
}

inline double batch_loss(Loss loss, double row_loss, double weight_sum, index_t n_out, double alpha,
                         double weights_sq_norm) {
  return dispatch_loss(loss, [&](auto l) {
    return batch_loss<decltype(l)::value>(row_loss, weight_sum, n_out, alpha, weights_sq_norm);
  });
}

inline Loss loss_from_name(const std::string& name) {
  for (int i = 0; i < kNumLosses; ++i)
    if (name == kLosses[i].name) return static_cast<Loss>(i);
  throw std::invalid_argument("unknown loss '" + name + "'");
}

}  // namespace fusedmlp
