// The portable GEMM and its epilogues against a float64 loop, built for a non-x86 target
// (tests/test_portable_build.py runs it under qemu-aarch64).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include "cpu/gemm/gemm.h"
using namespace fusedmlp; using namespace fusedmlp::cpu;
int main() {
  std::mt19937 rng(0); std::normal_distribution<double> nd;
  int bad = 0, checked = 0;
  GemmWorkspace ws;
  for (int m : {1, 3, 4, 5, 13, 64, 97}) for (int n : {1, 7, 8, 9, 16, 33, 100}) for (int k : {0, 1, 5, 256, 300}) {
    std::vector<float> a(m * k), b(k * n), c(m * n), bias(n);
    for (auto& v : a) v = nd(rng); for (auto& v : b) v = nd(rng); for (auto& v : bias) v = nd(rng);
    Epilogue<float> ep; ep.kind = EpilogueKind::bias_activation; ep.act = Activation::relu; ep.bias = bias.data();
    for (int layout = 0; layout < 2; ++layout) {
      Operand<float> A = layout == 0 ? Operand<float>{a.data(), k, 1} : Operand<float>{a.data(), 1, m};
      gemm<float>(m, n, k, A, Operand<float>{b.data(), n, 1}, c.data(), n, ep, false, 2, ws);
      for (int i = 0; i < m; ++i) for (int j = 0; j < n; ++j) {
        double s = bias[j];
        for (int p = 0; p < k; ++p) s += (layout == 0 ? a[i * k + p] : a[p * m + i]) * (double)b[p * n + j];
        s = s > 0 ? s : 0;
        ++checked;
        if (std::fabs(s - c[i * n + j]) > 1e-4 * (1 + std::fabs(s)) * (k + 1)) ++bad;
      }
    }
  }
  std::printf("isa %s: %d of %d elements wrong\n", isa_name(active_isa()).c_str(), bad, checked);
  return bad != 0;
}
