// The perceptron's training loop (see perceptron.h). Sections: scikit-learn's generator and
// shuffle; numpy's sum; the rows of the input; the reference operations (scikit-learn's
// WeightVector, hinge loss, L1 truncation, validation score); the screen (the fast margin
// test); the epoch (one loop, the screen in one place); the solver (tasks on threads, stopping
// rule).
//
// Types follow scikit-learn's Cython exactly: T is its `c_type` (float or double); sums, the
// intercept and WeightVector's scale and norms are double; where Cython mixes them, the casts
// below say so.
#include "cpu/perceptron.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <thread>
#include <type_traits>

#include "cpu/gemm/gemm.h"
#include "cpu/threads.h"

#if defined(FUSEDMLP_X86)
#include <immintrin.h>
#endif

namespace fusedmlp {
namespace cpu {

// ---- scikit-learn's generator and shuffle ------------------------------------------------------

std::uint32_t our_rand_r(std::uint32_t* seed) {
  if (*seed == 0) *seed = 1;
  *seed ^= static_cast<std::uint32_t>(*seed << 13);
  *seed ^= static_cast<std::uint32_t>(*seed >> 17);
  *seed ^= static_cast<std::uint32_t>(*seed << 5);
  return *seed % (static_cast<std::uint32_t>(2147483647) + 1u);
}

void sequential_dataset_shuffle(std::int32_t* index, std::int32_t n, std::uint32_t seed) {
  // Cython's `cdef unsigned i, j` over `range(n - 1)`, j = i + rand % (n - i) in unsigned
  for (std::uint32_t i = 0; static_cast<std::int64_t>(i) < static_cast<std::int64_t>(n) - 1; ++i) {
    const std::uint32_t j = i + our_rand_r(&seed) % (static_cast<std::uint32_t>(n) - i);
    std::swap(index[i], index[j]);
  }
}

// ---- numpy's sum -------------------------------------------------------------------------------

namespace {

// numpy's pairwise_sum for float64 (loops_utils.h.src): blocks of 128 summed with 8
// accumulators, halves above that.
double pairwise_sum(const double* a, index_t n) {
  if (n < 8) {
    double res = 0.0;
    for (index_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    index_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  index_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

}  // namespace

double numpy_sum(const double* a, index_t n) { return 0.0 + pairwise_sum(a, n); }

namespace {

// ---- the rows of the input ---------------------------------------------------------------------

// Brings bytes into the cache ahead of their use (samples are read in shuffled order).
inline void prefetch_bytes(const void* p, index_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (index_t off = 0; off < bytes; off += 64) {
    __builtin_prefetch(c + off);
    asm volatile("");  // GCC deletes a loop of prefetches alone as having no effect
  }
}

// x: n values at features 0..n-1
template <class T>
struct DenseRow {
  static constexpr bool kDense = true;
  const T* x;
  index_t n;
  index_t size() const { return n; }
  index_t index(index_t j) const { return j; }
  T value(index_t j) const { return x[j]; }
};

// x: n values at features ind[0..n)
template <class T, class I>
struct SparseRow {
  static constexpr bool kDense = false;
  const T* x;
  const I* ind;
  index_t n;
  index_t size() const { return n; }
  index_t index(index_t j) const { return static_cast<index_t>(ind[j]); }
  T value(index_t j) const { return x[j]; }
};

template <class T>
struct DenseRows {
  using Row = DenseRow<T>;
  const T* data;
  index_t rs, cs, n_cols;
  // a row with a column stride is gathered into scratch (n_cols values)
  Row row(index_t s, T* scratch) const {
    const T* p = data + s * rs;
    if (cs == 1) return Row{p, n_cols};
    for (index_t j = 0; j < n_cols; ++j) scratch[j] = p[j * cs];
    return Row{scratch, n_cols};
  }
  void prefetch(index_t s) const {
    if (cs == 1) prefetch_bytes(data + s * rs, n_cols * static_cast<index_t>(sizeof(T)));
  }
};

template <class T, class I>
struct SparseRows {
  using Row = SparseRow<T, I>;
  const T* values;
  const I* indices;
  const std::int64_t* indptr;
  Row row(index_t s, T*) const {
    const std::int64_t b = indptr[s];
    return Row{values + b, indices + b, static_cast<index_t>(indptr[s + 1] - b)};
  }
  void prefetch(index_t) const {}
};

// ---- reference operations: scikit-learn's, in its order and types -------------------------------

constexpr double kHingeThreshold = 0.0;  // Hinge(threshold=0.0): the perceptron's loss
constexpr double kMaxDloss = 1e12;

// WeightVector resets its scale below this (1e-9 for double, 1e-6 for float).
template <class T>
constexpr double reset_wscale_threshold() {
  return sizeof(T) == 4 ? 1e-6 : 1e-9;
}

inline double hinge_loss(double y, double p) {
  const double z = p * y;
  return z <= kHingeThreshold ? kHingeThreshold - z : 0.0;
}

inline double hinge_gradient(double y, double p) {
  const double z = p * y;
  return z <= kHingeThreshold ? -y : 0.0;
}

}  // namespace

template <class T>
struct PerceptronSolver<T>::State {
  PerceptronTaskSpec spec;
  T* w = nullptr;  // the weights without their scale (WeightVector.w)
  index_t n_features = 0;
  // WeightVector: the vector is wscale * w; its norms are kept up to date by add and scale.
  // All three are double whatever T is (WeightVector's members are).
  double wscale = 1.0, sq_norm = 0.0, l1_norm = 0.0;
  double u = 0.0;    // the L1 penalty's total so far
  std::vector<T> q;  // ... and what each weight has received of it
  // The dataset's index, reshuffled each epoch. scikit-learn's shuffle makes the same swaps
  // every epoch (the same seed), that is it applies one permutation: shuffle_perm.
  std::vector<std::int32_t> order, order_next, shuffle_perm;
  double intercept = 0.0;
  std::uint32_t count = 0;  // samples trained on (Cython's unsigned int)
  index_t epoch = 0;        // epochs completed
  bool in_epoch = false;    // interrupted inside an epoch
  index_t no_improvement = 0;
  double best_objective = std::numeric_limits<double>::infinity();
  double best_score = -std::numeric_limits<double>::infinity();
  bool done = false, converged = false, diverged = false;
  PerceptronEpochReport last;
  std::vector<T> row_scratch;        // a strided dense row
  std::vector<double> score_terms;   // the validation set's weighted hits
  bool started = false;              // the buffers above are allocated
  // sum_j |w_j| of the stored weights, for the screen; recomputed after w changes
  double w_abs_sum = 0.0;
  bool w_abs_sum_stale = true;
};

namespace {

template <class T>
using StateOf = typename PerceptronSolver<T>::State;

// WeightVector.dot: T products summed in double in feature order, times the scale, as T.
template <class T, class Row>
T wv_dot(const StateOf<T>& st, const Row& row) {
  double innerprod = 0.0;
  for (index_t j = 0; j < row.size(); ++j)
    innerprod += static_cast<double>(st.w[row.index(j)] * row.value(j));
  innerprod *= st.wscale;
  return static_cast<T>(innerprod);
}

// WeightVector.add: w += x * (c / wscale); the norms from the touched weights only, as
// scikit-learn keeps them (for sparse rows they are not the whole vector's). The norms are
// skipped when nothing reads them; the weights are the same either way.
template <class T, class Row>
void wv_add(StateOf<T>& st, const Row& row, T c, bool track_norms) {
  const T wscale = static_cast<T>(st.wscale);  // add's local copy is a T
  const double step = static_cast<double>(static_cast<T>(c / wscale));
  T* w = st.w;
  st.w_abs_sum_stale = true;
  if (!track_norms) {
    for (index_t j = 0; j < row.size(); ++j) {
      const index_t idx = row.index(j);
      w[idx] = static_cast<T>(static_cast<double>(w[idx]) + static_cast<double>(row.value(j)) * step);
    }
    return;
  }
  double l2 = 0.0, l1 = 0.0;
  for (index_t j = 0; j < row.size(); ++j) {
    const index_t idx = row.index(j);
    w[idx] = static_cast<T>(static_cast<double>(w[idx]) + static_cast<double>(row.value(j)) * step);
    l2 += static_cast<double>(w[idx] * w[idx]);
    l1 += std::fabs(static_cast<double>(w[idx]));
  }
  st.sq_norm = l2 * static_cast<double>(wscale * wscale);
  st.l1_norm = l1 * static_cast<double>(wscale);
}

// WeightVector.reset_wscale: the scale folded into the weights (BLAS scal, in T).
template <class T>
void wv_reset_wscale(StateOf<T>& st) {
  const T alpha = static_cast<T>(st.wscale);
  for (index_t i = 0; i < st.n_features; ++i) st.w[i] = st.w[i] * alpha;
  st.wscale = 1.0;
  st.w_abs_sum_stale = true;
}

// WeightVector.scale
template <class T>
void wv_scale(StateOf<T>& st, T c) {
  st.wscale = st.wscale * static_cast<double>(c);
  st.sq_norm = st.sq_norm * static_cast<double>(c * c);
  st.l1_norm = st.l1_norm * std::fabs(static_cast<double>(c));
  if (st.wscale < reset_wscale_threshold<T>()) wv_reset_wscale<T>(st);
}

// WeightVector.norm and l1norm (they return the c_type)
template <class T>
T wv_norm(const StateOf<T>& st) {
  return static_cast<T>(std::sqrt(st.sq_norm));
}

template <class T>
T wv_l1norm(const StateOf<T>& st) {
  return static_cast<T>(st.l1_norm);
}

// l1penalty: the truncated gradient of Tsuruoka et al. (2009) on the row's features.
// Cython's max(0.0, v) is `v > 0.0 ? v : 0.0`, its min(0.0, v) `v < 0.0 ? v : 0.0`.
template <class T, class Row>
void l1_penalty(StateOf<T>& st, const Row& row) {
  const double wscale = st.wscale;
  const double u = st.u;
  T* w = st.w;
  T* q = st.q.data();
  st.w_abs_sum_stale = true;
  for (index_t j = 0; j < row.size(); ++j) {
    const index_t idx = row.index(j);
    const double z = static_cast<double>(w[idx]);
    if (wscale * z > 0.0) {
      const double v = static_cast<double>(w[idx]) - ((u + static_cast<double>(q[idx])) / wscale);
      w[idx] = static_cast<T>(v > 0.0 ? v : 0.0);
    } else if (wscale * z < 0.0) {
      const double v = static_cast<double>(w[idx]) + ((u - static_cast<double>(q[idx])) / wscale);
      w[idx] = static_cast<T>(v < 0.0 ? v : 0.0);
    }
    q[idx] = static_cast<T>(static_cast<double>(q[idx]) + wscale * (static_cast<double>(w[idx]) - z));
  }
}

// The validation score scikit-learn's callback computes each epoch: the accuracy, weighted by
// sample_weight, of sign(x . w + intercept) on the validation rows, with the weights as they
// are stored (without their scale, as the callback receives them). The dot product is summed
// in T in feature order (scipy's sparse product does so; BLAS, for dense X, may not), the
// weighted hits with numpy's pairwise sum.
template <class T, class Rows>
double validation_score(StateOf<T>& st, const Rows& rows, const PerceptronData<T>& data,
                        const std::vector<index_t>& val_rows) {
  for (size_t k = 0; k < val_rows.size(); ++k) {
    const index_t s = val_rows[k];
    const auto row = rows.row(s, st.row_scratch.data());
    T acc = T(0);
    for (index_t j = 0; j < row.size(); ++j) acc = acc + row.value(j) * st.w[row.index(j)];
    const double decision = static_cast<double>(acc) + st.intercept;
    const double predicted = decision > 0.0 ? 1.0 : -1.0;
    const double y = data.y_class[s] == st.spec.positive ? 1.0 : -1.0;
    const double weight =
        data.sample_weight != nullptr ? static_cast<double>(data.sample_weight[s]) : 1.0;
    st.score_terms[k] = (predicted == y ? 1.0 : 0.0) * weight;
  }
  return numpy_sum(st.score_terms.data(), static_cast<index_t>(val_rows.size())) /
         data.validation_weight_sum;
}

// ---- the screen: a fast margin test --------------------------------------------------------
//
// For most samples y * p > 0 by far: no loss, no update. The screen establishes that from a
// cheaper estimate s of scikit-learn's dot product s_seq (the sequential sum) and a bound
// |s_seq - s| <= B: p = fl(fl(s * wscale) + intercept) grows with the sum, so if p is on the
// right side of 0 at the far end of [s - B, s + B], it is for s_seq too. Samples the screen
// cannot clear take the reference path. Either way the numbers are the reference's.
//
// Two estimates:
// - from the row itself, summed in another order: any two summation orders of the same n
//   rounded products differ by at most 2 gamma_(n-1) sum |fl(w_j x_j)|, gamma_k = k u / (1 - k u),
//   u = 2^-53 (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., 3.1);
// - from the row's int16 copy, x_j = 2^e (q_j + d_j), |d_j| <= 1/2, |q_j| <= 2^14: with
//   W1 = sum |w_j|, |sum w_j x_j - 2^e sum w_j q_j| <= 2^(e-1) W1; the reference's own rounding
//   (T products, double sums) is at most (u_T + gamma_(n-1) (1 + u_T)) sum |w_j x_j| and the
//   estimate's (u + gamma_(n-1) (1 + u)) 2^e sum |w_j q_j|, both below that times W1 2^(e+14).
//   Underflowing products add at most one smallest subnormal each; the bound adds the smallest
//   normal instead, as arithmetic on subnormals is slow (a microcode assist each).
// An epoch is bound by memory traffic: it reads the samples in shuffled order. When X is read
// more than once, each sample gets a screening record, a third of a float64 row, holding all
// the epoch needs of most samples: the int16 copy of the row and the sample's label, weight
// and validation flag (otherwise three more cache lines per sample).

// Dense rows of at least this many features are screened.
constexpr index_t kScreenMinFeatures = 32;
// Records are made when they take at most this much memory (for 100 features: X of up to
// about 3 GiB in float64).
constexpr index_t kRecordsMaxBytes = index_t(1) << 30;

// A record: this header (scale 0 when the row has no int16 copy), then the n q_j, padded to
// whole cache lines.
struct RecordHeader {
  double scale;  // 2^e
  double sample_weight;
  std::int64_t y_class;
  std::int64_t validation;
};
constexpr index_t kCacheLine = 64;
inline index_t record_bytes(index_t n) {
  return (static_cast<index_t>(sizeof(RecordHeader)) + 2 * n + kCacheLine - 1) / kCacheLine *
         kCacheLine;
}

constexpr double kUnitRoundoff = std::numeric_limits<double>::epsilon() / 2;

// 1.001 * gamma_(n-1) (n u < 1e-3)
inline double gamma_bound(index_t n) { return 1.001 * static_cast<double>(n) * kUnitRoundoff; }

// Whether y * p > 0 holds for every sum in [s - bound, s + bound] (y is +1 or -1). NaN or
// infinity never pass.
template <class T>
bool beyond_margin(double s, double bound, double wscale, double intercept, T y) {
  // widened so that s -+ bound, rounded, still covers the interval
  const double b = bound * (1.0 + 4.0 * kUnitRoundoff) + 2.0 * kUnitRoundoff * std::fabs(s) +
                   std::numeric_limits<double>::min();
  auto p_of = [&](double sum) {
    return static_cast<double>(static_cast<T>(sum * wscale)) + intercept;
  };
  if (y > T(0)) return p_of(s - b) > 0.0;
  return p_of(s + b) < 0.0;
}

// The screen's two sums. Portable versions, with four accumulators the compiler can keep in
// vector registers, and AVX2 ones (no FMA: the bounds hold for fused products too, but need
// not), chosen by the instruction set the CPU engine uses (fusedmlp.cpu_isa(), FUSEDMLP_ISA).

// sum = sum_j fl(w_j x_j) and abs_sum = sum_j |fl(w_j x_j)|, in double, in any order: the
// products are T's, as in the reference.
template <class T>
void dot_and_abs_sum_generic(const T* w, const T* x, index_t n, double& sum, double& abs_sum) {
  double s[4] = {}, a[4] = {};
  index_t j = 0;
  for (; j + 4 <= n; j += 4)
    for (int l = 0; l < 4; ++l) {
      const double p = static_cast<double>(w[j + l] * x[j + l]);
      s[l] += p;
      a[l] += std::fabs(p);
    }
  for (; j < n; ++j) {
    const double p = static_cast<double>(w[j] * x[j]);
    s[0] += p;
    a[0] += std::fabs(p);
  }
  sum = (s[0] + s[1]) + (s[2] + s[3]);
  abs_sum = (a[0] + a[1]) + (a[2] + a[3]);
}

// sum_j fl(w_j q_j) in double, in any order.
template <class T>
double dot_int16_generic(const T* w, const std::int16_t* q, index_t n) {
  double s[4] = {};
  index_t j = 0;
  for (; j + 4 <= n; j += 4)
    for (int l = 0; l < 4; ++l) s[l] += static_cast<double>(w[j + l]) * static_cast<double>(q[j + l]);
  for (; j < n; ++j) s[0] += static_cast<double>(w[j]) * static_cast<double>(q[j]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

#if defined(FUSEDMLP_X86)
// The AVX2 kernels (a namespace of their own: no wide-register code outside one).
namespace screen_isa_avx2 {
// four T as doubles
__attribute__((target("avx2"), always_inline)) inline __m256d load4(const double* p) {
  return _mm256_loadu_pd(p);
}
__attribute__((target("avx2"), always_inline)) inline __m256d load4(const float* p) {
  return _mm256_cvtps_pd(_mm_loadu_ps(p));
}
// four T products, rounded in T, as doubles
__attribute__((target("avx2"), always_inline)) inline __m256d mul4(const double* w,
                                                                  const double* x) {
  return _mm256_mul_pd(_mm256_loadu_pd(w), _mm256_loadu_pd(x));
}
__attribute__((target("avx2"), always_inline)) inline __m256d mul4(const float* w,
                                                                  const float* x) {
  return _mm256_cvtps_pd(_mm_mul_ps(_mm_loadu_ps(w), _mm_loadu_ps(x)));
}
__attribute__((target("avx2"), always_inline)) inline double hsum(__m256d v) {
  const __m128d lo = _mm256_castpd256_pd128(v), hi = _mm256_extractf128_pd(v, 1);
  const __m128d s = _mm_add_pd(lo, hi);
  return _mm_cvtsd_f64(s) + _mm_cvtsd_f64(_mm_unpackhi_pd(s, s));
}

template <class T>
__attribute__((target("avx2"))) void dot_and_abs_sum_avx2(const T* w, const T* x, index_t n,
                                                          double& sum, double& abs_sum) {
  const __m256d no_sign = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, a0 = s0, a1 = s0;
  index_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256d p0 = mul4(w + j, x + j), p1 = mul4(w + j + 4, x + j + 4);
    s0 = _mm256_add_pd(s0, p0);
    s1 = _mm256_add_pd(s1, p1);
    a0 = _mm256_add_pd(a0, _mm256_and_pd(p0, no_sign));
    a1 = _mm256_add_pd(a1, _mm256_and_pd(p1, no_sign));
  }
  double ss = hsum(_mm256_add_pd(s0, s1)), aa = hsum(_mm256_add_pd(a0, a1));
  for (; j < n; ++j) {
    const double p = static_cast<double>(w[j] * x[j]);
    ss += p;
    aa += std::fabs(p);
  }
  sum = ss;
  abs_sum = aa;
}

template <class T>
__attribute__((target("avx2"))) double dot_int16_avx2(const T* w, const std::int16_t* q,
                                                       index_t n) {
  __m256d s[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                  _mm256_setzero_pd()};
  index_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 4; ++k) {
      const __m128i q4 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + j + 4 * k));
      const __m256d x4 = _mm256_cvtepi32_pd(_mm_cvtepi16_epi32(q4));
      s[k] = _mm256_add_pd(s[k], _mm256_mul_pd(load4(w + j + 4 * k), x4));
    }
  for (; j + 4 <= n; j += 4) {
    const __m128i q4 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + j));
    s[0] = _mm256_add_pd(s[0], _mm256_mul_pd(load4(w + j), _mm256_cvtepi32_pd(_mm_cvtepi16_epi32(q4))));
  }
  double ss = hsum(_mm256_add_pd(_mm256_add_pd(s[0], s[1]), _mm256_add_pd(s[2], s[3])));
  for (; j < n; ++j) ss += static_cast<double>(w[j]) * static_cast<double>(q[j]);
  return ss;
}
}  // namespace screen_isa_avx2
#endif

template <class T>
struct ScreenKernels {
  void (*dot_and_abs_sum)(const T*, const T*, index_t, double&, double&);
  double (*dot_int16)(const T*, const std::int16_t*, index_t);
};

template <class T>
ScreenKernels<T> screen_kernels() {
#if defined(FUSEDMLP_X86)
  if (active_isa() != Isa::generic)
    return {&screen_isa_avx2::dot_and_abs_sum_avx2<T>, &screen_isa_avx2::dot_int16_avx2<T>};
#endif
  return {&dot_and_abs_sum_generic<T>, &dot_int16_generic<T>};
}

// Screens a dense row by itself.
template <class T>
bool screen_row(const ScreenKernels<T>& k, const StateOf<T>& st, const T* x, index_t n, T y) {
  if (static_cast<double>(n) * kUnitRoundoff >= 1e-3) return false;
  double s, a;
  k.dot_and_abs_sum(st.w, x, n, s, a);
  return beyond_margin<T>(s, 2.0 * gamma_bound(n) * a, st.wscale, st.intercept, y);
}

// Screens a dense row by its record's int16 copy (scale 2^e, q).
template <class T>
bool screen_record(const ScreenKernels<T>& k, StateOf<T>& st, double scale,
                   const std::int16_t* q, index_t n, T y) {
  if (!(scale > 0.0) || static_cast<double>(n) * kUnitRoundoff >= 1e-3) return false;
  if (st.w_abs_sum_stale) {
    double w1 = 0.0;
    for (index_t j = 0; j < n; ++j) w1 += std::fabs(static_cast<double>(st.w[j]));
    st.w_abs_sum = w1;
    st.w_abs_sum_stale = false;
  }
  const double s = k.dot_int16(st.w, q, n) * scale;
  const double u_t = std::numeric_limits<T>::epsilon() / 2;
  const double rounding = u_t + kUnitRoundoff + 2.0 * gamma_bound(n) * (1.0 + u_t);
  // underflow: a subnormal each, in T and in double (times 2^e), as normals (see above)
  const double underflow = static_cast<double>(n) * (std::numeric_limits<T>::min() +
                                                     std::numeric_limits<double>::min() *
                                                         std::max(1.0, scale));
  const double bound =
      st.w_abs_sum * (1.0 + gamma_bound(n)) * scale * (0.5 + 16384.0 * rounding) + underflow;
  return beyond_margin<T>(s, bound, st.wscale, st.intercept, y);
}

// A row's int16 copy: with m = max |x_j| and m < 2^k, x_j / 2^(k-14) rounded to nearest
// (even) into q; returns 2^(k-14), or 0 (q untouched) for a row of zeros, with a value that is
// not finite, or of a magnitude outside [2^-960, 2^960). all_finite says whether every x_j is.
inline double int16_scale(double m, bool finite) {
  if (!finite || !(m >= 0x1p-960 && m < 0x1p960)) return 0.0;
  std::uint64_t bits;
  std::memcpy(&bits, &m, sizeof bits);
  const int k = static_cast<int>((bits >> 52) & 0x7ff) - 1022;  // m = f 2^k, f in [0.5, 1)
  const std::uint64_t scale_bits = static_cast<std::uint64_t>(k - 14 + 1023) << 52;
  double scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return scale;
}

constexpr double kRoundToInteger = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer

template <class T>
double quantize_row_generic(const T* x, index_t n, std::int16_t* q, bool& all_finite) {
  double m = 0.0, z = 0.0;  // max |x_j|; sum x_j * 0, NaN when an x_j is not finite
  for (index_t j = 0; j < n; ++j) {
    const double v = static_cast<double>(x[j]), a = std::fabs(v);
    m = a > m ? a : m;
    z += v * 0.0;
  }
  all_finite = z == 0.0;
  const double scale = int16_scale(m, all_finite);
  if (scale == 0.0) return 0.0;
  const double inv_scale = 1.0 / scale;  // exact: a power of two
  for (index_t j = 0; j < n; ++j) {
    const double t = static_cast<double>(x[j]) * inv_scale;
    q[j] = static_cast<std::int16_t>(static_cast<std::int32_t>((t + kRoundToInteger) - kRoundToInteger));
  }
  return scale;
}

#if defined(FUSEDMLP_X86)
namespace screen_isa_avx2 {
// The same in AVX2: max |x_j| in four accumulators, a value that is not finite found by its
// bits (exponent all ones), and the conversion's own rounding (cvtpd2dq rounds as MXCSR says:
// to nearest even, which the caller checks).
template <class T>
__attribute__((target("avx2"))) double quantize_row_avx2(const T* x, index_t n, std::int16_t* q,
                                                         bool& all_finite) {
  const __m256i no_sign = _mm256_set1_epi64x(0x7fffffffffffffffLL);
  const __m256i largest = _mm256_set1_epi64x(0x7fefffffffffffffLL);  // DBL_MAX's bits
  __m256d m[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                  _mm256_setzero_pd()};
  __m256i bad = _mm256_setzero_si256();
  index_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 4; ++k) {
      const __m256i a = _mm256_and_si256(_mm256_castpd_si256(load4(x + j + 4 * k)), no_sign);
      bad = _mm256_or_si256(bad, _mm256_cmpgt_epi64(a, largest));
      m[k] = _mm256_max_pd(m[k], _mm256_castsi256_pd(a));
    }
  for (; j + 4 <= n; j += 4) {
    const __m256i a = _mm256_and_si256(_mm256_castpd_si256(load4(x + j)), no_sign);
    bad = _mm256_or_si256(bad, _mm256_cmpgt_epi64(a, largest));
    m[0] = _mm256_max_pd(m[0], _mm256_castsi256_pd(a));
  }
  alignas(32) double ml[4];
  _mm256_store_pd(ml, _mm256_max_pd(_mm256_max_pd(m[0], m[1]), _mm256_max_pd(m[2], m[3])));
  double mx = std::max(std::max(ml[0], ml[1]), std::max(ml[2], ml[3]));
  bool finite = _mm256_testz_si256(bad, bad) != 0;
  for (; j < n; ++j) {
    const double a = std::fabs(static_cast<double>(x[j]));
    finite &= a <= std::numeric_limits<double>::max();
    mx = a > mx ? a : mx;
  }
  all_finite = finite;
  const double scale = int16_scale(mx, finite);
  if (scale == 0.0) return 0.0;
  const __m256d inv_scale = _mm256_set1_pd(1.0 / scale);  // exact: a power of two
  j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m128i a = _mm256_cvtpd_epi32(_mm256_mul_pd(load4(x + j), inv_scale));
    const __m128i b = _mm256_cvtpd_epi32(_mm256_mul_pd(load4(x + j + 4), inv_scale));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + j), _mm_packs_epi32(a, b));
  }
  const double inv = 1.0 / scale;
  for (; j < n; ++j) {
    const double t = static_cast<double>(x[j]) * inv;
    q[j] = static_cast<std::int16_t>(static_cast<std::int32_t>((t + kRoundToInteger) - kRoundToInteger));
  }
  return scale;
}

