// The CPU trainer (see trainer.h). Python never loops over mini-batches: this file does.
#include "cpu/trainer.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "fusedmlp/loss.h"

namespace fusedmlp {
namespace cpu {

namespace {

// Rows per chunk for the whole-data passes (prediction, L-BFGS): large enough to keep the
// GEMMs efficient, small enough to bound the activation memory.
index_t chunk_rows(const NetworkLayout& layout, index_t n_rows) {
  const index_t per_row = layout.activation_width() + layout.max_width() * 2 + layout.n_inputs();
  index_t rows = (index_t(8) << 20) / std::max<index_t>(per_row, 1);  // ~8M elements
  rows = std::clamp<index_t>(rows, 64, 4096);
  return std::min(rows, std::max<index_t>(n_rows, 1));
}

class StopClock {
 public:
  explicit StopClock(const StopCheck& check) : check_(check), last_(clock::now()) {}
  bool poll() {
    if (!check_) return false;
    const auto now = clock::now();
    if (now - last_ < std::chrono::milliseconds(20)) return false;
    last_ = now;
    return check_();
  }

 private:
  using clock = std::chrono::steady_clock;
  const StopCheck& check_;
  clock::time_point last_;
};

template <class T>
void gather_rows(const T* src, index_t width, const index_t* rows, index_t first, index_t count,
                 T* dst) {
  for (index_t i = 0; i < count; ++i) {
    const index_t r = rows != nullptr ? rows[i] : first + i;
    std::memcpy(dst + i * width, src + r * width, sizeof(T) * static_cast<size_t>(width));
  }
}

}  // namespace

template <class T>
Trainer<T>::Trainer(NetworkLayout layout, int n_threads)
    : layout_(std::move(layout)), n_threads_(std::max(1, n_threads)) {
  if (layout_.layers.empty()) throw std::invalid_argument("Trainer: empty network");
  if (layout_.hidden != Activation::identity && layout_.hidden != Activation::logistic &&
      layout_.hidden != Activation::tanh && layout_.hidden != Activation::relu)
    throw std::invalid_argument("Trainer: unsupported hidden activation");
}

template <class T>
void Trainer<T>::ensure_rows(index_t rows) {
  if (rows <= capacity_rows_) return;
  act_offsets_.clear();
  index_t offset = 0;
  for (const auto& layer : layout_.layers) {
    act_offsets_.push_back(offset);
    offset += rows * layer.fan_out;
  }
  acts_.assign(static_cast<size_t>(offset), T(0));
  const size_t widest = static_cast<size_t>(rows * layout_.max_width());
  delta_[0].assign(widest, T(0));
  delta_[1].assign(widest, T(0));
  y_batch_.assign(static_cast<size_t>(rows * layout_.n_outputs()), T(0));
  w_batch_.assign(static_cast<size_t>(rows), T(0));
  capacity_rows_ = rows;
}

template <class T>
void Trainer<T>::forward(const BatchInput<T>& input, const T* params, index_t rows) {
  const size_t n_layers = layout_.layers.size();
  for (size_t l = 0; l < n_layers; ++l) {
    const LayerLayout& layer = layout_.layers[l];
    // The output layer's activation is applied together with its loss (loss.h).
    const Activation act = (l + 1 == n_layers) ? Activation::identity : layout_.hidden;
    const T* w = params + layer.w_offset;
    const T* b = params + layer.b_offset;
    if (l == 0)
      dense_forward<T>(input, w, b, layer.fan_out, act, out(0), n_threads_, ws_);
    else
      dense_forward<T>(out(l - 1), rows, layer.fan_in, layer.fan_in, w, b, layer.fan_out, act,
                       out(l), n_threads_, ws_);
  }
}

template <class T>
void Trainer<T>::backward(const BatchInput<T>& input, const T* params, index_t rows, T alpha,
                          T scale, bool accumulate, bool finish, T* grad) {
  // On entry delta_[0] holds dZ of the output layer.
  int cur = 0;
  for (size_t l = layout_.layers.size(); l-- > 0;) {
    const LayerLayout& layer = layout_.layers[l];
    const T* w = params + layer.w_offset;
    const T* dz = delta_[cur].data();
    T* dw = grad + layer.w_offset;
    T* db = grad + layer.b_offset;
    if (l == 0) {
      dense_weight_grad<T>(input, dz, layer.fan_out, w, alpha, scale, accumulate, finish, dw, db,
                           n_threads_, ws_);
    } else {
      dense_weight_grad<T>(out(l - 1), rows, layer.fan_in, layer.fan_in, dz, layer.fan_out, w,
                           alpha, scale, accumulate, finish, dw, db, n_threads_, ws_);
      dense_backward_data<T>(dz, rows, layer.fan_out, w, layer.fan_in, out(l - 1),
                             layout_.hidden, delta_[1 - cur].data(), n_threads_, ws_);
      cur = 1 - cur;
    }
  }
}

template <class T>
double Trainer<T>::backward_update(const BatchInput<T>& input, T* params, index_t rows, T alpha,
                                   T scale, const OptimizerStep<T>& opt) {
  // On entry delta_[0] holds dZ of the output layer. Each layer's dZ for the layer below is
  // formed from its weights before they are updated.
  double sq = 0.0;
  int cur = 0;
  for (size_t l = layout_.layers.size(); l-- > 0;) {
    const LayerLayout& layer = layout_.layers[l];
    const T* dz = delta_[cur].data();
    if (l > 0)
      dense_backward_data<T>(dz, rows, layer.fan_out, params + layer.w_offset, layer.fan_in,
                             out(l - 1), layout_.hidden, delta_[1 - cur].data(), n_threads_, ws_);
    dense_weight_update<T>(l == 0 ? &input : nullptr, l == 0 ? nullptr : out(l - 1), rows, dz,
                           layer, params, opt, alpha, scale, grad_.data() + layer.w_offset, &sq,
                           n_threads_, ws_);
    cur = 1 - cur;
  }
  return sq;
}

template <class T>
EpochResult Trainer<T>::run_epoch(const TrainingData<T>& data, const index_t* order,
                                  index_t n_order, T* params, OptimizerState<T>& state,
                                  const EpochOptions& opts, const StopCheck& should_stop) {
  if (opts.batch_size < 1) throw std::invalid_argument("run_epoch: batch_size must be >= 1");
  const index_t batch_size = std::min(opts.batch_size, std::max<index_t>(n_order, 1));
  ensure_rows(batch_size);
  grad_.resize(static_cast<size_t>(layout_.n_params));
  const index_t n_out = layout_.n_outputs();
  const Loss loss = layout_.loss;
  const T alpha = static_cast<T>(opts.alpha);

  EpochResult result;
  StopClock stop(should_stop);
  OptimizerStep<T> opt;
  opt.solver = opts.solver;
  if (opts.solver == Solver::sgd) {
    opt.sgd = SgdStep<T>{static_cast<T>(opts.learning_rate), static_cast<T>(opts.momentum),
                         opts.nesterov};
    opt.state_0 = state.velocity;
  } else {
    opt.state_0 = state.m;
    opt.state_1 = state.v;
  }
  // ||W||^2 of the weights each batch starts from: computed once, then carried by the fused
  // updates.
  double sq = weights_sq_norm<T>(layout_, params, n_threads_);
  for (index_t start = 0; start < n_order; start += batch_size) {
    if (stop.poll()) {
      result.interrupted = true;
      break;
    }
    const index_t rows = std::min(batch_size, n_order - start);
    const index_t* idx = order + start;
    gather_input<T>(data.x, idx, 0, rows, batch_, n_threads_);
    gather_rows<T>(data.y, n_out, idx, 0, rows, y_batch_.data());
    const T* sw = nullptr;
    double sw_sum = static_cast<double>(rows);
    if (data.sample_weight != nullptr) {
      gather_rows<T>(data.sample_weight, 1, idx, 0, rows, w_batch_.data());
      sw = w_batch_.data();
      T s = T(0);
      for (index_t i = 0; i < rows; ++i) s += sw[i];
      sw_sum = static_cast<double>(s);
    }

    forward(batch_, params, rows);
    T* z_out = out(layout_.layers.size() - 1);
    const double row_loss =
        output_loss_grad<T>(loss, z_out, y_batch_.data(), sw, delta_[0].data(), rows, n_out);
    const double batch_loss = dispatch_loss(loss, [&](auto l_tag) {
      return row_loss / loss_denominator<decltype(l_tag)::value>(sw_sum, n_out);
    }) + 0.5 * opts.alpha * sq / sw_sum;

    if (opts.solver == Solver::adam) {
      state.t += 1;
      opt.adam = AdamStep<T>{static_cast<T>(opts.beta_1),
                             static_cast<T>(1.0 - opts.beta_1),
                             static_cast<T>(opts.beta_2),
                             static_cast<T>(1.0 - opts.beta_2),
                             static_cast<T>(adam_lr_t(opts.learning_rate, opts.beta_1,
                                                      opts.beta_2, state.t)),
                             static_cast<T>(opts.epsilon)};
    }
    sq = backward_update(batch_, params, rows, alpha, static_cast<T>(1.0 / sw_sum), opt);
    result.accumulated_loss += batch_loss * static_cast<double>(rows);
    result.samples_seen += rows;
  }
  return result;
}

template <class T>
double Trainer<T>::loss_grad(const TrainingData<T>& data, const T* params, double alpha, T* grad,
                             const StopCheck& should_stop) {
  const index_t n = data.x.n_rows;
  const index_t chunk = chunk_rows(layout_, n);
  ensure_rows(chunk);
  const index_t n_out = layout_.n_outputs();
  StopClock stop(should_stop);

  double row_loss = 0.0, sw_sum = 0.0;
  for (index_t start = 0; start < n; start += chunk) {
    if (stop.poll()) throw std::runtime_error("interrupted");
    const index_t rows = std::min(chunk, n - start);
    gather_input<T>(data.x, nullptr, start, rows, batch_, n_threads_);
    forward(batch_, params, rows);
    const T* sw = data.sample_weight != nullptr ? data.sample_weight + start : nullptr;
    row_loss += output_loss_grad<T>(layout_.loss, out(layout_.layers.size() - 1),
                                    data.y + start * n_out, sw, delta_[0].data(), rows, n_out);
    backward(batch_, params, rows, T(0), T(1), start > 0, false, grad);
  }
  if (data.sample_weight != nullptr) {
    T s = T(0);
    for (index_t i = 0; i < n; ++i) s += data.sample_weight[i];
    sw_sum = static_cast<double>(s);
  } else {
    sw_sum = static_cast<double>(n);
  }
  const T scale = static_cast<T>(1.0 / sw_sum);
  for (const auto& layer : layout_.layers)
    finish_weight_grad<T>(grad + layer.w_offset, grad + layer.b_offset, params + layer.w_offset,
                          layer.fan_in, layer.fan_out, static_cast<T>(alpha), scale, n_threads_);
  const double sq = weights_sq_norm<T>(layout_, params, n_threads_);
  return dispatch_loss(layout_.loss, [&](auto l_tag) {
           return row_loss / loss_denominator<decltype(l_tag)::value>(sw_sum, n_out);
         }) +
         0.5 * alpha * sq / sw_sum;
}

template <class T>
void Trainer<T>::predict(const InputMatrix& x, const T* params, double* result) {
  const index_t n = x.n_rows;
  const index_t chunk = chunk_rows(layout_, n);
  ensure_rows(chunk);
  const index_t n_out = layout_.n_outputs();
  const size_t last = layout_.layers.size() - 1;
  for (index_t start = 0; start < n; start += chunk) {
    const index_t rows = std::min(chunk, n - start);
    gather_input<T>(x, nullptr, start, rows, batch_, n_threads_);
    forward(batch_, params, rows);
    // The output activation runs in float64 whatever the compute type, so probabilities
    // keep their float64 resolution (a float32 logistic rounds to exactly 1 beyond z = 17).
    double* dst = result + start * n_out;
    const T* z = out(last);
    for (index_t i = 0; i < rows * n_out; ++i) dst[i] = static_cast<double>(z[i]);
    output_activation<double>(layout_.loss, dst, rows, n_out);
  }
}

template class Trainer<float>;
template class Trainer<double>;

}  // namespace cpu
}  // namespace fusedmlp
