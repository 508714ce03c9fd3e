// Activation functions: the registry of every activation with its traits, the formulas and
// their derivatives, written once for every engine.
//
// To add an activation: one row in FUSEDMLP_ACTIVATIONS and one branch in each of activate()
// and activation_grad() below. The enum, name parsing, the runtime-to-template switch and the
// list Python reads (fusedmlp._cpu.activations()) are generated from the row.
//
// Derivatives are taken from the activation's OUTPUT a = f(z) where possible (scikit-learn's
// convention), so the fused backward pass needs only the stored activations. An activation
// whose derivative needs its input z says so (Derivative::from_input). The output layer handles
// those (loss.h keeps z); hidden layers do not yet store pre-activations, so
// check_hidden_activation() rejects such an activation there until they do.
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>

#include "fusedmlp/common.h"
#include "fusedmlp/math.h"

namespace fusedmlp {

enum class Derivative : int {
  from_output = 0,  // f'(z) written with a = f(z)
  from_input = 1,   // f'(z) needs z: pre-activations are stored
};

// X(name, derivative, hidden, in_sklearn, glorot_factor, positive)
//   derivative     Derivative::from_output or from_input
//   hidden         usable in hidden layers (exp is the Poisson loss's output only)
//   in_sklearn     scikit-learn's MLPs have it (its init factor and behaviour are kept)
//   glorot_factor  uniform initial weights in +-sqrt(factor / (fan_in + fan_out)), as
//                  scikit-learn draws them (2 for logistic, 6 otherwise)
//   positive       its outputs are > 0 (what a loss of a positive mean, Poisson's, needs)
#define FUSEDMLP_ACTIVATIONS(X)                                 \
  X(identity, Derivative::from_output, true, true, 6.0, false)  \
  X(logistic, Derivative::from_output, true, true, 2.0, true)   \
  X(tanh, Derivative::from_output, true, true, 6.0, false)      \
  X(relu, Derivative::from_output, true, true, 6.0, false)      \
  X(softplus, Derivative::from_output, true, false, 6.0, true)  \
  X(selu, Derivative::from_output, true, false, 6.0, false)     \
  X(exp, Derivative::from_output, false, false, 6.0, true)

enum class Activation : int {
#define FUSEDMLP_ENUM_ROW(name, ...) name,
  FUSEDMLP_ACTIVATIONS(FUSEDMLP_ENUM_ROW)
#undef FUSEDMLP_ENUM_ROW
  softmax,  // the multiclass log loss's output: row-wise, in loss.h; not element-wise
};

struct ActivationInfo {
  const char* name;
  Derivative derivative;
  bool hidden;
  bool in_sklearn;
  double glorot_factor;
  bool positive;
};

// The registry, indexed by Activation (softmax, row-wise, is not in it).
inline constexpr ActivationInfo kActivations[] = {
#define FUSEDMLP_INFO_ROW(name, derivative, hidden, in_sklearn, glorot, positive) \
  {#name, derivative, hidden, in_sklearn, glorot, positive},
    FUSEDMLP_ACTIVATIONS(FUSEDMLP_INFO_ROW)
#undef FUSEDMLP_INFO_ROW
};
inline constexpr int kNumActivations = static_cast<int>(sizeof(kActivations) / sizeof(kActivations[0]));

constexpr const ActivationInfo& activation_info(Activation a) {
  return kActivations[static_cast<int>(a)];
}

template <Activation A>
inline constexpr bool needs_pre_activation = activation_info(A).derivative == Derivative::from_input;

template <Activation>
inline constexpr bool kNoSuchActivation = false;

inline constexpr double kSeluScale = 1.0507009873554804934193349852946;
inline constexpr double kSeluAlpha = 1.6732632423543772848170429916717;

// a = f(z)
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
  } else if constexpr (A == Activation::softplus) {
    // log(1 + e^z), PyTorch's: z itself above 20, where the two agree to rounding
    return z > T(20) ? z : math::log1p(math::exp(z));
  } else if constexpr (A == Activation::selu) {  // PyTorch's SELU, Klambauer et al.'s constants
    return z > T(0) ? T(kSeluScale) * z : T(kSeluScale * kSeluAlpha) * math::expm1(z);
  } else if constexpr (A == Activation::exp) {
    return math::exp(z);
  } else {
    static_assert(kNoSuchActivation<A>, "softmax is row-wise (loss.h); others need a formula here");
    return z;
  }
}

