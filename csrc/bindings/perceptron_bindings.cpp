// fusedmlp._cpu's perceptron solver: argument checking and conversion only; the math lives in
// csrc/cpu/perceptron.cpp. Python (fusedmlp/_perceptron.py) validates the user's input first;
// the checks here make sure nothing that reaches the loop can read or write out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bindings/input.h"
#include "cpu/perceptron.h"

namespace py = pybind11;
using namespace fusedmlp;
using namespace fusedmlp::cpu;
using namespace fusedmlp::bindings;

namespace {

Penalty penalty_from_name(const std::string& name) {
  if (name == "none") return Penalty::none;
  if (name == "l1") return Penalty::l1;
  if (name == "l2") return Penalty::l2;
  if (name == "elasticnet") return Penalty::elasticnet;
  throw py::value_error("unknown penalty '" + name + "'");
}

py::array as_array(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy array or None");
  return py::reinterpret_borrow<py::array>(obj);
}

template <class T>
const T* task_array(const py::dict& tasks, const char* key, index_t n_tasks) {
  if (!tasks.contains(key)) throw py::key_error(std::string("tasks has no '") + key + "'");
  return contiguous_ptr<T>(tasks[key], key, n_tasks, false);
}

// X read once before a fit (cpu::PerceptronRows): dense, of type T.
template <class T>
class PyPerceptronRows {
 public:
  PyPerceptronRows(const py::object& x, index_t max_iter, int n_threads) {
    if (!py::isinstance<py::array>(x)) throw py::type_error("X must be a dense numpy array");
    const auto a = py::reinterpret_borrow<py::array>(x);
    if (a.ndim() != 2) throw py::value_error("X must be 2-dimensional");
    input_ = std::make_unique<InputHolder>(to_input(x, a.shape(1)));
    if (input_->m.type != (sizeof(T) == 4 ? ScalarType::f32 : ScalarType::f64))
      throw py::type_error(std::string("X must be ") + type_name<T>());
    py::gil_scoped_release release;
    rows_ = std::make_unique<PerceptronRows<T>>(input_->m, max_iter, std::max(1, n_threads));
  }
  bool all_finite() const { return rows_->all_finite(); }
  bool has_records() const { return rows_->records() != nullptr; }
  PerceptronRows<T>* get() const { return rows_.get(); }