// Whether this thread's conversions round to nearest even (MXCSR's rounding control is 0).
inline bool rounds_to_nearest() { return (_mm_getcsr() & 0x6000u) == 0; }
}  // namespace screen_isa_avx2
#endif

#if defined(FUSEDMLP_X86)
namespace screen_isa_avx2 {
// Copies a record (whole cache lines, both ends aligned) to memory without reading the lines
// first: the records are read in the epochs, not now.
__attribute__((target("avx2"))) void stream_record_avx2(unsigned char* dst,
                                                        const unsigned char* src, index_t bytes) {
  for (index_t off = 0; off < bytes; off += 32)
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + off),
                        _mm256_load_si256(reinterpret_cast<const __m256i*>(src + off)));
}
}  // namespace screen_isa_avx2
#endif

// The int16 copies of rows [begin, end) into their records, headers zeroed but for the scale
// (fill_record_headers adds the rest). `staging` holds one record, cache-line aligned. Returns
// whether every value was finite.
template <class T>
bool quantize_records(const DenseRows<T>& rows, index_t begin, index_t end,
                      unsigned char* records, unsigned char* staging, T* scratch) {
  const index_t n = rows.n_cols;
  const index_t stride = record_bytes(n);
  double (*quantize_row)(const T*, index_t, std::int16_t*, bool&) = &quantize_row_generic<T>;
  void (*store)(unsigned char*, const unsigned char*, index_t) =
      [](unsigned char* dst, const unsigned char* src, index_t bytes) {
        std::memcpy(dst, src, static_cast<size_t>(bytes));
      };
#if defined(FUSEDMLP_X86)
  if (active_isa() != Isa::generic && screen_isa_avx2::rounds_to_nearest()) {
    quantize_row = &screen_isa_avx2::quantize_row_avx2<T>;
    store = &screen_isa_avx2::stream_record_avx2;
  }
#endif
  std::memset(staging, 0, static_cast<size_t>(stride));  // the header and the padding
  bool all_finite = true;
  for (index_t r = begin; r < end; ++r) {
    bool finite = true;
    const double scale = quantize_row(rows.row(r, scratch).x, n,
                                      reinterpret_cast<std::int16_t*>(staging + sizeof(RecordHeader)),
                                      finite);
    all_finite &= finite;
    std::memcpy(staging + offsetof(RecordHeader, scale), &scale, sizeof scale);
    store(records + r * stride, staging, stride);
  }
#if defined(FUSEDMLP_X86)
  _mm_sfence();  // the streamed stores are visible before anything reads the records
#endif
  return all_finite;
}

