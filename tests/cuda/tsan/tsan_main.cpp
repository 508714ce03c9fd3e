// Runs the CUDA engine's kernels on the simulator, as the trainer launches them, for
// ThreadSanitizer: "race" runs a kernel with a deliberately missing __syncthreads() instead,
// which TSan must report (the check that the check works).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cuda/trainer.cu"

using namespace fusedmlp;
using namespace fusedmlp::cuda;

namespace {

// A tiled sum with the second barrier of each step removed: the next step's stores race with
// the current step's loads.
__global__ void racy_tile_sum(const float* x, float* out, int n) {
  __shared__ float tile[64];
  float acc = 0.0f;
  for (int base = 0; base < n; base += 64) {
    tile[threadIdx.x] = base + static_cast<int>(threadIdx.x) < n ? x[base + threadIdx.x] : 0.0f;
    __syncthreads();
    acc += tile[(threadIdx.x + 1) % 64];
    // missing: __syncthreads();
  }
  atomicAdd(out, acc);
}

int race_demo() {
  DeviceBuffer<float> x(256), out(1);
  std::vector<float> host(256, 1.0f);
  FUSEDMLP_CUDA_CHECK(cudaMemcpy(x.get(), host.data(), 256 * sizeof(float), cudaMemcpyHostToDevice));
  FUSEDMLP_CUDA_CHECK(cudaMemset(out.get(), 0, sizeof(float)));
  launch(racy_tile_sum, dim3(1), dim3(64), 0, nullptr, static_cast<const float*>(x.get()), out.get(), 256);
  return 0;
}

template <class T>
int gemms() {
  std::mt19937 rng(1);
  std::normal_distribution<double> normal;
  const index_t m = 70, n = 65, k = 33;
  std::vector<T> a(m * k), b(k * n), c(m * n), bias(n), aux(m * n), colsum(n);
  for (auto* v : {&a, &b, &aux}) for (auto& e : *v) e = static_cast<T>(normal(rng));
  for (auto& e : bias) e = static_cast<T>(normal(rng));
  for (int splits : {1, 3})  // unsplit, and k split among 3 blocks per tile with the reduction
    for (int epi = 0; epi < 4; ++epi)
      test_gemm<T>(m, n, k, a.data(), k, 1, b.data(), n, 1, c.data(), epi, Activation::relu, bias.data(),
                   aux.data(), T(0.1), T(0.5), epi == 2 ? colsum.data() : nullptr, false, splits);
  return 0;
}

template <class T>
int training(std::vector<index_t> units, Loss loss, Activation act = Activation::tanh,
             const std::vector<double>& dropout = {}) {
  const index_t rows = 50, d = units.front(), n_out = units.back();
  NetworkLayout layout(units, act, loss);
  if (!dropout.empty()) layout.set_dropout(dropout);
  Trainer<T> trainer(layout);
  std::mt19937 rng(2);
  std::normal_distribution<double> normal;
  std::vector<T> x(rows * d), y(rows * n_out, T(0)), w(rows, T(1)), p(layout.n_params);
  for (auto& e : x) e = static_cast<T>(normal(rng));
  for (index_t r = 0; r < rows; ++r) y[r * n_out + r % n_out] = T(1);
  for (auto& e : p) e = static_cast<T>(0.2 * normal(rng));
  MatrixView view;
  view.data = x.data();
  view.f32 = sizeof(T) == 4;
  view.rows = rows;
  view.cols = d;
  view.rs = d;
  view.cs = 1;
  trainer.load_training_data(view, y.data(), w.data());
  std::vector<index_t> order(rows);
  for (index_t i = 0; i < rows; ++i) order[i] = (i * 7) % rows;
  for (Solver solver : {Solver::adam, Solver::sgd}) {
    std::vector<T> s0(layout.n_params, T(0)), s1(layout.n_params, T(0));
    OptimizerState<T> st;
    st.m = s0.data();
    st.v = s1.data();
    st.velocity = s0.data();
    EpochOptions o;
    o.solver = solver;
    o.batch_size = 16;
    o.learning_rate = 0.01;
    o.dropout_seed = 5;
    trainer.run_epoch(order.data(), rows, p.data(), st, o, StopCheck());
  }
  std::vector<T> g(layout.n_params);
  const double l = trainer.loss_grad(p.data(), 1e-3, g.data());
  std::vector<double> out(rows * n_out);
  trainer.predict(view, p.data(), out.data(), false);
  x[3] = std::numeric_limits<T>::infinity();
  const bool finite = all_finite(view);  // the simulated device reads host memory in place
  view.on_device = true;
  return std::isfinite(l) && !finite && !all_finite(view) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "race") == 0) return race_demo();
  int status = gemms<float>() + gemms<double>();
  status += training<float>({5, 7, 3}, Loss::log_loss);               // fused narrow forward
  status += training<float>({20, 70, 2}, Loss::binary_log_loss);      // GEMM forward
  status += training<double>({4, 130, 1}, Loss::squared_error);
  status += training<float>({64, 70, 2}, Loss::log_loss);           // split-k (the first layer's k)
  // stored pre-activations and dropout masks, fused forward and GEMMs
  status += training<float>({5, 7, 6, 3}, Loss::log_loss, Activation::gelu, {0.3, 0.2});
  status += training<double>({20, 70, 2}, Loss::binary_log_loss, Activation::silu, {0.25});
  std::printf("tsan harness %s\n", status == 0 ? "ok" : "failed");
  return status;
}