// f'(z), written with a = f(z) for Derivative::from_output activations and with z for
// Derivative::from_input ones: `v` is whichever the registry says the layer stores.
template <Activation A, class T>
FUSEDMLP_HD T activation_grad(T v) {
  if constexpr (A == Activation::identity) {
    return T(1);
  } else if constexpr (A == Activation::logistic) {
    return v * (T(1) - v);
  } else if constexpr (A == Activation::tanh) {
    return T(1) - v * v;
  } else if constexpr (A == Activation::relu) {
    return v == T(0) ? T(0) : T(1);  // scikit-learn: delta[Z == 0] = 0
  } else if constexpr (A == Activation::softplus) {
    return -math::expm1(-v);  // sigmoid(z) = 1 - e^(-a), accurate for small a too
  } else if constexpr (A == Activation::selu) {
    return v > T(0) ? T(kSeluScale) : v + T(kSeluScale * kSeluAlpha);  // a + scale * alpha below 0
  } else if constexpr (A == Activation::exp) {
    return v;
  } else {
    static_assert(kNoSuchActivation<A>, "no derivative for this activation");
    return T(1);
  }
}

// The backward pass through an activation: d loss / d z from d loss / d a = v and the stored
// value (a or z, as activation_grad takes it). relu selects instead of multiplying, as
// scikit-learn assigns delta[Z == 0] = 0: an infinite gradient behind a dead unit stays 0, not NaN.
template <Activation A, class T>
FUSEDMLP_HD T backprop_activation(T v, T stored) {
  if constexpr (A == Activation::relu) {
    return stored == T(0) ? T(0) : v;
  } else {
    return v * activation_grad<A>(stored);
  }
}

// The one switch from a runtime Activation to a template argument, for element-wise
// activations; f is called as f(std::integral_constant<Activation, A>{}). Unknown codes and
// softmax throw: no activation silently becomes another.
template <class F>
decltype(auto) dispatch_activation(Activation act, F&& f) {
  switch (act) {
#define FUSEDMLP_CASE_ROW(name, ...) \
  case Activation::name:             \
    return f(std::integral_constant<Activation, Activation::name>{});
    FUSEDMLP_ACTIVATIONS(FUSEDMLP_CASE_ROW)
#undef FUSEDMLP_CASE_ROW
    default:
      break;
  }
  throw std::invalid_argument("unsupported activation code " + std::to_string(static_cast<int>(act)));
}

// The activation's name, for messages ("softmax", or the code when it is none).
inline std::string activation_name(Activation act) {
  const int code = static_cast<int>(act);
  if (code >= 0 && code < kNumActivations) return kActivations[code].name;
  if (act == Activation::softmax) return "softmax";
  return "code " + std::to_string(code);
}

// Whether `a` can run in a hidden layer of the engines as they are: a hidden activation whose
// derivative needs no stored pre-activations.
constexpr bool hidden_ready(Activation a) {
  return static_cast<int>(a) >= 0 && static_cast<int>(a) < kNumActivations &&
         kActivations[static_cast<int>(a)].hidden &&
         kActivations[static_cast<int>(a)].derivative != Derivative::from_input;
}

// Throws std::invalid_argument unless `act` may be used in a hidden layer.
inline void check_hidden_activation(Activation act) {
  const int code = static_cast<int>(act);
  if (code < 0 || code >= kNumActivations || !kActivations[code].hidden)
    throw std::invalid_argument("'" + activation_name(act) + "' is not a hidden activation");
  if (kActivations[code].derivative == Derivative::from_input)
    throw std::invalid_argument("'" + activation_name(act) +
                                "' needs stored pre-activations, which hidden layers do not keep yet");
}

// dispatch_activation for hidden layers: only the activations hidden layers can run are
// instantiated. Callers validated `act` (check_hidden_activation) before any thread team
// started; an invalid code here throws.
template <class F>
decltype(auto) dispatch_hidden_activation(Activation act, F&& f) {
  using R = decltype(f(std::integral_constant<Activation, Activation::identity>{}));
  return dispatch_activation(act, [&](auto tag) -> R {
    if constexpr (hidden_ready(decltype(tag)::value)) {
      return f(tag);
    } else {
      throw std::invalid_argument("'" + activation_name(act) + "' cannot run in a hidden layer");
    }
  });
}

inline Activation activation_from_name(const std::string& name) {
  for (int i = 0; i < kNumActivations; ++i)
    if (name == kActivations[i].name) return static_cast<Activation>(i);
  if (name == "softmax") return Activation::softmax;
  throw std::invalid_argument("unknown activation '" + name + "'");
}

}  // namespace fusedmlp