// The label, weight and validation flag of samples [begin, end) into their records.
template <class T>
void fill_record_headers(const PerceptronData<T>& data, index_t begin, index_t end,
                         unsigned char* records) {
  const index_t stride = record_bytes(data.x.n_cols);
  for (index_t r = begin; r < end; ++r) {
    RecordHeader h;
    std::memcpy(&h, records + r * stride, sizeof h);
    h.sample_weight =
        data.sample_weight != nullptr ? static_cast<double>(data.sample_weight[r]) : 1.0;
    h.y_class = data.y_class[r];
    h.validation = data.validation != nullptr && data.validation[r];
    std::memcpy(records + r * stride, &h, sizeof h);
  }
}

// Whether every value of rows [begin, end) is finite (the rows that get no records).
template <class Rows, class T>
bool rows_finite(const Rows& rows, index_t begin, index_t end, T* scratch) {
  double z = 0.0;  // sum x * 0: NaN when an x is not finite
  for (index_t r = begin; r < end; ++r) {
    const auto row = rows.row(r, scratch);
    double zl[4] = {};
    index_t j = 0;
    for (; j + 4 <= row.size(); j += 4)
      for (int l = 0; l < 4; ++l) zl[l] += static_cast<double>(row.value(j + l)) * 0.0;
    for (; j < row.size(); ++j) zl[0] += static_cast<double>(row.value(j)) * 0.0;
    z += (zl[0] + zl[1]) + (zl[2] + zl[3]);
  }
  return z == 0.0;
}

