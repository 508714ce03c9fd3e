// Activation functions: the formula and its derivative, written once for every engine.
//
// Derivatives are taken from the activation's OUTPUT a = f(z) (scikit-learn's convention), so
// the fused backward pass needs only the stored activations. An activation added later that
// needs its input instead (e.g. GELU) must store pre-activations and say so here.
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>

#include "fusedmlp/common.h"
#include "fusedmlp/math.h"

namespace fusedmlp {

// Hidden activations first; exp and softmax only appear on the output layer.
enum class Activation : int {
  identity = 0,
  logistic = 1,
  tanh = 2,
  relu = 3,
  exp = 4,      // output of the Poisson loss (log link)
  softmax = 5,  // output of the multiclass log loss; row-wise, see loss.h
};

template <Activation A, class T>
FUSEDMLP_HD T activate(T z) {
  if constexpr (A == Activation::identity) {
    return z;
  } else if constexpr (A == Activation::logistic) {
    return T(1) / (T(1) + math::exp(-z));  // scipy.special.expit
  } else if constexpr (A == Activation::tanh) {
    return math::tanh(z);
  } else if constexpr (A == Activation::relu) {
    return z > T(0) ? z : (z == z ? T(0) : z);  // numpy.maximum(z, 0): NaN propagates
  } else if constexpr (A == Activation::exp) {
    return math::exp(z);
  } else {
    static_assert(A != Activation::softmax, "softmax is row-wise: use loss.h");
    return z;
  }
}

// d f(z) / dz written in terms of a = f(z).
template <Activation A, class T>
FUSEDMLP_HD T activation_grad_from_output(T a) {
  if constexpr (A == Activation::identity) {
    return T(1);
  } else if constexpr (A == Activation::logistic) {
    return a * (T(1) - a);
  } else if constexpr (A == Activation::tanh) {
    return T(1) - a * a;
  } else if constexpr (A == Activation::relu) {
    return a == T(0) ? T(0) : T(1);  // scikit-learn: delta[Z == 0] = 0
  } else {
    static_assert(A == Activation::identity || A == Activation::logistic ||
                      A == Activation::tanh || A == Activation::relu,
                  "no derivative from the output for this activation");
    return T(1);
  }
}

// The one switch from a runtime Activation to a template argument for hidden layers.
// f is called as f(std::integral_constant<Activation, A>{}).
template <class F>
decltype(auto) dispatch_hidden_activation(Activation act, F&& f) {
  switch (act) {
    case Activation::identity:
      return f(std::integral_constant<Activation, Activation::identity>{});
    case Activation::logistic:
      return f(std::integral_constant<Activation, Activation::logistic>{});
    case Activation::tanh:
      return f(std::integral_constant<Activation, Activation::tanh>{});
    case Activation::relu:
      return f(std::integral_constant<Activation, Activation::relu>{});
    default:
      throw std::invalid_argument("unsupported hidden activation code " +
                                  std::to_string(static_cast<int>(act)));
  }
}

inline Activation activation_from_name(const std::string& name) {
  if (name == "identity") return Activation::identity;
  if (name == "logistic") return Activation::logistic;
  if (name == "tanh") return Activation::tanh;
  if (name == "relu") return Activation::relu;
  if (name == "exp") return Activation::exp;
  if (name == "softmax") return Activation::softmax;
  throw std::invalid_argument("unknown activation '" + name + "'");
}

}  // namespace fusedmlp
