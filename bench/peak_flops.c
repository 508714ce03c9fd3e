/* The machine's float32 multiply-add peak: the limit every GFLOP/s figure of bench/ is a
 * fraction of.
 *
 *   gcc -O2 -march=native -fopenmp bench/peak_flops.c -o /tmp/peak_flops
 *   OMP_NUM_THREADS=1 /tmp/peak_flops; OMP_NUM_THREADS=2 /tmp/peak_flops
 *
 * (-mavx2 -mfma instead of -march=native: the AVX2 peak of an AVX-512 CPU.) Each thread runs
 * 12 independent chains of vector multiply-adds held in registers (enough to cover the FMA
 * latency on both pipes of any x86-64 core of the last decade); the best of 7 runs of ITERS
 * steps is printed. Nothing is read from memory inside the loop.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __AVX512F__
typedef __m512 vec;
#define WIDTH 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ISA "AVX-512"
static float hsum(vec v) { return _mm512_reduce_add_ps(v); }
#else
typedef __m256 vec;
#define WIDTH 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ISA "AVX2"
static float hsum(vec v) {
  float t[8];
  _mm256_storeu_ps(t, v);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

#define STEP(a) a = FMA(a, b, c)

int main(int argc, char** argv) {
  const long iters = argc > 1 ? atol(argv[1]) : 200000000L;
  double best = 0.0;
  float sink = 0.0f;
  for (int rep = 0; rep < 7; ++rep) {
    const double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
    {
      const vec b = SET1(1.0000001f), c = SET1(1e-7f);
      vec a0 = SET1(0), a1 = SET1(1), a2 = SET1(2), a3 = SET1(3), a4 = SET1(4), a5 = SET1(5);
      vec a6 = SET1(6), a7 = SET1(7), a8 = SET1(8), a9 = SET1(9), a10 = SET1(10), a11 = SET1(11);
      for (long it = 0; it < iters; ++it) {
        STEP(a0); STEP(a1); STEP(a2); STEP(a3); STEP(a4); STEP(a5);
        STEP(a6); STEP(a7); STEP(a8); STEP(a9); STEP(a10); STEP(a11);
        /* (keeps the chains in registers and the loop from being folded) */
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5),
                         "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
      }
      sink += hsum(a0) + hsum(a1) + hsum(a2) + hsum(a3) + hsum(a4) + hsum(a5) + hsum(a6) +
              hsum(a7) + hsum(a8) + hsum(a9) + hsum(a10) + hsum(a11);
    }
    const double t = omp_get_wtime() - t0;
    const double gflops = 2.0 * WIDTH * 12 * (double)iters * omp_get_max_threads() / t / 1e9;
    if (gflops > best) best = gflops;
  }
  printf("%s, %d thread(s): %.1f GFLOP/s float32 multiply-add peak (best of 7)%s\n", ISA,
         omp_get_max_threads(), best, sink == 1234.5f ? " " : "");
  return 0;
}