// ---- the epoch ---------------------------------------------------------------------------------

// Polls for a stop request: the calling thread asks (StopClock), every thread reads the flag.
struct Interrupt {
  std::atomic<bool>* flag;
  StopClock* clock;  // on the calling thread only
  bool requested() {
    if (clock != nullptr && clock->poll()) flag->store(true, std::memory_order_relaxed);
    return flag->load(std::memory_order_relaxed);
  }
};

constexpr index_t kPollEvery = 1024;  // samples between two looks at the stop flag
// Rows are read in shuffled order: each is fetched from memory this many samples ahead.
constexpr std::int32_t kPrefetchAhead = 16;


// What an epoch reads besides the data.
template <class T>
struct EpochContext {
  const PerceptronData<T>* data;
  const PerceptronOptions* opts;
  const std::vector<index_t>* validation_rows;
  const unsigned char* records = nullptr;  // null: none
};

struct EpochSums {
  double sumloss = 0.0, objective_sum = 0.0;
};

// One pass over the dataset: the body of _plain_sgd's epoch loop. Returns false when
// interrupted. kFast adds the screen and skips the norms nothing reads; the numbers are the
// same.
template <class T, class Rows, bool kFast>
bool sgd_epoch(StateOf<T>& st, const Rows& rows, const EpochContext<T>& ctx, EpochSums& sums,
               Interrupt& interrupt) {
  const PerceptronData<T>& data = *ctx.data;
  const PerceptronOptions& o = *ctx.opts;
  const std::int32_t n = static_cast<std::int32_t>(data.x.n_rows);
  const index_t d = data.x.n_cols;
  const bool l1 = o.penalty == Penalty::l1 || o.penalty == Penalty::elasticnet;
  const bool track_loss = o.verbose || !o.early_stopping;
  const bool track_norms = !kFast || o.penalty != Penalty::none || o.verbose;
  const bool screen = kFast && Rows::Row::kDense && d >= kScreenMinFeatures;
  const bool records = screen && ctx.records != nullptr;
  const index_t record_stride = record_bytes(d);
  const ScreenKernels<T> kernels = screen_kernels<T>();
  const double eta = o.eta0;
  T* scratch = st.row_scratch.data();

  if (o.shuffle) {
    // SequentialDataset.shuffle(seed), as the permutation its swaps make
    for (std::int32_t k = 0; k < n; ++k) st.order_next[k] = st.order[st.shuffle_perm[k]];
    st.order.swap(st.order_next);
  }
  for (std::int32_t i = 0; i < n; ++i) {
    if (i % kPollEvery == 0 && interrupt.requested()) return false;
    if (i + kPrefetchAhead < n) {
      const index_t ahead = st.order[i + kPrefetchAhead];
      if (records) {
        prefetch_bytes(ctx.records + ahead * record_stride, record_stride);
      } else {
        rows.prefetch(ahead);
        __builtin_prefetch(data.y_class + ahead);
        if (data.sample_weight != nullptr) __builtin_prefetch(data.sample_weight + ahead);
        if (data.validation != nullptr) __builtin_prefetch(data.validation + ahead);
      }
    }
    const index_t s = st.order[i];
    std::int64_t y_class;
    T sample_weight;
    RecordHeader record;
    if (records) {
      std::memcpy(&record, ctx.records + s * record_stride, sizeof record);
      if (record.validation) continue;  // not learned from
      y_class = record.y_class;
      sample_weight = static_cast<T>(record.sample_weight);
    } else {
      if (data.validation != nullptr && data.validation[s]) continue;  // not learned from
      y_class = data.y_class[s];
      sample_weight = data.sample_weight != nullptr ? data.sample_weight[s] : T(1);
    }

    const auto row = rows.row(s, scratch);
    const T y = y_class == st.spec.positive ? T(1) : T(-1);
    bool beyond = false;  // certainly y * p > 0: zero loss, zero gradient
    if constexpr (kFast && Rows::Row::kDense) {
      if (records)
        beyond = screen_record<T>(kernels, st, record.scale,
                                  reinterpret_cast<const std::int16_t*>(
                                      ctx.records + s * record_stride + sizeof(RecordHeader)),
                                  d, y);
      else if (screen)
        beyond = screen_row<T>(kernels, st, row.x, d, y);
    }
    const double p = beyond ? 0.0 : static_cast<double>(wv_dot<T>(st, row)) + st.intercept;

    if (track_loss) {
      const double loss = beyond ? 0.0 : hinge_loss(y, p);
      sums.sumloss += loss;
      sums.objective_sum += loss;
      if (o.penalty != Penalty::none) {
        const double norm = static_cast<double>(wv_norm<T>(st));
        sums.objective_sum += o.alpha * ((((1.0 - o.l1_ratio) * 0.5) * (norm * norm)) +
                                         (o.l1_ratio * static_cast<double>(wv_l1norm<T>(st))));
      }
    }
    const T class_weight = static_cast<T>(y > T(0) ? st.spec.weight_pos : st.spec.weight_neg);
    double dloss = beyond ? 0.0 : hinge_gradient(y, p);
    dloss = std::min(std::max(dloss, -kMaxDloss), kMaxDloss);
    double update = -eta * dloss;
    update *= static_cast<double>(class_weight * sample_weight);

    if (o.penalty == Penalty::l2 || o.penalty == Penalty::elasticnet) {
      const double c = 1.0 - (((1.0 - o.l1_ratio) * eta) * o.alpha);
      wv_scale<T>(st, static_cast<T>(c > 0 ? c : 0.0));
    }
    if (update != 0.0) wv_add<T>(st, row, static_cast<T>(update), track_norms);
    if (o.fit_intercept && update != 0.0) st.intercept += update * o.intercept_decay;
    if (l1) {
      st.u += ((o.l1_ratio * eta) * o.alpha);
      l1_penalty<T>(st, row);
    }
    ++st.count;
  }
  return true;
}

