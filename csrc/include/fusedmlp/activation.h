// Activation functions: the registry of every activation with its traits, the formulas and
// their derivatives, written once for every engine.
//
// To add an activation: one row in FUSEDMLP_ACTIVATIONS and one branch in each of activate()
// and activation_grad() below. The enum, name parsing, the runtime-to-template switch and the
// list Python reads (fusedmlp._cpu.activations()) are generated from the row.
//
// Derivatives are taken from the activation's OUTPUT a = f(z) where possible (scikit-learn's
// convention), so the fused backward pass needs only the stored activations. An activation
// whose derivative needs its input z says so (Derivative::from_input): the engines then also
// store each hidden layer's pre-activations, in a buffer that exists only for such networks
// (and for dropout, whose backward pass recomputes f'(z) from z as well).
//
// An activation may have one scalar parameter (leaky_relu's negative slope, elu's alpha): the
// row names it as the estimators spell it and gives its default; it reaches every formula as
// `p` (HiddenUnits::param in the engines), and the others ignore it.
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
  none = 2,         // a step: zero almost everywhere; prediction and hand-set weights only
};

// X(name, derivative, hidden, in_sklearn, glorot_factor, positive, param, param_default)
//   derivative     Derivative::from_output, from_input or none
//   hidden         usable in hidden layers (exp is the Poisson loss's output only)
//   in_sklearn     scikit-learn's MLPs have it (its init factor and behaviour are kept)
//   glorot_factor  uniform initial weights in +-sqrt(factor / (fan_in + fan_out)), as
//                  scikit-learn draws them (2 for logistic, 6 otherwise)
//   positive       its outputs are > 0 (what a loss of a positive mean, Poisson's, needs)
//   param          the name of its scalar parameter as the estimators spell it ("": none)
//   param_default  that parameter's default (PyTorch's)
#define FUSEDMLP_ACTIVATIONS(X)                                                         \
  X(identity, Derivative::from_output, true, true, 6.0, false, "", 0.0)                 \
  X(logistic, Derivative::from_output, true, true, 2.0, true, "", 0.0)                  \
  X(tanh, Derivative::from_output, true, true, 6.0, false, "", 0.0)                     \
  X(relu, Derivative::from_output, true, true, 6.0, false, "", 0.0)                     \
  X(softplus, Derivative::from_output, true, false, 6.0, true, "", 0.0)                 \
  X(selu, Derivative::from_output, true, false, 6.0, false, "", 0.0)                    \
  X(exp, Derivative::from_output, false, false, 6.0, true, "", 0.0)                     \
  X(leaky_relu, Derivative::from_output, true, false, 6.0, false, "negative_slope", 0.01) \
  X(elu, Derivative::from_output, true, false, 6.0, false, "elu_alpha", 1.0)            \
  X(gelu, Derivative::from_input, true, false, 6.0, false, "", 0.0)                     \
  X(gelu_tanh, Derivative::from_input, true, false, 6.0, false, "", 0.0)                \
  X(silu, Derivative::from_input, true, false, 6.0, false, "", 0.0)                     \
  X(heaviside, Derivative::none, true, false, 6.0, false, "", 0.0)                      \
  X(sign, Derivative::none, true, false, 6.0, false, "", 0.0)

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
  const char* param;
  double param_default;
};

