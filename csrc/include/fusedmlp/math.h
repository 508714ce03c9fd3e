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
FUSEDMLP_HD double erf(double x) { return ::erf(x); }

// float erf and exp in plain arithmetic, which the CPU engine's write-back loops vectorise
// (libm's erff and expf are scalar calls there); within 4.5e-7 of erf and 2 ulp of exp. The
// device keeps its own erff and expf.
#if defined(__CUDA_ARCH__)
FUSEDMLP_HD float erf(float x) { return ::erff(x); }
FUSEDMLP_HD float exp_simd(float x) { return ::expf(x); }
FUSEDMLP_HD float tanh_simd(float x) { return ::tanhf(x); }
#else
// Eigen's rational approximation (generic_fast_erf_float): odd numerator, even denominator
// in x^2, on x clamped to [-4, 4], beyond which erf is +-1 in float
FUSEDMLP_HD float erf(float v) {
  if (!(v == v)) return v;
  const float x = v < -4.0f ? -4.0f : (v > 4.0f ? 4.0f : v);
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f;
  p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f;
  p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f;
  q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  return x * p / q;
}

// Cephes' expf: x = n ln 2 + r, |r| <= ln 2 / 2, a degree-6 polynomial in r, 2^n from the
// exponent bits; 0 below -87.3 (float's normal range; denormals are flushed in training
// anyway), infinity above 88 (slightly early: e^88.7 is the largest float), NaN kept.
FUSEDMLP_HD float exp_simd(float v) {
  constexpr float lo = -87.33654f, hi = 88.0f;
  const float x = v < lo ? lo : (v > hi ? hi : (v == v ? v : 0.0f));
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const unsigned bits = static_cast<unsigned>(static_cast<int>(n) + 127) << 23;  // n in [-126, 127]
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  const float result = p * scale;
  return v < lo ? 0.0f : (v > hi ? __builtin_huge_valf() : (v == v ? result : v));
}

// float tanh in plain arithmetic, which the write-backs vectorise (libm's tanhf is a scalar
// call there: a Fashion-MNIST epoch with tanh took 1.4-1.7 times relu's): Cephes' tanhf, an odd
// polynomial below 0.625 and 1 - 2 / (e^2|x| + 1) above (e^x by exp_simd, |x| clamped at 9.5,
// beyond which tanh is 1 in float); within 1.32 ulp of tanh where the multiply-adds are fused
// (the GEMM library's AVX2 and AVX-512 builds; numpy's float32 tanh: 1.37, bench/RESULTS.md);
// x itself below 2^-12 (-0 kept), NaN kept. Code compiled without FMA (dense.cpp's CSR first
// layer and output activations, the portable kernels, the CUDA simulator) rounds the polynomial
// differently, as with exp_simd and erf: a float32 tanh model's sparse and dense inputs agree to
// an ulp or so there, not bit for bit.
FUSEDMLP_HD float tanh_simd(float v) {
  const float a = v < 0.0f ? -v : v;
  const float z = v * v;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * v + v;
  const float e = exp_simd(2.0f * (a < 9.5f ? a : 9.5f));
  const float large = 1.0f - 2.0f / (e + 1.0f);
  const float t = a < 0.625f ? small : (v < 0.0f ? -large : large);
  return a < 0x1p-12f || !(v == v) ? v : t;
}
#endif
FUSEDMLP_HD double exp_simd(double x) { return ::exp(x); }
FUSEDMLP_HD double tanh_simd(double x) { return ::tanh(x); }
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