// The end of an epoch: the divergence check, the validation score or the training objective,
// the no-improvement rule, the verbose report.
template <class T, class Rows>
void end_epoch(StateOf<T>& st, const Rows& rows, const EpochContext<T>& ctx,
               const EpochSums& sums) {
  const PerceptronData<T>& data = *ctx.data;
  const PerceptronOptions& o = *ctx.opts;
  const std::vector<index_t>& val_rows = *ctx.validation_rows;
  ++st.epoch;
  bool finite = std::isfinite(st.intercept);
  for (index_t i = 0; finite && i < st.n_features; ++i) finite = std::isfinite(st.w[i]);
  if (!finite) {  // scikit-learn raises; the weights keep their scale
    st.diverged = st.done = true;
    return;
  }
  const double train_count = static_cast<double>(
      static_cast<std::uint32_t>(data.x.n_rows - static_cast<index_t>(val_rows.size())));
  const double objective = sums.objective_sum / train_count;
  double score = 0.0;
  if (o.early_stopping) {
    score = validation_score<T>(st, rows, data, val_rows);
    if (o.tol > -std::numeric_limits<double>::infinity() && score < st.best_score + o.tol)
      ++st.no_improvement;
    else
      st.no_improvement = 0;
    if (score > st.best_score) st.best_score = score;
  } else {
    if (o.tol > -std::numeric_limits<double>::infinity() && objective > st.best_objective - o.tol)
      ++st.no_improvement;
    else
      st.no_improvement = 0;
    if (objective < st.best_objective) st.best_objective = objective;
  }
  if (o.verbose) {
    PerceptronEpochReport& r = st.last;
    r.norm = static_cast<double>(wv_norm<T>(st));
    r.nnz = 0;
    for (index_t i = 0; i < st.n_features; ++i) r.nnz += st.w[i] != T(0);
    r.intercept = st.intercept;
    r.count = st.count;
    r.avg_loss = sums.sumloss / train_count;
    r.objective = objective;
    r.score = score;
  }
  if (st.no_improvement >= o.n_iter_no_change) st.converged = st.done = true;
  if (st.epoch >= o.max_iter) st.done = true;
}

