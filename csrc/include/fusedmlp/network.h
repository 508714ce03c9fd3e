// The network layout: layer widths and where each layer's weights and biases sit in the one
// flat parameter buffer (W0, b0, W1, b1, ... in layer order; W_l is fan_in x fan_out,
// row-major, so coefs_[l] in Python is a view of it). Gradients and optimizer state share it.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "fusedmlp/activation.h"
#include "fusedmlp/common.h"
#include "fusedmlp/loss.h"

namespace fusedmlp {

struct LayerLayout {
  index_t fan_in;
  index_t fan_out;
  index_t w_offset;  // start of W (fan_in x fan_out) in the flat buffer
  index_t b_offset;  // start of b (fan_out)
};

struct NetworkLayout {
  std::vector<LayerLayout> layers;
  index_t n_params = 0;
  Activation hidden = Activation::relu;
  Loss loss = Loss::squared_error;
  Activation output = Activation::identity;  // the output layer's activation (loss.h: the head)
  LossParams loss_params{};
  double activation_param = 0.0;  // the hidden activation's parameter (activation.h)
  std::vector<double> dropout;    // training's dropout rate of each hidden layer ({}: none)

  NetworkLayout() = default;
  NetworkLayout(const std::vector<index_t>& units, Activation hidden_act, Loss loss_kind)
      : NetworkLayout(units, hidden_act, loss_kind, loss_info(loss_kind).canonical_output) {}
  NetworkLayout(const std::vector<index_t>& units, Activation hidden_act, Loss loss_kind,
                Activation output_act, const LossParams& params = {})
      : hidden(hidden_act), loss(loss_kind), output(output_act), loss_params(params) {
    if (!(params.huber_delta > 0.0)) throw std::invalid_argument("huber_delta must be > 0");
    if (!(params.quantile > 0.0 && params.quantile < 1.0))
      throw std::invalid_argument("quantile must be in (0, 1)");
    check_hidden_activation(hidden);
    check_head(loss, output);
    if (units.size() < 2) throw std::invalid_argument("a network needs at least 2 layers of units");
    for (index_t u : units) {
      if (u <= 0) throw std::invalid_argument("layer widths must be positive, got " + std::to_string(u));
    }
    index_t offset = 0;
    for (size_t l = 0; l + 1 < units.size(); ++l) {
      LayerLayout layer{units[l], units[l + 1], offset, offset + units[l] * units[l + 1]};
      offset = layer.b_offset + layer.fan_out;
      layers.push_back(layer);
    }
    n_params = offset;
    activation_param = activation_info(hidden).param_default;
  }

  // The activation's parameter, checked: leaky_relu's slope >= 0 and elu's alpha > 0 keep
  // the derivative readable from the outputs (a > 0 exactly when z > 0).
  void set_activation_param(double p) {
    if (activation_info(hidden).param[0] == '\0')
      throw std::invalid_argument("'" + activation_name(hidden) + "' has no parameter");
    if (!(hidden == Activation::elu ? p > 0.0 : p >= 0.0) || !(p < 1e300))
      throw std::invalid_argument(std::string(activation_info(hidden).param) + " must be " +
                                  (hidden == Activation::elu ? "> 0" : ">= 0") + " and finite");
    activation_param = p;
  }

  // Dropout rates, one per hidden layer (or one for all), each in [0, 1).
  void set_dropout(const std::vector<double>& rates) {
    const size_t hidden_layers = layers.size() - 1;
    if (rates.size() != 1 && rates.size() != hidden_layers)
      throw std::invalid_argument("dropout needs one rate, or one per hidden layer (" +
                                  std::to_string(hidden_layers) + ")");
    dropout.assign(hidden_layers, rates.size() == 1 ? rates[0] : 0.0);
    for (size_t l = 0; l < hidden_layers; ++l) {
      if (rates.size() != 1) dropout[l] = rates[l];
      if (!(dropout[l] >= 0.0 && dropout[l] < 1.0))
        throw std::invalid_argument("dropout rates must be in [0, 1)");
    }
    bool any = false;
    for (double r : dropout) any = any || r > 0.0;
    if (!any) dropout.clear();
  }
  bool has_dropout() const { return !dropout.empty(); }
  double dropout_rate(size_t hidden_layer) const {
    return hidden_layer < dropout.size() ? dropout[hidden_layer] : 0.0;
  }

  index_t n_layers() const { return static_cast<index_t>(layers.size()); }
  index_t n_inputs() const { return layers.front().fan_in; }
  index_t n_outputs() const { return layers.back().fan_out; }
  index_t max_width() const {
    index_t w = 0;
    for (const auto& l : layers) w = l.fan_out > w ? l.fan_out : w;
    return w;
  }
  // Sum of the widths of every layer after the input: the activations one row needs.
  index_t activation_width() const {
    index_t w = 0;
    for (const auto& l : layers) w += l.fan_out;
    return w;
  }
};

}  // namespace fusedmlp
