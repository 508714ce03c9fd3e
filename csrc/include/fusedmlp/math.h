// Elementary functions in one spelling that works on the host and on the device, for float
// and double. The engines call these, never std:: or the *f names directly.
#pragma once

#include <cmath>

#include "fusedmlp/common.h"

namespace fusedmlp {
namespace math {

FUSEDMLP_HD float exp(float x) { return ::expf(x); }
FUSEDMLP_HD double exp(double x) { return ::exp(x); }
FUSEDMLP_HD float log(float x) { return ::logf(x); }
FUSEDMLP_HD double log(double x) { return ::log(x); }
FUSEDMLP_HD float tanh(float x) { return ::tanhf(x); }
FUSEDMLP_HD double tanh(double x) { return ::tanh(x); }
FUSEDMLP_HD float sqrt(float x) { return ::sqrtf(x); }
FUSEDMLP_HD double sqrt(double x) { return ::sqrt(x); }
FUSEDMLP_HD double pow(double x, double y) { return ::pow(x, y); }
FUSEDMLP_HD float log1p(float x) { return ::log1pf(x); }
FUSEDMLP_HD double log1p(double x) { return ::log1p(x); }
FUSEDMLP_HD float expm1(float x) { return ::expm1f(x); }
FUSEDMLP_HD double expm1(double x) { return ::expm1(x); }
FUSEDMLP_HD float erf(float x) { return ::erff(x); }
FUSEDMLP_HD double erf(double x) { return ::erf(x); }
FUSEDMLP_HD float abs(float x) { return ::fabsf(x); }
FUSEDMLP_HD double abs(double x) { return ::fabs(x); }

template <class T>
FUSEDMLP_HD T max(T a, T b) { return a < b ? b : a; }
template <class T>
FUSEDMLP_HD T min(T a, T b) { return b < a ? b : a; }
template <class T>
FUSEDMLP_HD T clip(T x, T lo, T hi) { return x < lo ? lo : (hi < x ? hi : x); }

// numpy's finfo(T).eps: scikit-learn clips probabilities to [eps, 1 - eps] in its log losses.
template <class T> struct eps;
template <> struct eps<float> { static constexpr float value = 1.1920928955078125e-07f; };
template <> struct eps<double> { static constexpr double value = 2.220446049250313e-16; };

}  // namespace math
}  // namespace fusedmlp