// A task's buffers, allocated when it starts and freed when it ends (only the running tasks
// hold them). May throw std::bad_alloc.
template <class T>
void start_task(StateOf<T>& st, const EpochContext<T>& ctx) {
  const PerceptronData<T>& data = *ctx.data;
  const PerceptronOptions& o = *ctx.opts;
  const index_t n = data.x.n_rows, d = data.x.n_cols;
  if (o.penalty == Penalty::l1 || o.penalty == Penalty::elasticnet)
    st.q.assign(static_cast<size_t>(d), T(0));
  st.order.resize(static_cast<size_t>(n));
  for (index_t s = 0; s < n; ++s) st.order[static_cast<size_t>(s)] = static_cast<std::int32_t>(s);
  if (o.shuffle) {
    st.order_next.resize(static_cast<size_t>(n));
    st.shuffle_perm = st.order;
    sequential_dataset_shuffle(st.shuffle_perm.data(), static_cast<std::int32_t>(n), st.spec.seed);
  }
  if (!data.x.sparse && data.x.cs != 1) st.row_scratch.resize(static_cast<size_t>(d));
  st.score_terms.resize(ctx.validation_rows->size());
  st.started = true;
}

template <class T>
void end_task(StateOf<T>& st) {
  if (!st.diverged) wv_reset_wscale<T>(st);  // scikit-learn leaves a diverged fit as it is
  for (auto* v : {&st.order, &st.order_next, &st.shuffle_perm}) std::vector<std::int32_t>().swap(*v);
  std::vector<T>().swap(st.q);
  std::vector<T>().swap(st.row_scratch);
  std::vector<double>().swap(st.score_terms);
}

