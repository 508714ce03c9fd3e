// What every binding shares: conversion of Python arguments to the engines' views (the input
// matrix, dense float32/float64 with any strides or CSR, checked so no index can reach outside
// its arrays; contiguous arrays), and the poll for Ctrl-C from inside GIL-free loops.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/dense.h"
#include "fusedmlp/network.h"
#include "fusedmlp/training.h"

namespace fusedmlp {
namespace bindings {

namespace py = pybind11;
using cpu::InputMatrix;
using cpu::ScalarType;

template <class T>
inline const char* type_name() {
  if constexpr (std::is_integral_v<T>) return sizeof(T) == 4 ? "int32" : "int64";
  return sizeof(T) == 4 ? "float32" : "float64";
}

template <class T>
inline bool has_type(const py::array& a) {
  return a.dtype().equal(py::dtype::of<T>());
}

template <class T>
inline T* contiguous_ptr(const py::array& a, const char* name, index_t size, bool writable) {
  if (!has_type<T>(a))
    throw py::type_error(std::string(name) + " must be a " + type_name<T>() + " array, got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  if (a.size() != size)
    throw py::value_error(std::string(name) + " has " + std::to_string(a.size()) +
                          " elements, expected " + std::to_string(size));
  if (writable && !a.writeable()) throw py::value_error(std::string(name) + " must be writable");
  return static_cast<T*>(const_cast<void*>(a.data()));
}

// Keeps the arrays behind an InputMatrix alive for the duration of a call.
struct InputHolder {
  InputMatrix m;
  std::vector<py::array> keep;
};

// A dense float32/float64 2-D array with any strides, or a scipy CSR matrix (int64 indptr,
// int32/int64 indices) as passed by the Python layer after validation.
inline InputHolder to_input(const py::object& x, index_t n_features) {
  InputHolder h;
  if (py::isinstance<py::array>(x)) {
    py::array a = py::reinterpret_borrow<py::array>(x);
    if (a.ndim() != 2) throw py::value_error("X must be 2-dimensional");
    const auto isz = static_cast<index_t>(a.itemsize());
    if (has_type<float>(a))
      h.m.type = ScalarType::f32;
    else if (has_type<double>(a))
      h.m.type = ScalarType::f64;
    else
      throw py::type_error("X must be float32 or float64, got " + std::string(py::str(a.dtype())));
    if (a.strides(0) % isz != 0 || a.strides(1) % isz != 0)
      throw py::value_error("X has strides that are not a multiple of its item size");
    h.m.n_rows = a.shape(0);
    h.m.n_cols = a.shape(1);
    h.m.data = a.data();
    h.m.rs = a.strides(0) / isz;
    h.m.cs = a.strides(1) / isz;
    h.keep.push_back(a);
  } else {
    if (!py::hasattr(x, "indptr") || py::str(x.attr("format")).cast<std::string>() != "csr")
      throw py::type_error("X must be a numpy array or a scipy CSR matrix");
    py::tuple shape = x.attr("shape");
    py::array data = x.attr("data"), indices = x.attr("indices"), indptr = x.attr("indptr");
    h.m.sparse = true;
    h.m.n_rows = shape[0].cast<index_t>();
    h.m.n_cols = shape[1].cast<index_t>();
    if (h.m.n_rows < 0 || h.m.n_cols < 0) throw py::value_error("sparse X has a negative shape");
    if (has_type<float>(data))
      h.m.type = ScalarType::f32;
    else if (has_type<double>(data))
      h.m.type = ScalarType::f64;
    else
      throw py::type_error("sparse X must hold float32 or float64 values");
    if (!(data.flags() & py::array::c_style) || !(indices.flags() & py::array::c_style))
      throw py::value_error("sparse X arrays must be C-contiguous");
    h.m.data = data.data();
    h.m.indptr = contiguous_ptr<std::int64_t>(indptr, "X.indptr", h.m.n_rows + 1, false);
    if (has_type<std::int32_t>(indices))
      h.m.indices32 = static_cast<const std::int32_t*>(indices.data());
    else if (has_type<std::int64_t>(indices))
      h.m.indices64 = static_cast<const std::int64_t*>(indices.data());
    else
      throw py::type_error("sparse X indices must be int32 or int64");
    const index_t nnz = h.m.indptr[h.m.n_rows];
    if (h.m.indptr[0] != 0 || nnz > static_cast<index_t>(data.size()) ||
        nnz > static_cast<index_t>(indices.size()))
      throw py::value_error("sparse X is not a valid CSR matrix");
    // the engines index rows and weights with these: every one must be in range
    for (index_t i = 0; i < h.m.n_rows; ++i)
      if (h.m.indptr[i + 1] < h.m.indptr[i]) throw py::value_error("sparse X has decreasing row pointers");
    for (index_t k = 0; k < nnz; ++k) {
      const index_t j = h.m.indices32 != nullptr ? h.m.indices32[k] : h.m.indices64[k];
      if (j < 0 || j >= h.m.n_cols) throw py::value_error("sparse X has a column index out of range");
    }
    h.keep.insert(h.keep.end(), {data, indices, indptr});
  }
  if (h.m.n_cols != n_features)
    throw py::value_error("X has " + std::to_string(h.m.n_cols) + " features, the network expects " +
                          std::to_string(n_features));
  return h;
}

inline void parse_option(const py::handle& value, Solver& out) {
  const std::string solver = value.cast<std::string>();
  if (solver != "sgd" && solver != "adam")
    throw py::value_error("unknown stochastic solver '" + solver + "'");
  out = solver == "sgd" ? Solver::sgd : Solver::adam;
}

template <class V>
inline void parse_option(const py::handle& value, V& out) {
  out = value.cast<V>();
}

// The network a trainer is built for: an empty output activation means the loss's canonical one.
// `options` holds, by name, any of LossParams' fields, the hidden activation's parameter (its
// registry name, e.g. negative_slope) and "dropout" (one rate, or one per hidden layer); what is
// absent keeps its default.
inline NetworkLayout make_layout(const std::vector<index_t>& units, const std::string& activation,
                                 const std::string& loss, const std::string& out_activation,
                                 const py::dict& options) {
  const Loss l = loss_from_name(loss);
  const Activation out = out_activation.empty() ? loss_info(l).canonical_output
                                                : activation_from_name(out_activation);
  LossParams loss_params;
  py::ssize_t known = 0;
#define FUSEDMLP_PARSE_ROW(name, value)                 \
  if (options.contains(#name)) {                         \
    loss_params.name = options[#name].cast<double>();    \
    ++known;                                            \
  }
  FUSEDMLP_LOSS_PARAMS(FUSEDMLP_PARSE_ROW)
#undef FUSEDMLP_PARSE_ROW
  NetworkLayout layout(units, activation_from_name(activation), l, out, loss_params);
  const char* act_param = activation_info(layout.hidden).param;
  if (act_param[0] != '\0' && options.contains(act_param)) {
    layout.set_activation_param(options[act_param].cast<double>());
    ++known;
  }
  if (options.contains("dropout")) {
    layout.set_dropout(options["dropout"].cast<std::vector<double>>());
    ++known;
  }
  if (known != static_cast<py::ssize_t>(options.size()))
    throw py::key_error("options has a key that is neither a loss parameter, the activation's "
                        "parameter nor 'dropout'");
  return layout;
}

// An epoch's options and the optimizer's state, from the dicts the estimators pass
// (_optimizers.py: `hyper` and `arrays()`); Adam's step count lives in a one-element int64 array
// that finish() writes back, also after an interrupted epoch.
template <class T>
struct EpochArgs {
  EpochOptions opts;
  OptimizerState<T> state;
  py::array t;
  py::array rates, losses;  // keep the per-batch arrays alive for the call

  // The epoch's batch count (the batch size is clamped to the order's length, as the engines do).
  index_t n_batches(index_t n_order) const {
    const index_t bs = std::min(opts.batch_size, std::max<index_t>(n_order, 1));
    return (n_order + bs - 1) / bs;
  }

  EpochArgs(const py::dict& hyper, const py::dict& opt, index_t n_params, index_t n_order) {
#define FUSEDMLP_PARSE_ROW(type, name, value, in_graph)                                  \
  if (!hyper.contains(#name)) throw py::key_error("the epoch options lack '" #name "'"); \
  parse_option(hyper[#name], opts.name);
    FUSEDMLP_EPOCH_OPTIONS(FUSEDMLP_PARSE_ROW)
#undef FUSEDMLP_PARSE_ROW
    if (opts.batch_size < 1) throw py::value_error("batch_size must be >= 1");
    // optional: one learning rate per batch (float64, finite, >= 0)
    if (hyper.contains("learning_rates") && !hyper["learning_rates"].is_none()) {
      if (!py::isinstance<py::array>(hyper["learning_rates"]))
        throw py::type_error("learning_rates must be a numpy array");
      rates = hyper["learning_rates"].cast<py::array>();
      if (rates.ndim() != 1) throw py::value_error("learning_rates must be 1-dimensional");
      const double* r = contiguous_ptr<double>(rates, "learning_rates", n_batches(n_order), false);
      for (index_t b = 0; b < n_batches(n_order); ++b)
        if (!(r[b] >= 0.0) || !std::isfinite(r[b]))
          throw py::value_error("learning_rates must be finite and >= 0");
      opts.batch_learning_rates = r;
    }
    // optional output: each batch's loss (float64, one per batch, writable)
    if (hyper.contains("batch_losses") && !hyper["batch_losses"].is_none()) {
      // (a numpy array: a list would be converted into a copy the caller never sees)
      if (!py::isinstance<py::array>(hyper["batch_losses"]))
        throw py::type_error("batch_losses must be a numpy array");
      losses = hyper["batch_losses"].cast<py::array>();
      if (losses.ndim() != 1) throw py::value_error("batch_losses must be 1-dimensional");
      opts.batch_losses = contiguous_ptr<double>(losses, "batch_losses", n_batches(n_order), true);
    }
    if (opts.solver == Solver::sgd) {
      state.velocity = contiguous_ptr<T>(opt["velocity"], "velocity", n_params, true);
    } else {
      state.m = contiguous_ptr<T>(opt["m"], "m", n_params, true);
      state.v = contiguous_ptr<T>(opt["v"], "v", n_params, true);
      t = opt["t"];
      state.t = *contiguous_ptr<std::int64_t>(t, "t", 1, true);
    }
  }

  void finish() {
    if (opts.solver == Solver::adam) *static_cast<std::int64_t*>(t.mutable_data()) = state.t;
  }
};

// The epoch's row order: int64, C-contiguous, every index a row of X.
inline const index_t* row_order(const py::array& order, index_t n_rows) {
  const index_t n = static_cast<index_t>(order.size());
  const auto* idx = contiguous_ptr<std::int64_t>(order, "order", n, false);
  for (index_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= n_rows) throw py::index_error("order holds a row out of range");
  return reinterpret_cast<const index_t*>(idx);
}

inline py::dict epoch_result(const EpochResult& r) {
  py::dict out;
  out["accumulated_loss"] = r.accumulated_loss;
  out["samples_seen"] = r.samples_seen;
  return out;
}

// Polls Python for pending signals (Ctrl-C) from inside a GIL-free loop; `raised` then says a
// Python exception is pending, for the binding to raise with py::error_already_set.
struct SignalCheck {
  bool raised = false;
  bool operator()() {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) {
      raised = true;
      return true;
    }
    return false;
  }
};

// Runs `work(stop_check)` with the GIL released; when it throws std::runtime_error because the
// check asked it to stop (Ctrl-C), the pending KeyboardInterrupt is raised instead.
template <class F>
auto run_interruptible(F&& work) {
  SignalCheck check;
  try {
    py::gil_scoped_release release;
    return work(StopCheck(std::ref(check)));
  } catch (const std::runtime_error&) {
    if (check.raised) throw py::error_already_set();
    throw;
  }
}

}  // namespace bindings
}  // namespace fusedmlp
