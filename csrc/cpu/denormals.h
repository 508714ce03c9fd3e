// Flush-to-zero for float32 compute.
//
// A dead ReLU unit's gradient is zero, so Adam's moments for its weights decay geometrically
// into the subnormal range within a few hundred steps; every multiply-add that touches a
// subnormal then takes a slow microcode path (measured here: California housing epochs went
// from 9 ms to 48 ms). Deep-learning libraries flush subnormals to zero; the float32 engine
// does the same on every thread while it runs. float64 keeps IEEE subnormals: it is the mode
// that reproduces scikit-learn's numbers.
#pragma once

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define FUSEDMLP_HAVE_FTZ 1
#endif

namespace fusedmlp {
namespace cpu {

template <class T>
class FlushDenormals {
 public:
  FlushDenormals() {
#if defined(FUSEDMLP_HAVE_FTZ)
    if (sizeof(T) == 4) {
      saved_ = _mm_getcsr();
      _mm_setcsr(saved_ | 0x8040u);  // FTZ (bit 15) and DAZ (bit 6)
    }
#elif defined(__aarch64__)
    if (sizeof(T) == 4) {
      saved_ = __builtin_aarch64_get_fpcr();
      __builtin_aarch64_set_fpcr(saved_ | (1u << 24));  // FZ
    }
#endif
  }
  ~FlushDenormals() {
#if defined(FUSEDMLP_HAVE_FTZ)
    if (sizeof(T) == 4) _mm_setcsr(saved_);
#elif defined(__aarch64__)
    if (sizeof(T) == 4) __builtin_aarch64_set_fpcr(saved_);
#endif
  }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  unsigned saved_ = 0;
};

}  // namespace cpu
}  // namespace fusedmlp