template <class T, class Rows, bool kFast>
void train_task(StateOf<T>& st, const Rows& rows, const EpochContext<T>& ctx, index_t epochs,
                Interrupt& interrupt) {
  if (!st.started) start_task<T>(st, ctx);
  for (index_t e = 0; e < epochs && !st.done; ++e) {
    EpochSums sums;
    st.in_epoch = true;
    if (!sgd_epoch<T, Rows, kFast>(st, rows, ctx, sums, interrupt)) return;
    st.in_epoch = false;
    end_epoch<T>(st, rows, ctx, sums);
  }
  if (st.done) end_task<T>(st);
}

// Picks the rows' type (dense, CSR with 32- or 64-bit indices) and the path.
template <class T>
void train_task_dispatch(StateOf<T>& st, const EpochContext<T>& ctx, index_t epochs,
                         bool reference, Interrupt& interrupt) {
  const InputMatrix& x = ctx.data->x;
  auto go = [&](const auto& rows) {
    using Rows = std::decay_t<decltype(rows)>;
    if (reference)
      train_task<T, Rows, false>(st, rows, ctx, epochs, interrupt);
    else
      train_task<T, Rows, true>(st, rows, ctx, epochs, interrupt);
  };
  const T* values = static_cast<const T*>(x.data);
  if (!x.sparse)
    go(DenseRows<T>{values, x.rs, x.cs, x.n_cols});
  else if (x.indices32 != nullptr)
    go(SparseRows<T, std::int32_t>{values, x.indices32, x.indptr});
  else
    go(SparseRows<T, std::int64_t>{values, x.indices64, x.indptr});
}

}  // namespace

// ---- the solver --------------------------------------------------------------------------------

template <class T>
PerceptronSolver<T>::PerceptronSolver(const PerceptronData<T>& data, const PerceptronOptions& opts,
                                      const std::vector<PerceptronTaskSpec>& tasks, T* coef,
                                      bool reference, PerceptronRows<T>* rows)
    : data_(data), opts_(opts), coef_(coef), reference_(reference), rows_(rows) {
  if (opts_.penalty == Penalty::l2)
    opts_.l1_ratio = 0.0;
  else if (opts_.penalty == Penalty::l1)
    opts_.l1_ratio = 1.0;
  const index_t n = data_.x.n_rows, d = data_.x.n_cols;
  if (data_.validation != nullptr)
    for (index_t s = 0; s < n; ++s)
      if (data_.validation[s]) validation_rows_.push_back(s);
  for (size_t k = 0; k < tasks.size(); ++k) {
    auto st = std::make_unique<State>();
    st->spec = tasks[k];
    st->w = coef_ + static_cast<index_t>(k) * d;
    st->n_features = d;
    st->intercept = tasks[k].intercept;
    // WeightVector's initial norms (scikit-learn takes them from BLAS dot and asum)
    double sq = 0.0, abs_sum = 0.0;
    for (index_t i = 0; i < d; ++i) {
      sq += static_cast<double>(st->w[i]) * static_cast<double>(st->w[i]);
      abs_sum += std::fabs(static_cast<double>(st->w[i]));
    }
    st->sq_norm = sq;
    st->l1_norm = abs_sum;
    states_.push_back(std::move(st));
  }
}

template <class T>
PerceptronSolver<T>::~PerceptronSolver() = default;

// ---- the rows, read before a fit ---------------------------------------------------------------

template <class T>
bool PerceptronRows<T>::makes_records(const InputMatrix& x, index_t max_iter) {
  // worth it when the rows are read more than once, and screened
  return !x.sparse && x.n_cols >= kScreenMinFeatures && max_iter >= 2 &&
         x.n_rows * record_bytes(x.n_cols) <= kRecordsMaxBytes;
}