 private:
  std::unique_ptr<InputHolder> input_;
  std::unique_ptr<PerceptronRows<T>> rows_;
};

bool same_matrix(const InputMatrix& a, const InputMatrix& b) {
  return a.sparse == b.sparse && a.type == b.type && a.data == b.data && a.n_rows == b.n_rows &&
         a.n_cols == b.n_cols && a.rs == b.rs && a.cs == b.cs;
}

template <class T>
class PyPerceptronSolver {
 public:
  // X: the training set (dense or CSR, dtype T); y_class: int32 class index per sample;
  // sample_weight: T per sample, or None for all ones; validation: uint8 mask per sample or
  // None; coef: n_tasks x
  // n_features, C-contiguous, the initial weights, trained in place; tasks: dict of n_tasks
  // arrays "positive" (int64), "intercept", "weight_pos", "weight_neg" (float64), "seed"
  // (int64 in [0, 2**32)); options: the solver's settings.
  PyPerceptronSolver(const py::object& x, const py::array& y_class, const py::object& sample_weight,
                     const py::object& validation, double validation_weight_sum,
                     const py::array& coef, const py::dict& tasks, const py::dict& options,
                     bool reference, const py::object& rows)
      : coef_(coef), y_class_(y_class), rows_object_(rows) {
    if (coef.ndim() != 2) throw py::value_error("coef must be 2-dimensional");
    const index_t n_tasks = coef.shape(0), n_features = coef.shape(1);
    T* w = contiguous_ptr<T>(coef, "coef", n_tasks * n_features, true);
    input_ = std::make_unique<InputHolder>(to_input(x, n_features));
    const InputMatrix& m = input_->m;
    if (m.type != (sizeof(T) == 4 ? ScalarType::f32 : ScalarType::f64))
      throw py::type_error(std::string("X must be ") + type_name<T>() + ", as coef is");
    constexpr index_t kIntMax = std::numeric_limits<std::int32_t>::max();
    if (m.n_rows >= kIntMax || m.n_cols > kIntMax)
      throw py::value_error("More than " + std::to_string(kIntMax) +
                            " samples or features not supported; got (" + std::to_string(m.n_rows) +
                            ", " + std::to_string(m.n_cols) + ").");
    if (m.n_rows < 1) throw py::value_error("X has no samples");

    PerceptronData<T> data;
    data.x = m;
    data.y_class = contiguous_ptr<std::int32_t>(y_class, "y_class", m.n_rows, false);
    if (!sample_weight.is_none()) {
      sample_weight_ = as_array(sample_weight, "sample_weight");
      data.sample_weight = contiguous_ptr<T>(*sample_weight_, "sample_weight", m.n_rows, false);
    }
    if (!validation.is_none()) {
      validation_ = as_array(validation, "validation");
      data.validation =
          contiguous_ptr<std::uint8_t>(*validation_, "validation", m.n_rows, false);
    }
    data.validation_weight_sum = validation_weight_sum;

    PerceptronOptions o;
    o.penalty = penalty_from_name(options["penalty"].cast<std::string>());
    o.alpha = options["alpha"].cast<double>();
    o.l1_ratio = options["l1_ratio"].cast<double>();
    o.eta0 = options["eta0"].cast<double>();
    o.fit_intercept = options["fit_intercept"].cast<bool>();
    o.intercept_decay = options["intercept_decay"].cast<double>();
    o.max_iter = options["max_iter"].cast<index_t>();
    o.tol = options["tol"].cast<double>();
    o.n_iter_no_change = options["n_iter_no_change"].cast<index_t>();
    o.shuffle = options["shuffle"].cast<bool>();
    o.early_stopping = options["early_stopping"].cast<bool>();
    o.verbose = options["verbose"].cast<bool>();
    if (o.max_iter < 1) throw py::value_error("max_iter must be >= 1");
    if (o.n_iter_no_change < 1) throw py::value_error("n_iter_no_change must be >= 1");
    if (o.early_stopping && data.validation == nullptr)
      throw py::value_error("early_stopping needs a validation mask");

    const auto* positive = task_array<std::int64_t>(tasks, "positive", n_tasks);
    const auto* intercept = task_array<double>(tasks, "intercept", n_tasks);
    const auto* weight_pos = task_array<double>(tasks, "weight_pos", n_tasks);
    const auto* weight_neg = task_array<double>(tasks, "weight_neg", n_tasks);
    const auto* seed = task_array<std::int64_t>(tasks, "seed", n_tasks);
    std::vector<PerceptronTaskSpec> specs(static_cast<size_t>(n_tasks));
    for (index_t k = 0; k < n_tasks; ++k) {
      if (seed[k] < 0 || seed[k] > std::numeric_limits<std::uint32_t>::max())
        throw py::value_error("a task's seed is not a 32-bit unsigned integer");
      PerceptronTaskSpec& s = specs[static_cast<size_t>(k)];
      s.positive = positive[k];
      s.intercept = intercept[k];
      s.weight_pos = weight_pos[k];
      s.weight_neg = weight_neg[k];
      s.seed = static_cast<std::uint32_t>(seed[k]);
    }
    PerceptronRows<T>* prepared = nullptr;
    if (!rows.is_none()) {
      prepared = rows.cast<const PyPerceptronRows<T>&>().get();
      if (!same_matrix(prepared->x(), m))
        throw py::value_error("rows were read from another X than this one");
    }
    solver_ = std::make_unique<PerceptronSolver<T>>(data, o, specs, w, reference, prepared);
  }

  index_t n_tasks() const { return solver_->n_tasks(); }

  // Runs the listed tasks (all when None) for up to `epochs` more epochs; KeyboardInterrupt
  // when Ctrl-C arrives (then call finish()).
  void run(const std::optional<std::vector<index_t>>& tasks, index_t epochs, int n_threads) {
    std::vector<index_t> which;
    if (tasks) {
      which = *tasks;
      for (index_t k : which)
        if (k < 0 || k >= solver_->n_tasks()) throw py::index_error("task index out of range");
    } else {
      for (index_t k = 0; k < solver_->n_tasks(); ++k) which.push_back(k);
    }
    if (epochs < 0) throw py::value_error("epochs must be >= 0");
    SignalCheck check;
    {
      py::gil_scoped_release release;
      solver_->run(which, epochs, std::max(1, n_threads), std::ref(check));
    }
    if (check.raised) throw py::error_already_set();
  }

  void finish() { solver_->finish(); }

  py::array_t<T> current_weights() const {
    py::array_t<T> out({static_cast<py::ssize_t>(solver_->n_tasks()), coef_.shape(1)});
    solver_->current_weights(out.mutable_data());
    return out;
  }

