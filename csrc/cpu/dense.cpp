// Fused dense layers of the CPU engine (see dense.h).
#include "cpu/dense.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "fusedmlp/activation.h"
#include "fusedmlp/loss.h"

namespace fusedmlp {
namespace cpu {

namespace {

// Elementwise passes below this size run on the calling thread only.
constexpr index_t kParallelElements = 1 << 15;

int threads_for(index_t elements, int n_threads) {
  return elements >= kParallelElements ? std::max(1, n_threads) : 1;
}

template <class T, class S>
void copy_row(const S* src, index_t cs, index_t n, T* dst) {
  if (cs == 1) {
#pragma omp simd
    for (index_t j = 0; j < n; ++j) dst[j] = static_cast<T>(src[j]);
  } else {
    for (index_t j = 0; j < n; ++j) dst[j] = static_cast<T>(src[j * cs]);
  }
}

template <class T, class S>
void gather_dense(const InputMatrix& x, const index_t* rows, index_t first, index_t count,
                  T* dst, int n_threads) {
  const S* data = static_cast<const S*>(x.data);
  const index_t d = x.n_cols;
  const int nt = threads_for(count * d, n_threads);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (index_t i = 0; i < count; ++i) {
    const index_t r = rows != nullptr ? rows[i] : first + i;
    copy_row<T, S>(data + r * x.rs, x.cs, d, dst + i * d);
  }
}

template <class T, class Index>
void gather_csr(const InputMatrix& x, const Index* col, const index_t* rows, index_t first,
                index_t count, BatchInput<T>& batch) {
  batch.indptr.resize(static_cast<size_t>(count) + 1);
  batch.indptr[0] = 0;
  for (index_t i = 0; i < count; ++i) {
    const index_t r = rows != nullptr ? rows[i] : first + i;
    batch.indptr[i + 1] = batch.indptr[i] + (x.indptr[r + 1] - x.indptr[r]);
  }
  const index_t nnz = batch.indptr[count];
  batch.indices.resize(static_cast<size_t>(nnz));
  batch.values.resize(static_cast<size_t>(nnz));
  for (index_t i = 0; i < count; ++i) {
    const index_t r = rows != nullptr ? rows[i] : first + i;
    const index_t s = x.indptr[r], e = x.indptr[r + 1], o = batch.indptr[i];
    for (index_t q = s; q < e; ++q) {
      batch.indices[o + q - s] = static_cast<index_t>(col[q]);
      batch.values[o + q - s] = x.type == ScalarType::f32
                                    ? static_cast<T>(static_cast<const float*>(x.data)[q])
                                    : static_cast<T>(static_cast<const double*>(x.data)[q]);
    }
  }
}

template <class T>
constexpr ScalarType scalar_type_of() {
  return sizeof(T) == 4 ? ScalarType::f32 : ScalarType::f64;
}

}  // namespace

template <class T>
void gather_input(const InputMatrix& x, const index_t* rows, index_t first, index_t count,
                  BatchInput<T>& batch, int n_threads) {
  batch.rows = count;
  batch.cols = x.n_cols;
  batch.sparse = x.sparse;
  if (x.sparse) {
    if (x.indices32 != nullptr)
      gather_csr<T>(x, x.indices32, rows, first, count, batch);
    else
      gather_csr<T>(x, x.indices64, rows, first, count, batch);
    return;
  }
  if (rows == nullptr && x.type == scalar_type_of<T>() && x.cs == 1) {
    batch.dense = static_cast<const T*>(x.data) + first * x.rs;  // read in place
    batch.ld = x.rs;
    return;
  }
  batch.dense_storage.resize(static_cast<size_t>(count * x.n_cols));
  if (x.type == ScalarType::f32)
    gather_dense<T, float>(x, rows, first, count, batch.dense_storage.data(), n_threads);
  else
    gather_dense<T, double>(x, rows, first, count, batch.dense_storage.data(), n_threads);
  batch.dense = batch.dense_storage.data();
  batch.ld = x.n_cols;
}

// ---- forward ---------------------------------------------------------------------------------

template <class T>
void dense_forward(const T* input, index_t rows, index_t fan_in, index_t ld, const T* w,
                   const T* b, index_t fan_out, Activation act, T* out, int n_threads,
                   GemmWorkspace& ws) {
  Epilogue<T> ep;
  ep.kind = EpilogueKind::bias_activation;
  ep.act = act;
  ep.bias = b;
  // out (rows x fan_out) = act(input (rows x fan_in) W (fan_in x fan_out) + b)
  gemm<T>(rows, fan_out, fan_in, Operand<T>{input, ld, 1}, Operand<T>{w, fan_out, 1}, out, fan_out,
          ep, false, n_threads, ws);
}

template <class T>
void dense_forward(const BatchInput<T>& input, const T* w, const T* b, index_t fan_out,
                   Activation act, T* out, int n_threads, GemmWorkspace& ws) {
  if (!input.sparse) {
    dense_forward<T>(input.dense, input.rows, input.cols, input.ld, w, b, fan_out, act, out,
                     n_threads, ws);
    return;
  }
  // CSR input: out[i, :] = act(b + sum_q values[q] * W[indices[q], :])
  const index_t rows = input.rows;
  const int nt = threads_for(rows * fan_out, n_threads);
  dispatch_hidden_activation(act, [&](auto a_tag) {
    constexpr Activation A = decltype(a_tag)::value;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (index_t i = 0; i < rows; ++i) {
      T* o = out + i * fan_out;
      std::memcpy(o, b, sizeof(T) * static_cast<size_t>(fan_out));
      for (index_t q = input.indptr[i]; q < input.indptr[i + 1]; ++q) {
        const T v = input.values[q];
        const T* wr = w + input.indices[q] * fan_out;
#pragma omp simd
        for (index_t j = 0; j < fan_out; ++j) o[j] += v * wr[j];
      }
#pragma omp simd
      for (index_t j = 0; j < fan_out; ++j) o[j] = activate<A>(o[j]);
    }
  });
}

// ---- backward --------------------------------------------------------------------------------

template <class T>
void dense_weight_grad(const T* input, index_t rows, index_t fan_in, index_t ld, const T* dz,
                       index_t fan_out, const T* w, T alpha, T scale, bool accumulate,
                       bool finish, T* dw, T* db, int n_threads, GemmWorkspace& ws) {
  if (finish && accumulate)
    throw std::invalid_argument("dense_weight_grad: finish the accumulated sums separately");
  Epilogue<T> ep;
  if (finish) {
    ep.kind = EpilogueKind::weight_grad;
    ep.aux = w;
    ep.ld_aux = fan_out;
    ep.alpha = alpha;
    ep.scale = scale;
  }
  ep.colsum_b = db;
  ep.colsum_scale = finish ? scale : T(1);
  // dW (fan_in x fan_out) = input^T (fan_in x rows) dz (rows x fan_out); db = colsum(dz)
  gemm<T>(fan_in, fan_out, rows, Operand<T>{input, 1, ld}, Operand<T>{dz, fan_out, 1}, dw,
          fan_out, ep, accumulate, n_threads, ws);
}

template <class T>
void dense_weight_grad(const BatchInput<T>& input, const T* dz, index_t fan_out, const T* w,
                       T alpha, T scale, bool accumulate, bool finish, T* dw, T* db,
                       int n_threads, GemmWorkspace& ws) {
  if (!input.sparse) {
    dense_weight_grad<T>(input.dense, input.rows, input.cols, input.ld, dz, fan_out, w, alpha, scale,
                         accumulate, finish, dw, db, n_threads, ws);
    return;
  }
  if (finish && accumulate)
    throw std::invalid_argument("dense_weight_grad: finish the accumulated sums separately");
  // CSR input: dW[col, :] += value * dz[i, :]; threads own disjoint column ranges of dW.
  const index_t fan_in = input.cols, rows = input.rows;
  const int nt = threads_for(fan_in * fan_out, n_threads);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    const index_t j0 = fan_out * tid / nth, j1 = fan_out * (tid + 1) / nth;
    if (!accumulate)
      for (index_t r = 0; r < fan_in; ++r)
        for (index_t j = j0; j < j1; ++j) dw[r * fan_out + j] = T(0);
    for (index_t j = j0; j < j1; ++j) {
      T s = T(0);
      for (index_t i = 0; i < rows; ++i) s += dz[i * fan_out + j];
      db[j] = finish ? s * scale : (accumulate ? db[j] + s : s);
    }
    for (index_t i = 0; i < rows; ++i) {
      const T* d = dz + i * fan_out;
      for (index_t q = input.indptr[i]; q < input.indptr[i + 1]; ++q) {
        const T v = input.values[q];
        T* o = dw + input.indices[q] * fan_out;
#pragma omp simd
        for (index_t j = j0; j < j1; ++j) o[j] += v * d[j];
      }
    }
    if (finish)
      for (index_t r = 0; r < fan_in; ++r) {
        T* o = dw + r * fan_out;
        const T* wr = w + r * fan_out;
#pragma omp simd
        for (index_t j = j0; j < j1; ++j) o[j] = (o[j] + alpha * wr[j]) * scale;
      }
  }
}

template <class T>
void dense_backward_data(const T* dz, index_t rows, index_t fan_out, const T* w, index_t fan_in,
                         const T* a_prev, Activation act, T* dz_prev, int n_threads,
                         GemmWorkspace& ws) {
  Epilogue<T> ep;
  ep.kind = EpilogueKind::activation_grad;
  ep.act = act;
  ep.aux = a_prev;
  ep.ld_aux = fan_in;
  // dz_prev (rows x fan_in) = dz (rows x fan_out) W^T (fan_out x fan_in), times act'(a_prev)
  gemm<T>(rows, fan_in, fan_out, Operand<T>{dz, fan_out, 1}, Operand<T>{w, 1, fan_out}, dz_prev,
          fan_in, ep, false, n_threads, ws);
}

template <class T>
void finish_weight_grad(T* dw, T* db, const T* w, index_t fan_in, index_t fan_out, T alpha,
                        T scale, int n_threads) {
  const index_t n = fan_in * fan_out;
  const int nt = threads_for(n, n_threads);
#pragma omp parallel for simd num_threads(nt) if (nt > 1)
  for (index_t i = 0; i < n; ++i) dw[i] = (dw[i] + alpha * w[i]) * scale;
  for (index_t j = 0; j < fan_out; ++j) db[j] *= scale;
}

// ---- output layer ----------------------------------------------------------------------------

template <class T>
double output_loss_grad(Loss loss, T* z, const T* y, const T* sample_weight, T* delta,
                        index_t rows, index_t n_out) {
  return dispatch_loss(loss, [&](auto l_tag) {
    constexpr Loss L = decltype(l_tag)::value;
    const bool weighted = sample_weight != nullptr;
    double total = 0.0;
    for (index_t i = 0; i < rows; ++i)
      total += output_loss_grad_row<L, T>(z + i * n_out, y + i * n_out,
                                          weighted ? sample_weight[i] : T(1), weighted,
                                          delta + i * n_out, n_out);
    return total;
  });
}

template <class T>
void output_activation(Loss loss, T* z, index_t rows, index_t n_out) {
  dispatch_loss(loss, [&](auto l_tag) {
    constexpr Loss L = decltype(l_tag)::value;
    for (index_t i = 0; i < rows; ++i) output_activation_row<L, T>(z + i * n_out, n_out);
    return 0;
  });
}

// ---- parameters ------------------------------------------------------------------------------

template <class T>
double weights_sq_norm(const NetworkLayout& layout, const T* params, int n_threads) {
  double total = 0.0;
  for (const auto& layer : layout.layers) {
    const T* w = params + layer.w_offset;
    const index_t n = layer.fan_in * layer.fan_out;
    const int nt = threads_for(n, n_threads);
    double s = 0.0;
#pragma omp parallel for simd num_threads(nt) reduction(+ : s) if (nt > 1)
    for (index_t i = 0; i < n; ++i) s += static_cast<double>(w[i]) * static_cast<double>(w[i]);
    total += s;
  }
  return total;
}

template <class T>
double optimizer_update(T* params, const T* grad, index_t offset, index_t n,
                        const OptimizerStep<T>& opt, bool want_norm, int n_threads) {
  const int nt = threads_for(n, n_threads);
  T* p = params + offset;
  const T* g = grad + offset;
  T* s0 = opt.state_0 + offset;
  double sq = 0.0;
  if (opt.solver == Solver::adam) {
    T* s1 = opt.state_1 + offset;
    const AdamStep<T> step = opt.adam;
#pragma omp parallel for simd num_threads(nt) reduction(+ : sq) if (nt > 1)
    for (index_t i = 0; i < n; ++i) {
      adam_step(p[i], s0[i], s1[i], g[i], step);
      sq += static_cast<double>(p[i]) * static_cast<double>(p[i]);
    }
  } else {
    const SgdStep<T> step = opt.sgd;
#pragma omp parallel for simd num_threads(nt) reduction(+ : sq) if (nt > 1)
    for (index_t i = 0; i < n; ++i) {
      sgd_step(p[i], s0[i], g[i], step);
      sq += static_cast<double>(p[i]) * static_cast<double>(p[i]);
    }
  }
  return want_norm ? sq : 0.0;
}

template <class T>
void dense_weight_update(const BatchInput<T>* input, const T* dense_input, index_t rows,
                         const T* dz, const LayerLayout& layer, T* params,
                         const OptimizerStep<T>& opt, T alpha, T scale, T* scratch,
                         double* sq_norm, int n_threads, GemmWorkspace& ws) {
  T* w = params + layer.w_offset;
  T* dw = scratch;
  T* db = scratch + layer.fan_in * layer.fan_out;
  const index_t n_w = layer.fan_in * layer.fan_out;
  if (input != nullptr && (input->sparse || input->dense == nullptr)) {
    // CSR input: the gradient is built in scratch, then one update pass
    dense_weight_grad<T>(*input, dz, layer.fan_out, w, alpha, scale, false, true, dw, db,
                         n_threads, ws);
    OptimizerStep<T> shifted = opt;
    shifted.state_0 = opt.state_0 + layer.w_offset;
    shifted.state_1 = opt.state_1 != nullptr ? opt.state_1 + layer.w_offset : nullptr;
    *sq_norm += optimizer_update<T>(w, dw, 0, n_w, shifted, true, n_threads);
  } else {
    const T* x = input != nullptr ? input->dense : dense_input;
    const index_t ld = input != nullptr ? input->ld : layer.fan_in;
    Epilogue<T> ep;
    ep.kind = opt.solver == Solver::adam ? EpilogueKind::weight_update_adam
                                         : EpilogueKind::weight_update_sgd;
    ep.aux = w;
    ep.w_update = w;
    ep.ld_aux = layer.fan_out;
    ep.alpha = alpha;
    ep.scale = scale;
    ep.state_0 = opt.state_0 + layer.w_offset;
    ep.state_1 = opt.state_1 != nullptr ? opt.state_1 + layer.w_offset : nullptr;
    ep.adam = opt.adam;
    ep.sgd = opt.sgd;
    ep.sq_norm = sq_norm;
    ep.colsum_b = db;
    ep.colsum_scale = scale;
    // W -= step((input^T dz + alpha W) * scale); db = colsum(dz) * scale
    gemm<T>(layer.fan_in, layer.fan_out, rows, Operand<T>{x, 1, ld},
            Operand<T>{dz, layer.fan_out, 1}, dw, layer.fan_out, ep, false, n_threads, ws);
  }
  // biases: a pass over fan_out elements, outside the L2 norm
  OptimizerStep<T> shifted = opt;
  shifted.state_0 = opt.state_0 + layer.b_offset;
  shifted.state_1 = opt.state_1 != nullptr ? opt.state_1 + layer.b_offset : nullptr;
  optimizer_update<T>(params + layer.b_offset, db, 0, layer.fan_out, shifted, false, 1);
}

#define FUSEDMLP_INSTANTIATE(T)                                                                  \
  template void gather_input<T>(const InputMatrix&, const index_t*, index_t, index_t,            \
                                BatchInput<T>&, int);                                            \
  template void dense_forward<T>(const BatchInput<T>&, const T*, const T*, index_t, Activation,  \
                                 T*, int, GemmWorkspace&);                                       \
  template void dense_forward<T>(const T*, index_t, index_t, index_t, const T*, const T*,        \
                                 index_t, Activation, T*, int, GemmWorkspace&);                  \
  template void dense_weight_grad<T>(const BatchInput<T>&, const T*, index_t, const T*, T, T,    \
                                     bool, bool, T*, T*, int, GemmWorkspace&);                   \
  template void dense_weight_grad<T>(const T*, index_t, index_t, index_t, const T*, index_t,     \
                                     const T*, T, T, bool, bool, T*, T*, int, GemmWorkspace&);   \
  template void finish_weight_grad<T>(T*, T*, const T*, index_t, index_t, T, T, int);            \
  template void dense_backward_data<T>(const T*, index_t, index_t, const T*, index_t, const T*,  \
                                       Activation, T*, int, GemmWorkspace&);                     \
  template double output_loss_grad<T>(Loss, T*, const T*, const T*, T*, index_t, index_t);       \
  template void output_activation<T>(Loss, T*, index_t, index_t);                                \
  template double weights_sq_norm<T>(const NetworkLayout&, const T*, int);                       \
  template double optimizer_update<T>(T*, const T*, index_t, index_t, const OptimizerStep<T>&,   \
                                      bool, int);                                                \
  template void dense_weight_update<T>(const BatchInput<T>*, const T*, index_t, const T*,        \
                                       const LayerLayout&, T*, const OptimizerStep<T>&, T, T, T*, \
                                       double*, int, GemmWorkspace&);
FUSEDMLP_INSTANTIATE(float)
FUSEDMLP_INSTANTIATE(double)
#undef FUSEDMLP_INSTANTIATE

}  // namespace cpu
}  // namespace fusedmlp