template <class T>
PerceptronRows<T>::PerceptronRows(const InputMatrix& x, index_t max_iter, int n_threads)
    : x_(x) {
  const index_t n = x.n_rows, d = x.n_cols;
  const bool records = makes_records(x, max_iter);
  if (records) {
    // not zeroed: every byte read is written first
    capacity_ = static_cast<size_t>(n * record_bytes(d) + kCacheLine);
    storage_.reset(new unsigned char[capacity_]);  // not zeroed: records are written first
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.get());
    records_ = storage_.get() + (kCacheLine - address % kCacheLine) % kCacheLine;
  }
  const DenseRows<T> rows{static_cast<const T*>(x.data), x.rs, x.cs, d};
  // each thread's strided row, staged record and verdict, allocated here: nothing may throw in
  // the team
  n_threads = team_threads(n_threads);
  const size_t scratch_size = x.cs != 1 ? static_cast<size_t>(d) : 0;
  const size_t staging_size = static_cast<size_t>(record_bytes(d) + kCacheLine);
  std::vector<T> scratch(scratch_size * static_cast<size_t>(n_threads) + 1);
  std::vector<unsigned char> staging(records ? staging_size * static_cast<size_t>(n_threads) : 0);
  std::vector<unsigned char> finite(static_cast<size_t>(n_threads), 1);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    const Team team{omp_get_thread_num(), omp_get_num_threads()};
    index_t begin, end;
    team_range(team, n, begin, end);
    T* my_scratch = scratch.data() + scratch_size * static_cast<size_t>(team.tid);
    if (records) {
      unsigned char* my_staging = staging.data() + staging_size * static_cast<size_t>(team.tid);
      const auto address = reinterpret_cast<std::uintptr_t>(my_staging);
      finite[static_cast<size_t>(team.tid)] = quantize_records<T>(
          rows, begin, end, records_,
          my_staging + (kCacheLine - address % kCacheLine) % kCacheLine, my_scratch);
    } else {
      finite[static_cast<size_t>(team.tid)] = rows_finite(rows, begin, end, my_scratch);
    }
  }
  for (unsigned char f : finite) all_finite_ = all_finite_ && f != 0;
}

template <class T>
PerceptronRows<T>::~PerceptronRows() = default;

template <class T>
index_t PerceptronSolver<T>::n_tasks() const {
  return static_cast<index_t>(states_.size());
}

template <class T>
void PerceptronSolver<T>::prepare_records(int n_threads) {
  if (records_ready_) return;
  records_ready_ = true;
  if (reference_ || data_.x.sparse) return;
  if (rows_ == nullptr && PerceptronRows<T>::makes_records(data_.x, opts_.max_iter)) {
    own_rows_ = std::make_unique<PerceptronRows<T>>(data_.x, opts_.max_iter, n_threads);
    rows_ = own_rows_.get();
  }
  if (rows_ == nullptr || rows_->records() == nullptr) return;
  unsigned char* records = rows_->records();
  const index_t n = data_.x.n_rows;
  n_threads = team_threads(n_threads);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    const Team team{omp_get_thread_num(), omp_get_num_threads()};
    index_t begin, end;
    team_range(team, n, begin, end);
    fill_record_headers<T>(data_, begin, end, records);
  }
  records_ = records;
}

template <class T>
bool PerceptronSolver<T>::run(const std::vector<index_t>& tasks, index_t epochs, int n_threads,
                              const StopCheck& should_stop) {
  std::vector<State*> todo;
  for (index_t k : tasks)
    if (!states_[static_cast<size_t>(k)]->done) todo.push_back(states_[static_cast<size_t>(k)].get());
  if (todo.empty() || epochs <= 0) return true;
  const index_t n_todo = static_cast<index_t>(todo.size());
  const int nth =
      team_threads(static_cast<int>(std::max<index_t>(1, std::min<index_t>(n_threads, n_todo))));
  // A data-parallel pass over X, like the BLAS calls in scikit-learn: OpenMP's thread limit
  // (OMP_NUM_THREADS, threadpoolctl), whatever the number of tasks trained at once.
  prepare_records(std::max(n_threads, omp_get_max_threads()));
  EpochContext<T> ctx{&data_, &opts_, &validation_rows_};
  ctx.records = records_;
  std::atomic<bool> stop{false}, out_of_memory{false};
  std::atomic<index_t> next{0}, finished{0};
  StopClock clock(should_stop);

#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    // the calling thread (the team's thread 0) is the one that may call back into Python
    const bool caller = omp_get_thread_num() == 0;
    Interrupt interrupt{&stop, caller ? &clock : nullptr};
    for (index_t i = next++; i < n_todo && !stop.load(std::memory_order_relaxed); i = next++) {
      try {
        train_task_dispatch<T>(*todo[static_cast<size_t>(i)], ctx, epochs, reference_, interrupt);
      } catch (const std::bad_alloc&) {
        out_of_memory = true;
        stop = true;
      }
      ++finished;
    }
    // no task left for the caller: it keeps answering Ctrl-C while the others finish
    while (caller && nth > 1 && finished.load() < n_todo && !stop.load()) {
      if (clock.poll())
        stop.store(true);
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  if (out_of_memory) throw std::bad_alloc();
  return !stop.load();
}

template <class T>
void PerceptronSolver<T>::finish() {
  for (auto& st : states_)
    if (!st->diverged) wv_reset_wscale<T>(*st);
}

template <class T>
void PerceptronSolver<T>::current_weights(T* out) const {
  for (const auto& st : states_) {
    const T alpha = st->diverged ? T(1) : static_cast<T>(st->wscale);  // (wv_reset_wscale's)
    for (index_t i = 0; i < st->n_features; ++i) out[i] = st->w[i] * alpha;
    out += st->n_features;
  }
}

template <class T>
PerceptronTaskStatus PerceptronSolver<T>::status(index_t task) const {
  const State& st = *states_[static_cast<size_t>(task)];
  PerceptronTaskStatus s;
  s.n_iter = st.epoch + (st.in_epoch ? 1 : 0);
  s.done = st.done;
  s.converged = st.converged;
  s.diverged = st.diverged;
  s.intercept = st.intercept;
  s.last = st.last;
  return s;
}

template class PerceptronRows<float>;
template class PerceptronRows<double>;
template class PerceptronSolver<float>;
template class PerceptronSolver<double>;

}  // namespace cpu
}  // namespace fusedmlp