// The registry, indexed by Activation (softmax, row-wise, is not in it).
inline constexpr ActivationInfo kActivations[] = {
#define FUSEDMLP_INFO_ROW(name, derivative, hidden, in_sklearn, glorot, positive, param, param_default) \
  {#name, derivative, hidden, in_sklearn, glorot, positive, param, param_default},
    FUSEDMLP_ACTIVATIONS(FUSEDMLP_INFO_ROW)
#undef FUSEDMLP_INFO_ROW
};
inline constexpr int kNumActivations = static_cast<int>(sizeof(kActivations) / sizeof(kActivations[0]));

constexpr const ActivationInfo& activation_info(Activation a) {
  return kActivations[static_cast<int>(a)];
}

template <Activation A>
inline constexpr bool needs_pre_activation = activation_info(A).derivative == Derivative::from_input;

constexpr bool activation_needs_input(Activation a) {
  return static_cast<int>(a) >= 0 && static_cast<int>(a) < kNumActivations &&
         kActivations[static_cast<int>(a)].derivative == Derivative::from_input;
}

template <Activation>
inline constexpr bool kNoSuchActivation = false;

inline constexpr double kSeluScale = 1.0507009873554804934193349852946;
inline constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
inline constexpr double kSqrtHalf = 0.70710678118654752440084436210485;      // 1 / sqrt(2)
inline constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;    // 1 / sqrt(2 pi)
inline constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;   // sqrt(2 / pi)
inline constexpr double kGeluCubic = 0.044715;

template <class T>
FUSEDMLP_HD T sigmoid(T z) {
  return T(1) / (T(1) + math::exp(-z));  // scipy.special.expit
}

// The same with math::exp_simd, which the CPU engine's write-back loops vectorise in float,
// for activations beyond scikit-learn's (logistic keeps libm's exp: an epoch 8% above relu's;
// tanh, which took 1.4-1.7 times relu's with libm, is math::tanh_simd in float)
template <class T>
FUSEDMLP_HD T sigmoid_simd(T z) {
  return T(1) / (T(1) + math::exp_simd(-z));
}

// a = f(z); p is the activation's parameter (ignored by those without one)
template <Activation A, class T>
FUSEDMLP_HD T activate(T z, T p = T(0)) {
  if constexpr (A == Activation::identity) {
    return z;
  } else if constexpr (A == Activation::logistic) {
    return sigmoid(z);
  } else if constexpr (A == Activation::tanh) {
    return math::tanh_simd(z);
  } else if constexpr (A == Activation::relu) {
    return z > T(0) ? z : (z == z ? T(0) : z);  // numpy.maximum(z, 0): NaN propagates
  } else if constexpr (A == Activation::softplus) {
    // log(1 + e^z), PyTorch's: z itself above 20, where the two agree to rounding
    return z > T(20) ? z : math::log1p(math::exp(z));
  } else if constexpr (A == Activation::selu) {  // PyTorch's SELU, Klambauer et al.'s constants
    return z > T(0) ? T(kSeluScale) * z : T(kSeluScale * kSeluAlpha) * math::expm1(z);
  } else if constexpr (A == Activation::exp) {
    return math::exp(z);
  } else if constexpr (A == Activation::leaky_relu) {
    return z > T(0) ? z : z * p;
  } else if constexpr (A == Activation::elu) {
    return z > T(0) ? z : p * math::expm1(z);
  } else if constexpr (A == Activation::gelu) {  // z * Phi(z), the exact (erf) form
    return T(0.5) * z * (T(1) + math::erf(z * T(kSqrtHalf)));
  } else if constexpr (A == Activation::gelu_tanh) {  // PyTorch's approximate='tanh'
    return T(0.5) * z * (T(1) + math::tanh_simd(T(kSqrt2OverPi) * (z + T(kGeluCubic) * z * z * z)));
  } else if constexpr (A == Activation::silu) {
    return z * sigmoid_simd(z);
  } else if constexpr (A == Activation::heaviside) {  // 1 from 0 on (the textbook's step)
    return z < T(0) ? T(0) : (z >= T(0) ? T(1) : z);
  } else if constexpr (A == Activation::sign) {  // numpy.sign
    return z > T(0) ? T(1) : (z < T(0) ? T(-1) : z);
  } else {
    static_assert(kNoSuchActivation<A>, "softmax is row-wise (loss.h); others need a formula here");
    return z;
  }
}

// f'(z), written with a = f(z) for Derivative::from_output activations and with z for
// Derivative::from_input ones: `v` is whichever the registry says the layer stores.
template <Activation A, class T>
FUSEDMLP_HD T activation_grad(T v, T p = T(0)) {
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
  } else if constexpr (A == Activation::leaky_relu) {  // p >= 0: a > 0 exactly when z > 0
    return v > T(0) ? T(1) : p;
  } else if constexpr (A == Activation::elu) {  // p > 0: a + alpha below 0, as PyTorch
    return v > T(0) ? T(1) : v + p;
  } else if constexpr (A == Activation::gelu) {  // Phi(z) + z phi(z)
    return T(0.5) * (T(1) + math::erf(v * T(kSqrtHalf))) + v * T(kInvSqrt2Pi) * math::exp_simd(T(-0.5) * v * v);
  } else if constexpr (A == Activation::gelu_tanh) {
    const T u = T(kSqrt2OverPi) * (v + T(kGeluCubic) * v * v * v);
    const T t = math::tanh_simd(u);
    const T du = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluCubic) * v * v);
    return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du;
  } else if constexpr (A == Activation::silu) {
    const T s = sigmoid_simd(v);
    return s * (T(1) + v * (T(1) - s));
  } else if constexpr (A == Activation::heaviside || A == Activation::sign) {
    return T(0);  // never trained: gradient solvers refuse them (check_trainable)
  } else {
    static_assert(kNoSuchActivation<A>, "no derivative for this activation");
    return T(1);
  }
}

// The backward pass through an activation: d loss / d z from d loss / d a = v and the stored
// value (a or z, as activation_grad takes it). relu selects instead of multiplying, as
// scikit-learn assigns delta[Z == 0] = 0: an infinite gradient behind a dead unit stays 0, not
// NaN; leaky_relu selects its slope the same way.
template <Activation A, class T>
FUSEDMLP_HD T backprop_activation(T v, T stored, T p = T(0)) {
  if constexpr (A == Activation::relu) {
    return stored == T(0) ? T(0) : v;
  } else if constexpr (A == Activation::leaky_relu) {
    return stored > T(0) ? v : v * p;
  } else {
    return v * activation_grad<A>(stored, p);
  }
}

// The backward pass from a stored pre-activation z, for any activation: from_output ones
// recompute a = f(z) first (the engines store z for those only under dropout).
template <Activation A, class T>
FUSEDMLP_HD T backprop_activation_from_input(T v, T z, T p = T(0)) {
  if constexpr (activation_info(A).derivative == Derivative::from_input)
    return backprop_activation<A>(v, z, p);
  else
    return backprop_activation<A>(v, activate<A>(z, p), p);
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

// Whether `a` can run in a hidden layer of the engines.
constexpr bool hidden_ready(Activation a) {
  return static_cast<int>(a) >= 0 && static_cast<int>(a) < kNumActivations &&
         kActivations[static_cast<int>(a)].hidden;
}

// Throws std::invalid_argument unless `act` may be used in a hidden layer.
inline void check_hidden_activation(Activation act) {
  if (!hidden_ready(act))
    throw std::invalid_argument("'" + activation_name(act) + "' is not a hidden activation");
}

// Throws std::invalid_argument when gradients cannot train a network of this hidden activation
// (the steps): the training entry points call it, prediction does not.
inline void check_trainable(Activation act) {
  check_hidden_activation(act);
  if (activation_info(act).derivative == Derivative::none)
    throw std::invalid_argument("'" + activation_name(act) +
                                "' has no useful gradient (zero almost everywhere): it can only "
                                "predict with weights set by hand");
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
