// Fused dense layers of the CPU engine (see dense.h).
#include "cpu/dense.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "fusedmlp/activation.h"
#include "fusedmlp/loss.h"

namespace fusedmlp {
namespace cpu {

void team_barrier(const Team& team) {
  if (team.nth > 1) {
#pragma omp barrier
  }
}

namespace {

template <class T>
constexpr ScalarType scalar_type_of() {
  return sizeof(T) == 4 ? ScalarType::f32 : ScalarType::f64;
}

template <class T>
bool reads_in_place(const InputMatrix& x, const index_t* rows) {
  return !x.sparse && rows == nullptr && x.type == scalar_type_of<T>() && x.cs == 1;
}

template <class T, class S>
void gather_dense(const Team& team, const InputMatrix& x, const index_t* rows, index_t first,
                  index_t count, T* dst) {
  const S* data = static_cast<const S*>(x.data);
  const index_t d = x.n_cols;
  index_t i0, i1;
  team_range(team, count, i0, i1);
  // (a gathered row is a cache miss when X is larger than the cache: the row kPrefetchAhead rows
  // on is requested while this one is copied, its first and last element's lines)
  constexpr index_t kPrefetchAhead = 16;
  for (index_t i = i0; i < i1; ++i) {
    const S* src = data + (rows != nullptr ? rows[i] : first + i) * x.rs;
    if (rows != nullptr && i + kPrefetchAhead < i1 && d > 0) {
      const S* next = data + rows[i + kPrefetchAhead] * x.rs;
      __builtin_prefetch(next);
      __builtin_prefetch(next + (d - 1) * x.cs);
    }
    T* out = dst + i * d;
    if (x.cs == 1) {
#pragma omp simd
      for (index_t j = 0; j < d; ++j) out[j] = static_cast<T>(src[j]);
    } else {
      for (index_t j = 0; j < d; ++j) out[j] = static_cast<T>(src[j * x.cs]);
    }
  }
}

// gather_dense from x in its own float type
template <class T>
void gather_dense_any(const Team& team, const InputMatrix& x, const index_t* rows, index_t first,
                      index_t count, T* dst) {
  if (x.type == ScalarType::f32)
    gather_dense<T, float>(team, x, rows, first, count, dst);
  else
    gather_dense<T, double>(team, x, rows, first, count, dst);
}

index_t row_nnz(const InputMatrix& x, index_t r) { return x.indptr[r + 1] - x.indptr[r]; }

template <class T, class Index>
void gather_csr(const InputMatrix& x, const Index* col, const index_t* rows, index_t first,
                index_t count, BatchInput<T>& batch) {
  batch.indptr.resize(static_cast<size_t>(count) + 1);  // within the capacity reserved
  batch.indptr[0] = 0;
  for (index_t i = 0; i < count; ++i)
    batch.indptr[i + 1] = batch.indptr[i] + row_nnz(x, rows != nullptr ? rows[i] : first + i);
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

}  // namespace

template <class T>
void prepare_batches(const InputMatrix& x, const index_t* order, index_t n_order,
                     index_t batch_rows, BatchInput<T>& batch) {
  if (x.sparse) {
    index_t most = 0;
    for (index_t start = 0; start < n_order; start += batch_rows) {
      index_t nnz = 0;
      for (index_t i = start; i < std::min(n_order, start + batch_rows); ++i)
        nnz += row_nnz(x, order != nullptr ? order[i] : i);
      most = std::max(most, nnz);
    }
    batch.indptr.reserve(static_cast<size_t>(batch_rows) + 1);
    batch.indices.reserve(static_cast<size_t>(most));
    batch.values.reserve(static_cast<size_t>(most));
  } else if (!reads_in_place<T>(x, order)) {
    if (batch.dense_storage.size() < static_cast<size_t>(batch_rows * x.n_cols))
      batch.dense_storage.resize(static_cast<size_t>(batch_rows * x.n_cols));
  }
}

template <class T>
void gather_input(const Team& team, const InputMatrix& x, const index_t* rows, index_t first,
                  index_t count, BatchInput<T>& batch) {
  BatchView<T>& v = batch.view;
  if (team.tid == 0) {
    v.rows = count;
    v.cols = x.n_cols;
    v.sparse = x.sparse;
  }
  if (x.sparse) {
    if (team.tid == 0) {
      if (x.indices32 != nullptr)
        gather_csr<T>(x, x.indices32, rows, first, count, batch);
      else
        gather_csr<T>(x, x.indices64, rows, first, count, batch);
      v.indptr = batch.indptr.data();
      v.indices = batch.indices.data();
      v.values = batch.values.data();
    }
    return;
  }
  if (reads_in_place<T>(x, rows)) {
    if (team.tid == 0) {
      v.dense = static_cast<const T*>(x.data) + first * x.rs;
      v.ld = x.rs;
    }
    return;
  }
  T* dst = batch.dense_storage.data();
  gather_dense_any<T>(team, x, rows, first, count, dst);
  if (team.tid == 0) {
    v.dense = dst;
    v.ld = x.n_cols;
  }
}

template <class T>
bool gathers_dense_rows(const InputMatrix& x, const index_t* rows) {
  return !x.sparse && !reads_in_place<T>(x, rows);
}

template <class T>
BatchView<T> gather_dense_rows(const InputMatrix& x, const index_t* rows, index_t count, index_t i0,
                               index_t i1, BatchInput<T>& batch) {
  T* dst = batch.dense_storage.data();
  const Team solo = Team::solo(0);  // (team_range of a team of one: all i1 - i0 rows)
  gather_dense_any<T>(solo, x, rows + i0, 0, i1 - i0, dst + i0 * x.n_cols);
  BatchView<T> v;
  v.rows = count;
  v.cols = x.n_cols;
  v.dense = dst;
  v.ld = x.n_cols;
  return v;
}

template <class T>
BatchView<T> dense_rows(const InputMatrix& x, index_t first, index_t count, T* dst) {
  BatchView<T> v;
  v.rows = count;
  v.cols = x.n_cols;
  if (reads_in_place<T>(x, nullptr)) {
    v.dense = static_cast<const T*>(x.data) + first * x.rs;
    v.ld = x.rs;
    return v;
  }
  gather_dense_any<T>(Team::solo(0), x, nullptr, first, count, dst);  // (a team of one: all rows)
  v.dense = dst;
  v.ld = x.n_cols;
  return v;
}

template <class T>
void gather_rows(const Team& team, const T* src, index_t width, const index_t* rows, index_t count,
                 T* dst) {
  index_t i0, i1;
  team_range(team, count, i0, i1);
  constexpr index_t kAhead = 16;  // (rows requested ahead, as gather_dense does)
  if (width == 1) {  // (targets of one output and sample weights: no copy call per value)
    for (index_t i = i0; i < i1; ++i) {
      if (i + kAhead < i1) __builtin_prefetch(src + rows[i + kAhead]);
      dst[i] = src[rows[i]];
    }
    return;
  }
  for (index_t i = i0; i < i1; ++i) {
    if (i + kAhead < i1) __builtin_prefetch(src + rows[i + kAhead] * width);
    std::memcpy(dst + i * width, src + rows[i] * width, sizeof(T) * static_cast<size_t>(width));
  }
}

// ---- forward ---------------------------------------------------------------------------------

template <class T>
void dense_forward(const Team& team, const T* input, index_t rows, index_t fan_in, index_t ld,
                   const T* w, const T* b, index_t fan_out, Activation act,
                   const HiddenUnits<T>& hidden, T* out, GemmWorkspace& ws, const T* w_packed,
                   int* nonfinite, bool w_packed_finite, bool zero_steps) {
  Epilogue<T> ep;
  ep.kind = EpilogueKind::bias_activation;
  ep.act = act;
  ep.hidden = hidden;
  ep.bias = b;
  ep.a_nonfinite = nonfinite;
  // out (rows x fan_out) = act(input (rows x fan_in) W (fan_in x fan_out) + b)
  gemm_team<T>(team, rows, fan_out, fan_in, Operand<T>{input, ld, 1},
               Operand<T>{w, fan_out, 1, w_packed, w_packed_finite, zero_steps}, out, fan_out, ep,
               false, ws);
}

template <class T>
void dense_forward(const Team& team, const BatchView<T>& input, const T* w, const T* b,
                   index_t fan_out, Activation act, const HiddenUnits<T>& hidden, T* out,
                   GemmWorkspace& ws, const T* w_packed, int* nonfinite, bool w_packed_finite,
                   bool zero_steps) {
  if (!input.sparse) {
    dense_forward<T>(team, input.dense, input.rows, input.cols, input.ld, w, b, fan_out, act,
                     hidden, out, ws, w_packed, nonfinite, w_packed_finite, zero_steps);
    return;
  }
  // CSR input: out[i, :] = act(b + sum_q values[q] * W[indices[q], :]), rows split
  index_t i0, i1;
  team_range(team, input.rows, i0, i1);
  dispatch_hidden_activation(act, [&](auto a_tag) {
    constexpr Activation A = decltype(a_tag)::value;
    for (index_t i = i0; i < i1; ++i) {
      T* o = out + i * fan_out;
      std::memcpy(o, b, sizeof(T) * static_cast<size_t>(fan_out));
      for (index_t q = input.indptr[i]; q < input.indptr[i + 1]; ++q) {
        const T v = input.values[q];
        const T* wr = w + input.indices[q] * fan_out;
#pragma omp simd
        for (index_t j = 0; j < fan_out; ++j) o[j] += v * wr[j];
      }
      if (hidden.pre == nullptr && !hidden.dropout()) {
#pragma omp simd
        for (index_t j = 0; j < fan_out; ++j) o[j] = activate<A>(o[j], hidden.param);
        continue;
      }
      T* z = hidden.pre != nullptr ? hidden.pre + i * hidden.ld_pre : nullptr;
      for (index_t j = 0; j < fan_out; ++j) {
        if (z != nullptr) z[j] = o[j];
        const T a = activate<A>(o[j], hidden.param);
        o[j] = hidden.dropout() ? a * hidden.mask(i, j) : a;
      }
    }
    return 0;
  });
}

template <class T>
void dense_forward_halves(const Team& team, const BatchView<T>& input, index_t split, const T* w,
                          const T* b, index_t fan_out, Activation act,
                          const HiddenUnits<T>& hidden, T* out, T* second, GemmWorkspace& ws) {
  const index_t rows = input.rows, k = input.cols;
  const Epilogue<T> plain;
  auto half_product = [&](const Team& t, int half) {
    const index_t p0 = half == 0 ? 0 : split;
    gemm_team<T>(t, rows, fan_out, half == 0 ? split : k - split,
                 Operand<T>{input.dense + p0, input.ld, 1}, Operand<T>{w + p0 * fan_out, fan_out, 1},
                 half == 0 ? out : second, fan_out, plain, false, ws);
  };
  if (team.nth % 2 == 0) {
    Team half_team(team.tid % (team.nth / 2), team.nth / 2);
    half_team.slot = team.slot;
    half_product(half_team, team.tid / (team.nth / 2));
  } else {
    half_product(team, 0);
    half_product(team, 1);
  }
  team_barrier(team);
  index_t i0, i1;
  team_range(team, rows, i0, i1);
  halves_sum<T>(i0, i1, fan_out, out, second, b, act, hidden);
}

// ---- backward --------------------------------------------------------------------------------

template <class T>
void dense_backward_data(const Team& team, const T* dz, index_t rows, index_t fan_out, const T* w,
                         index_t fan_in, const T* stored, bool stored_is_pre, Activation act,
                         const HiddenUnits<T>& hidden, T* dz_prev, GemmWorkspace& ws,
                         const T* wt) {
  Epilogue<T> ep;
  ep.kind = EpilogueKind::activation_grad;
  ep.act = act;
  ep.hidden = hidden;
  ep.aux_is_pre = stored_is_pre;
  ep.aux = stored;
  ep.ld_aux = fan_in;
  // dz_prev (rows x fan_in) = dz (rows x fan_out) W^T (fan_out x fan_in), times act'(z_prev)
  const Operand<T> b = wt != nullptr ? Operand<T>{wt, fan_in, 1} : Operand<T>{w, 1, fan_out};
  gemm_team<T>(team, rows, fan_in, fan_out, Operand<T>{dz, fan_out, 1}, b, dz_prev, fan_in, ep,
               false, ws);
}

namespace {

// Sparse input: dW[:, j0:j1] (+)= X^T dz and db[j0:j1] (+)= colsum(dz) for this thread's
// columns; threads own disjoint column ranges, so nothing is shared.
template <class T>
void csr_weight_grad_columns(const BatchView<T>& input, const T* dz, index_t fan_out, index_t j0,
                             index_t j1, bool accumulate, T* dw, T* db) {
  const index_t fan_in = input.cols, rows = input.rows;
  if (!accumulate) {
    for (index_t r = 0; r < fan_in; ++r)
      for (index_t j = j0; j < j1; ++j) dw[r * fan_out + j] = T(0);
    for (index_t j = j0; j < j1; ++j) db[j] = T(0);
  }
  for (index_t i = 0; i < rows; ++i) {
    const T* d = dz + i * fan_out;
    for (index_t j = j0; j < j1; ++j) db[j] += d[j];
    for (index_t q = input.indptr[i]; q < input.indptr[i + 1]; ++q) {
      const T v = input.values[q];
      T* o = dw + input.indices[q] * fan_out;
#pragma omp simd
      for (index_t j = j0; j < j1; ++j) o[j] += v * d[j];
    }
  }
}

template <class T>
void step_columns(T* w, const T* g, T* s0, T* s1, index_t n_rows, index_t ld, index_t j0,
                  index_t j1, const OptimizerStep<T>& opt) {
  for (index_t r = 0; r < n_rows; ++r) {
    const index_t o = r * ld;
    for (index_t j = j0; j < j1; ++j) {
      if (opt.solver == Solver::adam)
        adam_step(w[o + j], s0[o + j], s1[o + j], g[o + j], opt.adam);
      else
        sgd_step(w[o + j], s0[o + j], g[o + j], opt.sgd);
    }
  }
}

}  // namespace

template <class T>
void dense_weight_update(const Team& team, const BatchView<T>* input, const T* dense_input,
                         index_t rows, const T* dz, const LayerLayout& layer, T* params,
                         const OptimizerStep<T>& opt, T alpha, T scale, T* scratch,
                         double* sq_rows, GemmWorkspace& ws) {
  T* w = params + layer.w_offset;
  T* b = params + layer.b_offset;
  T* dw = scratch;
  T* db = scratch + layer.fan_in * layer.fan_out;
  T* w_s0 = opt.state_0 + layer.w_offset;
  T* w_s1 = opt.state_1 != nullptr ? opt.state_1 + layer.w_offset : nullptr;
  T* b_s0 = opt.state_0 + layer.b_offset;
  T* b_s1 = opt.state_1 != nullptr ? opt.state_1 + layer.b_offset : nullptr;
  if (input != nullptr && input->sparse) {
    // CSR input: each thread builds and applies the gradient of its own columns
    index_t j0, j1;
    team_range(team, layer.fan_out, j0, j1);
    csr_weight_grad_columns(*input, dz, layer.fan_out, j0, j1, false, dw, db);
    for (index_t r = 0; r < layer.fan_in; ++r)
      for (index_t j = j0; j < j1; ++j) {
        T& g = dw[r * layer.fan_out + j];
        g = l2_grad(g, alpha, w[r * layer.fan_out + j], scale);
      }
    for (index_t j = j0; j < j1; ++j) db[j] *= scale;
    step_columns(w, dw, w_s0, w_s1, layer.fan_in, layer.fan_out, j0, j1, opt);
    step_columns(b, db, b_s0, b_s1, 1, layer.fan_out, j0, j1, opt);
    return;
  }
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
  ep.state_0 = w_s0;
  ep.state_1 = w_s1;
  ep.adam = opt.adam;
  ep.sgd = opt.sgd;
  ep.sq_rows = sq_rows;
  ep.colsum_b = db;
  ep.colsum_scale = scale;
  ep.b_update = b;
  ep.b_state_0 = b_s0;
  ep.b_state_1 = b_s1;
  // W, b -= step((input^T dz + alpha W) * scale, colsum(dz) * scale)
  gemm_team<T>(team, layer.fan_in, layer.fan_out, rows, Operand<T>{x, 1, ld},
               Operand<T>{dz, layer.fan_out, 1}, dw, layer.fan_out, ep, false, ws);
}

template <class T>
void dense_weight_grad_sum(const Team& team, const BatchView<T>* input, const T* dense_input,
                           index_t rows, const T* dz, const LayerLayout& layer, bool accumulate,
                           T* grad, GemmWorkspace& ws) {
  T* dw = grad + layer.w_offset;
  T* db = grad + layer.b_offset;
  if (input != nullptr && input->sparse) {
    index_t j0, j1;
    team_range(team, layer.fan_out, j0, j1);
    csr_weight_grad_columns(*input, dz, layer.fan_out, j0, j1, accumulate, dw, db);
    return;
  }
  const T* x = input != nullptr ? input->dense : dense_input;
  const index_t ld = input != nullptr ? input->ld : layer.fan_in;
  Epilogue<T> ep;
  ep.colsum_b = db;
  // dW (+)= input^T dz; db (+)= colsum(dz)
  gemm_team<T>(team, layer.fan_in, layer.fan_out, rows, Operand<T>{x, 1, ld},
               Operand<T>{dz, layer.fan_out, 1}, dw, layer.fan_out, ep, accumulate, ws);
}

template <class T>
void finish_weight_grad(const Team& team, const LayerLayout& layer, const T* params, T alpha,
                        T scale, T* grad) {
  const T* w = params + layer.w_offset;
  T* dw = grad + layer.w_offset;
  index_t i0, i1;
  team_range(team, layer.fan_in * layer.fan_out, i0, i1);
#pragma omp simd
  for (index_t i = i0; i < i1; ++i) dw[i] = l2_grad(dw[i], alpha, w[i], scale);
  if (team.tid == 0)
    for (index_t j = 0; j < layer.fan_out; ++j) grad[layer.b_offset + j] *= scale;
}

// ---- output layer ----------------------------------------------------------------------------

template <class T>
double output_loss_grad(const Team& team, const NetworkLayout& layout, T* z, const T* y,
                        const T* sample_weight, T* delta, index_t rows, index_t n_out) {
  index_t i0, i1;
  team_range(team, rows, i0, i1);
  return dispatch_head(layout.loss, layout.output, [&](auto l_tag, auto a_tag) {
    constexpr Loss L = decltype(l_tag)::value;
    constexpr Activation A = decltype(a_tag)::value;
    const bool weighted = sample_weight != nullptr;
    double total = 0.0;
    for (index_t i = i0; i < i1; ++i)
      total += output_loss_grad_row<L, A, T>(z + i * n_out, y + i * n_out,
                                             weighted ? sample_weight[i] : T(1), weighted,
                                             delta + i * n_out, n_out, layout.loss_params);
    return total;
  });
}

template <class T>
void output_loss_grad_chunks(const Team& team, const NetworkLayout& layout, T* z, const T* y,
                             const T* sample_weight, T* delta, index_t rows, index_t n_out,
                             double* chunk_loss) {
  const Team solo = Team::solo(team.slot);
  index_t c0, c1;
  team_range(team, loss_chunks(rows), c0, c1);
  for (index_t c = c0; c < c1; ++c) {
    const index_t r0 = c * kLossRows, n = std::min(kLossRows, rows - r0);
    chunk_loss[c] = output_loss_grad<T>(solo, layout, z + r0 * n_out, y + r0 * n_out,
                                        sample_weight != nullptr ? sample_weight + r0 : nullptr,
                                        delta + r0 * n_out, n, n_out);
  }
}

template <class T>
void output_activation(const Team& team, const NetworkLayout& layout, const T* z, double* out,
                       index_t rows, index_t n_out) {
  index_t i0, i1;
  team_range(team, rows, i0, i1);
  for (index_t i = i0 * n_out; i < i1 * n_out; ++i) out[i] = static_cast<double>(z[i]);
  dispatch_output(layout.loss, layout.output, [&](auto a_tag) {
    constexpr Activation A = decltype(a_tag)::value;
    for (index_t i = i0; i < i1; ++i) output_activation_row<A, double>(out + i * n_out, n_out);
    return 0;
  });
}

template <class T>
bool output_labels(const Team& team, const T* z, std::intptr_t* labels, index_t rows,
                   index_t n_out) {
  index_t i0, i1;
  team_range(team, rows, i0, i1);
  bool any_nonfinite = false;
  std::vector<double> out;  // (a row's softmax, where it is run)
  for (index_t i = i0; i < i1; ++i) {
    const T* zi = z + i * n_out;
    index_t best = 0;
    bool finite = std::isfinite(zi[0]);
    for (index_t k = 1; k < n_out; ++k) {
      finite = finite && std::isfinite(zi[k]);
      if (zi[k] > zi[best]) best = k;
    }
    // (the softmax's own differences: z[k] - max in float64)
    bool clear = finite;
    const double top = static_cast<double>(zi[best]);
    for (index_t k = 0; k < best && clear; ++k)
      clear = static_cast<double>(zi[k]) - top <= -kLabelGap;
    if (!clear) {
      out.assign(zi, zi + n_out);
      output_activation_row<Activation::softmax, double>(out.data(), n_out);
      best = 0;
      for (index_t k = 1; k < n_out && !std::isnan(out[best]); ++k)
        if (std::isnan(out[k]) || out[k] > out[best]) best = k;
      for (index_t k = 0; k < n_out; ++k) any_nonfinite = any_nonfinite || !std::isfinite(out[k]);
    }
    labels[i] = static_cast<std::intptr_t>(best);
  }
  return any_nonfinite;
}

// ---- parameters ------------------------------------------------------------------------------

index_t weight_sq_chunks(const NetworkLayout& layout) {
  index_t n = 0;
  for (const auto& layer : layout.layers) n += layer_sq_chunks(layer);
  return n;
}

template <class T>
void weights_sq_chunks(const Team& team, const NetworkLayout& layout, const T* params,
                       double* chunk_sq) {
  for (const auto& layer : layout.layers) {
    const T* w = params + layer.w_offset;
    const index_t count = layer.fan_in * layer.fan_out;
    const index_t n_chunks = layer_sq_chunks(layer);
    index_t c0, c1;
    team_range(team, n_chunks, c0, c1);
    for (index_t c = c0; c < c1; ++c) {
      const index_t i1 = std::min(count, (c + 1) * kSqChunk);
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (index_t i = c * kSqChunk; i < i1; ++i)
        s += static_cast<double>(w[i]) * static_cast<double>(w[i]);
      chunk_sq[c] = s;
    }
    chunk_sq += n_chunks;
  }
}

template <class T>
void weight_rows_sq(const Team& team, const LayerLayout& layer, const T* params, double* sq_rows) {
  const T* w = params + layer.w_offset;
  index_t r0, r1;
  team_range(team, layer.fan_in, r0, r1);
  for (index_t r = r0; r < r1; ++r) {
    const T* row = w + r * layer.fan_out;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (index_t j = 0; j < layer.fan_out; ++j)
      s += static_cast<double>(row[j]) * static_cast<double>(row[j]);
    sq_rows[r] = s;
  }
}

#define FUSEDMLP_INSTANTIATE(T)                                                                    \
  template void prepare_batches<T>(const InputMatrix&, const index_t*, index_t, index_t,            \
                                   BatchInput<T>&);                                                 \
  template void gather_input<T>(const Team&, const InputMatrix&, const index_t*, index_t, index_t,  \
                                BatchInput<T>&);                                                    \
  template void gather_rows<T>(const Team&, const T*, index_t, const index_t*, index_t, T*);       \
  template BatchView<T> dense_rows<T>(const InputMatrix&, index_t, index_t, T*);                  \
  template bool gathers_dense_rows<T>(const InputMatrix&, const index_t*);                        \
  template BatchView<T> gather_dense_rows<T>(const InputMatrix&, const index_t*, index_t, index_t, \
                                             index_t, BatchInput<T>&);                            \
  template void dense_forward<T>(const Team&, const BatchView<T>&, const T*, const T*, index_t,    \
                                 Activation, const HiddenUnits<T>&, T*, GemmWorkspace&, const T*,   \
                                 int*, bool, bool);                                                \
  template void dense_forward<T>(const Team&, const T*, index_t, index_t, index_t, const T*,       \
                                 const T*, index_t, Activation, const HiddenUnits<T>&, T*,          \
                                 GemmWorkspace&, const T*, int*, bool, bool);                      \
  template void dense_forward_halves<T>(const Team&, const BatchView<T>&, index_t, const T*,       \
                                        const T*, index_t, Activation, const HiddenUnits<T>&, T*,   \
                                        T*, GemmWorkspace&);                                        \
  template void dense_backward_data<T>(const Team&, const T*, index_t, index_t, const T*, index_t, \
                                       const T*, bool, Activation, const HiddenUnits<T>&, T*,       \
                                       GemmWorkspace&, const T*);                                   \
  template void dense_weight_update<T>(const Team&, const BatchView<T>*, const T*, index_t,        \
                                       const T*, const LayerLayout&, T*, const OptimizerStep<T>&,   \
                                       T, T, T*, double*, GemmWorkspace&);                          \
  template void dense_weight_grad_sum<T>(const Team&, const BatchView<T>*, const T*, index_t,      \
                                         const T*, const LayerLayout&, bool, T*, GemmWorkspace&);   \
  template void finish_weight_grad<T>(const Team&, const LayerLayout&, const T*, T, T, T*);        \
  template double output_loss_grad<T>(const Team&, const NetworkLayout&, T*, const T*, const T*,  \
                                      T*, index_t, index_t);                                        \
  template void output_activation<T>(const Team&, const NetworkLayout&, const T*, double*, index_t, \
                                     index_t);                                                      \
  template bool output_labels<T>(const Team&, const T*, std::intptr_t*, index_t, index_t);         \
  template void output_loss_grad_chunks<T>(const Team&, const NetworkLayout&, T*, const T*,        \
                                           const T*, T*, index_t, index_t, double*);              \
  template void weights_sq_chunks<T>(const Team&, const NetworkLayout&, const T*, double*);       \
  template void weight_rows_sq<T>(const Team&, const LayerLayout&, const T*, double*);
FUSEDMLP_INSTANTIATE(float)
FUSEDMLP_INSTANTIATE(double)
#undef FUSEDMLP_INSTANTIATE

}  // namespace cpu
}  // namespace fusedmlp