  py::dict status(index_t task) const {
    if (task < 0 || task >= solver_->n_tasks()) throw py::index_error("task index out of range");
    const PerceptronTaskStatus s = solver_->status(task);
    py::dict epoch;
    epoch["norm"] = s.last.norm;
    epoch["nnz"] = s.last.nnz;
    epoch["intercept"] = s.last.intercept;
    epoch["count"] = s.last.count;
    epoch["avg_loss"] = s.last.avg_loss;
    epoch["objective"] = s.last.objective;
    epoch["score"] = s.last.score;
    py::dict out;
    out["n_iter"] = s.n_iter;
    out["done"] = s.done;
    out["converged"] = s.converged;
    out["diverged"] = s.diverged;
    out["intercept"] = s.intercept;
    out["last_epoch"] = epoch;
    return out;
  }

 private:
  // the arrays the solver reads and writes, kept alive with it
  py::array coef_, y_class_;
  py::object rows_object_;  // the PyPerceptronRows the solver reads, kept alive with it
  std::optional<py::array> sample_weight_, validation_;
  std::unique_ptr<InputHolder> input_;
  std::unique_ptr<PerceptronSolver<T>> solver_;
};

template <class T>
void bind_solver(py::module_& m, const char* rows_name, const char* name) {
  py::class_<PyPerceptronRows<T>>(m, rows_name)
      .def(py::init<const py::object&, index_t, int>(), py::arg("X"), py::arg("max_iter"),
           py::arg("n_threads") = 1)
      .def_property_readonly("all_finite", &PyPerceptronRows<T>::all_finite)
      .def_property_readonly("has_records", &PyPerceptronRows<T>::has_records);
  py::class_<PyPerceptronSolver<T>>(m, name)
      .def(py::init<const py::object&, const py::array&, const py::object&, const py::object&,
                    double, const py::array&, const py::dict&, const py::dict&, bool,
                    const py::object&>(),
           py::arg("X"), py::arg("y_class"), py::arg("sample_weight"), py::arg("validation"),
           py::arg("validation_weight_sum"), py::arg("coef"), py::arg("tasks"),
           py::arg("options"), py::arg("reference") = false, py::arg("rows") = py::none())
      .def_property_readonly("n_tasks", &PyPerceptronSolver<T>::n_tasks)
      .def("run", &PyPerceptronSolver<T>::run, py::arg("tasks"), py::arg("epochs"),
           py::arg("n_threads") = 1)
      .def("finish", &PyPerceptronSolver<T>::finish)
      .def("current_weights", &PyPerceptronSolver<T>::current_weights)
      .def("status", &PyPerceptronSolver<T>::status, py::arg("task"));
}

}  // namespace

void bind_perceptron(py::module_& m) {
  bind_solver<float>(m, "PerceptronRowsF32", "PerceptronSolverF32");
  bind_solver<double>(m, "PerceptronRowsF64", "PerceptronSolverF64");
  m.def(
      "our_rand_r",
      [](std::uint32_t seed, int count) {
        std::vector<std::uint32_t> out;
        for (int i = 0; i < count; ++i) out.push_back(our_rand_r(&seed));
        return out;
      },
      py::arg("seed"), py::arg("count"), "scikit-learn's our_rand_r, `count` draws (tests).");
  m.def(
      "sequential_dataset_shuffle",
      [](py::array_t<std::int32_t, py::array::c_style | py::array::forcecast> index,
         std::uint32_t seed) {
        if (index.ndim() != 1) throw py::value_error("index must be 1-dimensional");
        if (index.shape(0) > std::numeric_limits<std::int32_t>::max())
          throw py::value_error("index is too long");
        py::array_t<std::int32_t> out(index.shape(0));
        std::copy_n(index.data(), index.shape(0), out.mutable_data());
        sequential_dataset_shuffle(out.mutable_data(), static_cast<std::int32_t>(index.shape(0)), seed);
        return out;
      },
      py::arg("index"), py::arg("seed"),
      "scikit-learn's SequentialDataset.shuffle applied to a copy of an index (tests).");
  m.def(
      "numpy_sum",
      [](py::array_t<double, py::array::c_style | py::array::forcecast> a) {
        return numpy_sum(a.data(), static_cast<index_t>(a.size()));
      },
      py::arg("a"), "numpy's float64 sum, as the validation score adds (tests).");
}
