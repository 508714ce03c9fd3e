// fusedmlp._cpu: argument checking and conversion only; the math lives in csrc/cpu/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bindings/input.h"
#include "cpu/threads.h"
#include "cpu/gemm/gemm.h"
#include "cpu/trainer.h"

namespace py = pybind11;
using namespace fusedmlp;
using namespace fusedmlp::cpu;
using namespace fusedmlp::bindings;

namespace {

int resolve_threads(int n_threads) { return n_threads > 0 ? n_threads : omp_get_max_threads(); }

template <class T>
class PyTrainer {
 public:
  PyTrainer(const std::vector<index_t>& units, const std::string& activation,
            const std::string& loss, int n_threads, const std::string& out_activation,
            const py::dict& options)
      : trainer_(make_layout(units, activation, loss, out_activation, options),
                 resolve_threads(n_threads)) {}

  index_t n_params() const { return trainer_.layout().n_params; }

  py::dict run_epoch(const py::object& x, const py::array& y, const py::object& sample_weight,
                     const py::array& order, const py::array& params, const py::dict& opt,
                     const py::dict& hyper) {
    const NetworkLayout& L = trainer_.layout();
    InputHolder in = to_input(x, L.n_inputs());
    TrainingData<T> data = make_data(in, y, sample_weight);
    const index_t n_order = static_cast<index_t>(order.size());
    const index_t* idx = row_order(order, in.m.n_rows);
    T* p = contiguous_ptr<T>(params, "params", L.n_params, true);

    EpochArgs<T> args(hyper, opt, L.n_params, n_order);
    SignalCheck check;
    EpochResult r;
    {
      py::gil_scoped_release release;
      r = trainer_.run_epoch(data, idx, n_order, p, args.state,
                             args.opts, std::ref(check));
    }
    args.finish();
    if (check.raised) throw py::error_already_set();
    return epoch_result(r);
  }

  double loss_grad(const py::object& x, const py::array& y, const py::object& sample_weight,
                   const py::array& params, double alpha, const py::array& grad) {
    const NetworkLayout& L = trainer_.layout();
    InputHolder in = to_input(x, L.n_inputs());
    TrainingData<T> data = make_data(in, y, sample_weight);
    const T* p = contiguous_ptr<T>(params, "params", L.n_params, false);
    T* g = contiguous_ptr<T>(grad, "grad", L.n_params, true);
    return run_interruptible(
        [&](const StopCheck& stop) { return trainer_.loss_grad(data, p, alpha, g, stop); });
  }

  // (objective, outputs): loss_grad's objective without the gradient, and predict's outputs,
  // from one forward pass (early stopping's validation).
  py::tuple loss_and_outputs(const py::object& x, const py::array& y, const py::object& sample_weight,
                             const py::array& params, double alpha) {
    const NetworkLayout& L = trainer_.layout();
    InputHolder in = to_input(x, L.n_inputs());
    TrainingData<T> data = make_data(in, y, sample_weight);
    const T* p = contiguous_ptr<T>(params, "params", L.n_params, false);
    py::array_t<double> out({in.m.n_rows, L.n_outputs()});
    double* o = out.mutable_data();
    const double loss = run_interruptible(
        [&](const StopCheck& stop) { return trainer_.evaluate(data, p, alpha, o, stop); });
    return py::make_tuple(loss, out);
  }

  py::array predict(const py::object& x, const py::array& params) {
    return run_predict(x, params, nullptr);
  }

  // (output, whether X holds a NaN or an infinity): X's finiteness checked by the pass itself.
  // labels=True (a softmax head of at least two outputs): (each row's class index, whether X
  // holds a NaN or an infinity, whether any row's outputs were not all finite), the index
  // numpy's argmax gives on the outputs (Trainer::predict's labels, dense.h's output_labels).
  py::tuple predict_checked(const py::object& x, const py::array& params, bool labels) {
    bool nonfinite = false;
    if (!labels) {
      py::array out = run_predict(x, params, &nonfinite);
      return py::make_tuple(out, nonfinite);
    }
    const NetworkLayout& L = trainer_.layout();
    if (L.output != Activation::softmax || L.n_outputs() < 2)
      throw py::value_error("predict_checked: labels=True needs a softmax output of at least two units");
    InputHolder in = to_input(x, L.n_inputs());
    py::array_t<std::intptr_t> classes(in.m.n_rows);
    bool outputs_nonfinite = false;
    predict_into(in, params, nullptr, &nonfinite, classes.mutable_data(), &outputs_nonfinite);
    return py::make_tuple(std::move(classes), nonfinite, outputs_nonfinite);
  }

  const NetworkLayout& layout() const { return trainer_.layout(); }

  // predict's pass over `in` into `o` (its rows times the outputs, float64), or with labels
  // into each row's class index (Trainer::predict)
  void predict_into(const InputHolder& in, const py::array& params, double* o, bool* nonfinite,
                    std::intptr_t* labels = nullptr, bool* labels_nonfinite = nullptr) {
    const T* p = contiguous_ptr<T>(params, "params", trainer_.layout().n_params, false);
    SignalCheck check;
    bool finished;
    {
      py::gil_scoped_release release;
      finished = trainer_.predict(in.m, p, o, std::ref(check), nonfinite, labels, labels_nonfinite);
    }
    if (!finished && check.raised) throw py::error_already_set();
  }

 private:
  py::array run_predict(const py::object& x, const py::array& params, bool* nonfinite) {
    const NetworkLayout& L = trainer_.layout();
    InputHolder in = to_input(x, L.n_inputs());
    py::array_t<double> out({in.m.n_rows, L.n_outputs()});
    predict_into(in, params, out.mutable_data(), nonfinite);
    return std::move(out);
  }

  TrainingData<T> make_data(const InputHolder& in, const py::array& y,
                            const py::object& sample_weight) {
    const NetworkLayout& L = trainer_.layout();
    TrainingData<T> d;
    d.x = in.m;
    d.y = contiguous_ptr<T>(y, "Y", in.m.n_rows * L.n_outputs(), false);
    if (!sample_weight.is_none() && !py::isinstance<py::array>(sample_weight))
      throw py::type_error("sample_weight must be a numpy array");
    if (!sample_weight.is_none())
      d.sample_weight = contiguous_ptr<T>(py::reinterpret_borrow<py::array>(sample_weight),
                                          "sample_weight", in.m.n_rows, false);
    return d;
  }

  Trainer<T> trainer_;
};

// Whether two arrays' byte ranges overlap (numpy.may_share_memory's bounds test, without a
// call into Python).
inline bool may_share_memory(const py::array& x, const py::array& y) {
  auto bounds = [](const py::array& v, std::uintptr_t& lo, std::uintptr_t& hi) {
    if (v.size() == 0) return false;
    lo = hi = reinterpret_cast<std::uintptr_t>(v.data());
    for (py::ssize_t d = 0; d < v.ndim(); ++d) {
      const py::ssize_t reach = (v.shape(d) - 1) * v.strides(d);
      if (reach < 0) lo -= static_cast<std::uintptr_t>(-reach);
      else hi += static_cast<std::uintptr_t>(reach);
    }
    hi += static_cast<std::uintptr_t>(v.itemsize());
    return true;
  };
  std::uintptr_t xlo, xhi, ylo, yhi;
  if (!bounds(x, xlo, xhi) || !bounds(y, ylo, yhi)) return false;
  return xlo < yhi && ylo < xhi;
}

// C = epilogue(A B) for any strided float32/float64 A and B: the GEMM as the trainer calls it,
// exposed for the tests and the benchmarks. check_a: A's check for NaN and infinities
// (Epilogue::a_nonfinite), its answer appended to the result. zero_steps: a product with a bias
// and activation leaves out a row-major A's all-zero steps where B is finite, as a prediction's
// do (Operand::zero_steps).
template <class T>
py::object gemm_py(const py::array& a, const py::array& b, const std::string& epilogue,
                       const std::string& activation, const py::object& bias, const py::object& aux,
                       double alpha, double scale, bool with_colsum, int n_threads,
                       py::object c_in, py::object out_in, bool check_a, bool zero_steps) {
  if (a.ndim() != 2 || b.ndim() != 2) throw py::value_error("gemm: A and B must be 2-D");
  if (!has_type<T>(a) || !has_type<T>(b)) throw py::type_error("gemm: A and B must share the dtype");
  if (a.shape(1) != b.shape(0)) throw py::value_error("gemm: inner dimensions differ");
  const index_t m = a.shape(0), k = a.shape(1), n = b.shape(1);
  const auto isz = static_cast<index_t>(sizeof(T));
  for (const py::array* x : {&a, &b})
    if (x->strides(0) % isz != 0 || x->strides(1) % isz != 0 ||
        reinterpret_cast<std::uintptr_t>(x->data()) % sizeof(T) != 0)
      throw py::value_error("gemm: A and B must be aligned, their strides multiples of the item size");
  Operand<T> A{static_cast<const T*>(a.data()), a.strides(0) / isz, a.strides(1) / isz};
  Operand<T> B{static_cast<const T*>(b.data()), b.strides(0) / isz, b.strides(1) / isz};
  B.zero_steps = zero_steps;
  Epilogue<T> ep;
  py::array bias_arr, aux_arr;
  if (epilogue == "none") {
    ep.kind = EpilogueKind::none;
  } else if (epilogue == "bias_activation") {
    ep.kind = EpilogueKind::bias_activation;
    bias_arr = py::array_t<T, py::array::c_style | py::array::forcecast>(bias);
    ep.bias = contiguous_ptr<T>(bias_arr, "bias", n, false);
  } else if (epilogue == "weight_grad" || epilogue == "activation_grad") {
    ep.kind = epilogue == "weight_grad" ? EpilogueKind::weight_grad : EpilogueKind::activation_grad;
    aux_arr = py::array_t<T, py::array::c_style | py::array::forcecast>(aux);
    ep.aux = contiguous_ptr<T>(aux_arr, "aux", m * n, false);
    ep.ld_aux = n;
  } else {
    throw py::value_error("gemm: unknown epilogue '" + epilogue + "'");
  }
  ep.act = activation_from_name(activation);
  ep.alpha = static_cast<T>(alpha);
  ep.scale = static_cast<T>(scale);
  bool accumulate = false;
  // the result: out when given (C-contiguous, m x n, writable, sharing no memory with the
  // operands: the product is written while they are read), else a new array
  py::array c;
  if (out_in.is_none()) {
    c = py::array_t<T>({m, n});
  } else {
    if (!py::isinstance<py::array>(out_in)) throw py::type_error("gemm: out must be a numpy array");
    c = py::reinterpret_borrow<py::array>(out_in);
    if (c.ndim() != 2 || c.shape(0) != m || c.shape(1) != n)
      throw py::value_error("gemm: out must have shape (" + std::to_string(m) + ", " +
                            std::to_string(n) + ")");
    if (reinterpret_cast<std::uintptr_t>(contiguous_ptr<T>(c, "out", m * n, true)) % sizeof(T) != 0)
      throw py::value_error("gemm: out must be aligned");
    // (bias_arr, aux_arr: empty arrays when the epilogue takes none)
    for (const py::array* x : std::initializer_list<const py::array*>{&a, &b, &bias_arr, &aux_arr})
      if (may_share_memory(c, *x)) throw py::value_error("gemm: out shares memory with an operand");
  }
  if (!c_in.is_none()) {  // C := A B + C (out may be C itself)
    py::array ci = py::array_t<T, py::array::c_style | py::array::forcecast>(c_in);
    const T* src = contiguous_ptr<T>(ci, "C", m * n, false);
    T* dst = static_cast<T*>(c.mutable_data());
    if (src != dst) {
      if (!out_in.is_none() && may_share_memory(c, ci))
        throw py::value_error("gemm: out overlaps C without being C");
      std::copy_n(src, m * n, dst);
    }
    accumulate = true;
  }
  py::array_t<T> colsum(n);
  if (with_colsum) {
    ep.colsum_b = colsum.mutable_data();
    ep.colsum_scale = static_cast<T>(scale);
    for (index_t j = 0; j < n; ++j) ep.colsum_b[j] = T(0);
  }
  int nonfinite = 0;
  if (check_a) ep.a_nonfinite = &nonfinite;
  T* cp = static_cast<T*>(c.mutable_data());
  {
    py::gil_scoped_release release;
    // (kept by the calling thread, as a trainer keeps its own: a call allocates nothing once
    // the workspace has grown to its shape; it keeps the largest call's scratch until the thread
    // ends)
    static thread_local GemmWorkspace ws;
    gemm<T>(m, n, k, A, B, cp, n, ep, accumulate, resolve_threads(n_threads), ws);
  }
  if (check_a) {
    if (with_colsum) return py::make_tuple(c, colsum, nonfinite != 0);
    return py::make_tuple(c, nonfinite != 0);
  }
  if (with_colsum) return py::make_tuple(c, colsum);
  return std::move(c);
}

template <class T>
void bind_trainer(py::module_& m, const char* name) {
  py::class_<PyTrainer<T>>(m, name)
      .def(py::init<const std::vector<index_t>&, const std::string&, const std::string&, int,
                    const std::string&, const py::dict&>(),
           py::arg("units"), py::arg("activation"), py::arg("loss"), py::arg("n_threads") = 0,
           py::arg("out_activation") = "", py::arg("options") = py::dict())
      .def_property_readonly("n_params", &PyTrainer<T>::n_params)
      .def("run_epoch", &PyTrainer<T>::run_epoch, py::arg("X"), py::arg("Y"),
           py::arg("sample_weight"), py::arg("order"), py::arg("params"), py::arg("optimizer"),
           py::arg("hyper"))
      .def("loss_grad", &PyTrainer<T>::loss_grad, py::arg("X"), py::arg("Y"),
           py::arg("sample_weight"), py::arg("params"), py::arg("alpha"), py::arg("grad"))
      .def("loss_and_outputs", &PyTrainer<T>::loss_and_outputs, py::arg("X"), py::arg("Y"),
           py::arg("sample_weight"), py::arg("params"), py::arg("alpha"))
      .def("predict", &PyTrainer<T>::predict, py::arg("X"), py::arg("params"))
      .def("predict_checked", &PyTrainer<T>::predict_checked, py::arg("X"), py::arg("params"),
           py::arg("labels") = false);
}

// Whether `state` (an estimator's __dict__) still holds the very objects of `objects` under
// `names`, and the first `n_lists` of them, lists, still hold the items that follow in
// `objects`, list after list (the kept prediction engine's stamp, _multilayer_perceptron.py:
// a one-row prediction's check of a dozen objects or more, 0.15 us a call; 0.8 us or more in
// Python, where the values must be gathered into a tuple before they are compared).
bool same_objects(py::handle state, py::handle names, py::handle objects, int n_lists) {
  PyObject* d = state.ptr();
  PyObject* nm = names.ptr();
  PyObject* ob = objects.ptr();
  if (!PyDict_Check(d) || !PyTuple_Check(nm) || !PyTuple_Check(ob))
    throw py::type_error("_same_objects takes a dict and two tuples");
  const Py_ssize_t n = PyTuple_GET_SIZE(nm), n_objects = PyTuple_GET_SIZE(ob);
  if (n_lists < 0 || n_lists > n || n > n_objects)
    throw py::value_error("_same_objects: more lists or names than objects");
  Py_ssize_t at = n;  // the next list item's place in `objects`
  for (Py_ssize_t i = 0; i < n; ++i) {
    // (borrowed; compared, never kept: no Python code runs before the check is over)
    PyObject* value = PyDict_GetItemWithError(d, PyTuple_GET_ITEM(nm, i));
    if (value == nullptr && PyErr_Occurred()) throw py::error_already_set();
    if (value != PyTuple_GET_ITEM(ob, i)) return false;
    if (i < n_lists) {
      if (!PyList_Check(value)) return false;
      const Py_ssize_t len = PyList_GET_SIZE(value);
      if (len > n_objects - at) return false;
      for (Py_ssize_t j = 0; j < len; ++j)
        if (PyList_GET_ITEM(value, j) != PyTuple_GET_ITEM(ob, at + j)) return false;
      at += len;
    }
  }
  return at == n_objects;
}

// The team of n_threads=None (fusedmlp._engine.default_threads): OpenMP's current limit, capped
// at usable_cpus unless OMP_NUM_THREADS is set, 1 to 64.
int default_threads(int usable_cpus) {
  // (getenv sees os.environ's changes: Python's os.environ calls putenv)
  int limit = omp_get_max_threads();
  const char* env = std::getenv("OMP_NUM_THREADS");
  if ((env == nullptr || *env == '\0') && usable_cpus < limit) limit = usable_cpus;
  return std::max(1, std::min(limit, 64));
}

// A kept CPU prediction engine's call in one step (_multilayer_perceptron.py, _kept_pass): the
// estimator's class (the package's own), its stamp checked (same_objects: the objects the engine's
// key and parameters were read from, and those the prediction's checks and decoding read), X
// checked as the Python path's _plain_input(max_checked=None) checks it (and at most max_rows
// rows), the engine's lease taken, the pass run with X's finiteness checked, and the outputs
// returned, or the class of each row (labels: the index of the largest output, or whether the one
// output is above 0.5). None whenever any of that does not hold, or an output is not finite (also
// a lease held by another thread): the Python path then runs, with its errors, warnings and
// conversions. A one-row prediction's Python part around the pass took 4.4 us of 19.7 on the Zen 4
// machine of bench/RESULTS.md.
template <class T>
class KeptPrediction {
 public:
  enum Labels { kNone = 0, kArgmax = 1, kAboveHalf = 2 };

  KeptPrediction(py::type cls, py::object engine, py::tuple names, py::tuple objects, int n_lists,
                 int threads, int usable_cpus, py::object lock, py::array params, int labels,
                 index_t max_rows)
      : cls_(std::move(cls)),
        type_(reinterpret_cast<PyTypeObject*>(cls_.ptr())),
        engine_obj_(std::move(engine)),
        engine_(engine_obj_.cast<PyTrainer<T>*>()),
        names_(std::move(names)),
        objects_(std::move(objects)),
        n_lists_(n_lists),
        threads_(threads),
        usable_cpus_(usable_cpus),
        lock_(std::move(lock)),
        params_(std::move(params)),
        labels_(labels),
        max_rows_(max_rows),
        acquire_(py::str("acquire")),
        release_(py::str("release")) {
    if (labels < kNone || labels > kAboveHalf) throw py::value_error("labels must be 0, 1 or 2");
    if (labels == kAboveHalf && engine_->layout().n_outputs() != 1)
      throw py::value_error("labels=2 (above 0.5) needs one output");
    if (max_rows < 1) throw py::value_error("max_rows must be >= 1");
    // (the checks of same_objects' arguments, once)
    same_objects(py::dict(), names_, objects_, n_lists_);
  }

  py::object call(py::handle estimator, py::handle x, bool labels) {
    // (the estimator's own class: a subclass may override what the Python path calls)
    if (Py_TYPE(estimator.ptr()) != type_) return py::none();
    const py::object state =
        py::reinterpret_steal<py::object>(PyObject_GenericGetDict(estimator.ptr(), nullptr));
    if (!state) throw py::error_already_set();
    PyObject* d = state.ptr();
    if (!PyDict_Check(d) || !same_objects(state, names_, objects_, n_lists_)) return py::none();
    if (labels && labels_ == kNone) return py::none();
    // _plain_input(max_checked=None): an ndarray (not a subclass), 2-D, float32 or float64, of
    // the fitted width and at least one row (at most max_rows: the kept engine's calls), for a
    // model fitted without feature names; strides in whole items (to_input's)
    if (Py_TYPE(x.ptr()) != py::detail::npy_api::get().PyArray_Type_) return py::none();
    const py::array a = py::reinterpret_borrow<py::array>(x);
    const NetworkLayout& L = engine_->layout();
    if (a.ndim() != 2 || a.shape(1) != L.n_inputs() || a.shape(0) < 1 || a.shape(0) > max_rows_ ||
        !(has_type<float>(a) || has_type<double>(a)) ||
        a.strides(0) % static_cast<py::ssize_t>(a.itemsize()) != 0 ||
        a.strides(1) % static_cast<py::ssize_t>(a.itemsize()) != 0)
      return py::none();
    PyObject* names = PyDict_GetItemWithError(d, feature_names_.ptr());
    if (names != nullptr) return py::none();
    if (PyErr_Occurred()) throw py::error_already_set();
    if (threads_ > 0 && default_threads(usable_cpus_) != threads_) return py::none();
    Lease lease(*this);
    if (!lease.held) return py::none();
    // (under the lease to the end: buffer_ is the engine's and the lease's)
    const index_t n = a.shape(0), n_out = L.n_outputs();
    const InputHolder in = to_input(a, L.n_inputs());
    py::array out;
    bool nonfinite = false;
    if (labels) {
      buffer_.resize(static_cast<size_t>(n * n_out));
      engine_->predict_into(in, params_, buffer_.data(), &nonfinite);
    } else {
      out = py::array_t<double>({n, n_out});
      engine_->predict_into(in, params_, static_cast<double*>(out.mutable_data()), &nonfinite);
    }
    const double* o = labels ? buffer_.data() : static_cast<const double*>(out.data());
    if (nonfinite) return py::none();
    for (index_t i = 0; i < n * n_out; ++i)
      if (!std::isfinite(o[i])) return py::none();
    if (!labels) return out;
    py::array_t<std::intptr_t> classes(n);
    std::intptr_t* c = classes.mutable_data();
    for (index_t r = 0; r < n; ++r) {
      const double* row = o + r * n_out;
      if (labels_ == kAboveHalf) {
        c[r] = row[0] > 0.5 ? 1 : 0;
      } else {
        index_t best = 0;  // (numpy's argmax: the first of equal largest values)
        for (index_t j = 1; j < n_out; ++j)
          if (row[j] > row[best]) best = j;
        c[r] = static_cast<std::intptr_t>(best);
      }
    }
    return std::move(classes);
  }

 private:
  // The engine's lease (the kept entry's threading.Lock), taken without blocking, released when
  // the call ends, also by an exception.
  struct Lease {
    explicit Lease(KeptPrediction& k) : kept(k) {
      PyObject* got =
          PyObject_CallMethodObjArgs(kept.lock_.ptr(), kept.acquire_.ptr(), Py_False, nullptr);
      if (got == nullptr) throw py::error_already_set();
      held = got == Py_True;
      Py_DECREF(got);
    }
    ~Lease() {
      if (!held) return;
      // (an exception may be on its way: its error is fetched already, error_already_set)
      PyObject* done = PyObject_CallMethodObjArgs(kept.lock_.ptr(), kept.release_.ptr(), nullptr);
      if (done == nullptr)
        PyErr_WriteUnraisable(kept.lock_.ptr());  // (a held lock's release does not fail)
      else
        Py_DECREF(done);
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    KeptPrediction& kept;
    bool held = false;
  };

  py::type cls_;  // the estimator's class (keeps type_ alive)
  PyTypeObject* type_;
  py::object engine_obj_;  // (keeps engine_ alive)
  PyTrainer<T>* engine_;
  py::tuple names_, objects_;
  int n_lists_, threads_, usable_cpus_;
  py::object lock_;
  py::array params_;
  int labels_;
  index_t max_rows_;
  py::str acquire_, release_;
  py::str feature_names_{"feature_names_in_"};
  std::vector<double> buffer_;  // the labels' outputs (used under the lease)
};

template <class T>
void bind_kept_prediction(py::module_& m, const char* name) {
  py::class_<KeptPrediction<T>>(m, name)
      .def(py::init<py::type, py::object, py::tuple, py::tuple, int, int, int, py::object, py::array,
                    int, index_t>(),
           py::arg("cls"), py::arg("engine"), py::arg("names"), py::arg("objects"),
           py::arg("n_lists"), py::arg("threads"), py::arg("usable_cpus"), py::arg("lock"),
           py::arg("params"), py::arg("labels"), py::arg("max_rows"))
      .def("__call__", &KeptPrediction<T>::call, py::arg("estimator"), py::arg("X"),
           py::arg("labels"));
}

// Two threads hand a counter back and forth `rounds` times in five runs; the median run's
// seconds per round trip. What a barrier or a line one thread wrote and the other reads costs
// between the cores the threads run on: on the 2-CPU Zen 4 machines of bench/RESULTS.md, 50-90
// ns while the host kept the two virtual CPUs near each other, 330-420 ns while it kept them far
// apart.
// The waits spin, then yield; past `max_seconds` in all (a machine without two CPUs free, whose
// threads take turns at time slices) both threads stop and the answer is None.
py::object core_round_trip(long long rounds, double max_seconds) {
  if (rounds < 5 || rounds > 100000000)
    throw py::value_error("core_round_trip: rounds must be in [5, 1e8]");
  if (!(max_seconds > 0.0 && max_seconds <= 60.0))
    throw py::value_error("core_round_trip: max_seconds must be in (0, 60]");
  using clock = std::chrono::steady_clock;
  const long long per_run = rounds / 5;
  alignas(64) std::atomic<long long> turn{0};  // odd: the other thread's turn; -1: stop
  bool late = false;
  clock::time_point deadline;
  // false: stopped (-1), or past the deadline while waiting (`timed`: the calling thread)
  auto wait_for = [&](long long value, bool timed) {
    for (long long spins = 0;; ++spins) {
      const long long t = turn.load(std::memory_order_acquire);
      if (t == value || t < 0) return t >= 0;
      if (spins > 2000) std::this_thread::yield();
      if (timed && (spins & 1023) == 1023 && clock::now() > deadline) return false;
    }
  };
  std::vector<double> runs;
  {
    py::gil_scoped_release release;
    std::thread other([&] {
      for (long long i = 0;; ++i) {
        long long mine = 2 * i + 1;  // (not past a stop that came meanwhile)
        if (!wait_for(mine, false) ||
            !turn.compare_exchange_strong(mine, mine + 1, std::memory_order_acq_rel))
          return;
      }
    });
    deadline = clock::now() + std::chrono::duration_cast<clock::duration>(
                                  std::chrono::duration<double>(max_seconds));
    long long next = 0;
    for (int r = 0; r < 5 && !late; ++r) {
      const auto t0 = clock::now();
      for (long long i = 0; i < per_run; ++i, next += 2) {
        turn.store(next + 1, std::memory_order_release);
        if (!wait_for(next + 2, true) || ((i & 255) == 255 && clock::now() > deadline)) {
          late = true;
          break;
        }
      }
      if (!late)
        runs.push_back(std::chrono::duration<double>(clock::now() - t0).count() /
                       static_cast<double>(per_run));
    }
    turn.store(-1, std::memory_order_release);
    other.join();
  }
  if (late) return py::none();
  std::sort(runs.begin(), runs.end());
  return py::float_(runs[runs.size() / 2]);
}

// numpy's interface to a bit generator (numpy/random/bitgen.h, the struct a BitGenerator's
// capsule named "BitGenerator" points to; the same layout since numpy 1.17).
struct NumpyBitgen {
  void* state;
  std::uint64_t (*next_uint64)(void* st);
  std::uint32_t (*next_uint32)(void* st);
  double (*next_double)(void* st);
  std::uint64_t (*next_raw)(void* st);
};

NumpyBitgen* bitgen_of(const py::capsule& capsule) {
  auto* g = static_cast<NumpyBitgen*>(PyCapsule_GetPointer(capsule.ptr(), "BitGenerator"));
  if (g == nullptr) throw py::error_already_set();
  return g;
}

// The state of numpy's MT19937 (numpy/random/src/mt19937/mt19937.h; not a public header: the
// caller checks the layout once against the generator's public state, mt19937_layout_matches).
struct Mt19937State {
  std::uint32_t key[624];
  int pos;
};

// numpy's MT19937 words, tempered (mt19937_next).
inline std::uint32_t mt19937_temper(std::uint32_t y) {
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680U;
  y ^= (y << 15) & 0xefc60000U;
  y ^= y >> 18;
  return y;
}

// numpy's mt19937_gen: the next 624 words of the state.
void mt19937_refill(Mt19937State* s) {
  constexpr int kN = 624, kM = 397;
  auto twist = [](std::uint32_t a, std::uint32_t b, std::uint32_t m) {
    const std::uint32_t y = (a & 0x80000000U) | (b & 0x7fffffffU);
    return m ^ (y >> 1) ^ ((~(y & 1U) + 1U) & 0x9908b0dfU);
  };
  std::uint32_t* k = s->key;
  int i = 0;
  for (; i < kN - kM; ++i) k[i] = twist(k[i], k[i + 1], k[i + kM]);
  for (; i < kN - 1; ++i) k[i] = twist(k[i], k[i + 1], k[i + kM - kN]);
  k[kN - 1] = twist(k[kN - 1], k[0], k[kM - 1]);
  s->pos = 0;
}

// RandomState.shuffle's loop (below) on numpy's MT19937 for n <= 2^32: the same draws, each
// word of a block of the state tempered at once, and each draw taken without a branch (a
// rejected one swaps element i with itself and leaves i where it is): numpy's loop mispredicts
// about every rejection, half the time per element (20,640 elements: 85 us against 165 us).
// The state is refilled when a draw needs it, as numpy does, so it is left where numpy leaves it.
void shuffle_mt19937(Mt19937State* s, std::int64_t* perm, std::int64_t n) {
  std::uint32_t words[624];
  std::int64_t i = n - 1;
  int pos = s->pos;
  while (i >= 1) {
    if (pos == 624) mt19937_refill(s), pos = 0;
    for (int k = pos; k < 624; ++k) words[k] = mt19937_temper(s->key[k]);
    for (; pos < 624 && i >= 1; ++pos) {
      const auto max = static_cast<std::uint32_t>(i);
      const std::uint32_t v = words[pos] & (~0U >> __builtin_clz(max));  // (random_interval's mask)
      const bool accept = v <= max;
      const std::int64_t j = accept ? static_cast<std::int64_t>(v) : i;
      const std::int64_t a = perm[i], b = perm[j];
      perm[j] = a;
      perm[i] = b;
      i -= accept ? 1 : 0;
    }
  }
  s->pos = pos;
}

// numpy's random_interval (numpy/random/src/distributions/distributions.c) through the bit
// generator's function pointers: a draw in [0, max], the smallest bit mask covering max applied
// to 32-bit draws (64-bit past 2^32 - 1) until one is at most max.
std::uint64_t numpy_random_interval(NumpyBitgen* g, std::uint64_t max) {
  if (max == 0) return 0;
  std::uint64_t mask = max;
  for (int shift = 1; shift <= 32; shift *= 2) mask |= mask >> shift;
  std::uint64_t value;
  if (max <= 0xffffffffULL) {
    while ((value = (g->next_uint32(g->state) & mask)) > max) {
    }
  } else {
    while ((value = (g->next_uint64(g->state) & mask)) > max) {
    }
  }
  return value;
}

// Whether the capsule's state is laid out as Mt19937State: its key and position are key and pos
// (the generator's public state).
bool mt19937_layout_matches(const py::capsule& bit_generator,
                            const py::array_t<std::uint32_t, py::array::c_style>& key, int pos) {
  const auto* s = static_cast<const Mt19937State*>(bitgen_of(bit_generator)->state);
  if (key.ndim() != 1 || key.shape(0) != 624) return false;
  return s->pos == pos && std::equal(s->key, s->key + 624, key.data());
}

// indices[permutation], the permutation numpy.random.RandomState.shuffle makes of
// arange(len(indices)) with the same draws from the same bit generator (its Fisher-Yates loop
// from the last element down: element i swapped with element random_interval(i)), which it
// leaves where RandomState.shuffle would. mt19937: the capsule's generator is numpy's MT19937,
// its state laid out as Mt19937State. The caller holds the bit generator's lock.
py::array_t<std::int64_t> shuffled_indices(
    const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& indices,
    const py::capsule& bit_generator, bool mt19937) {
  if (indices.ndim() != 1) throw py::value_error("shuffled_indices: indices must be 1-D");
  NumpyBitgen* g = bitgen_of(bit_generator);
  const py::ssize_t n = indices.shape(0);
  std::vector<std::int64_t> perm(static_cast<size_t>(n));
  for (py::ssize_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
  if (mt19937 && static_cast<std::uint64_t>(n) <= (std::uint64_t(1) << 32)) {
    shuffle_mt19937(static_cast<Mt19937State*>(g->state), perm.data(), n);
  } else {
    for (py::ssize_t i = n - 1; i >= 1; --i) {
      const auto j = static_cast<size_t>(numpy_random_interval(g, static_cast<std::uint64_t>(i)));
      std::swap(perm[static_cast<size_t>(i)], perm[j]);
    }
  }
  py::array_t<std::int64_t> out(n);
  const std::int64_t* src = indices.data();
  std::int64_t* dst = out.mutable_data();
  for (py::ssize_t k = 0; k < n; ++k) dst[k] = src[perm[static_cast<size_t>(k)]];
  return out;
}

// a.T as the engine transposes a layer's weights (gemm_transpose; for tests).
template <class T>
py::array_t<T> transpose_py(const py::array_t<T, py::array::c_style | py::array::forcecast>& a) {
  if (a.ndim() != 2) throw py::value_error("_transpose: a must be 2-D");
  const index_t rows = a.shape(0), cols = a.shape(1);
  py::array_t<T> out({cols, rows});
  gemm_transpose<T>(rows, cols, a.data(), out.mutable_data());
  return out;
}

}  // namespace

void bind_perceptron(py::module_& m);  // perceptron_bindings.cpp

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fusedmlp CPU engine: fused dense layers, losses and optimizers in C++";
  bind_trainer<float>(m, "TrainerF32");
  bind_trainer<double>(m, "TrainerF64");
  bind_kept_prediction<float>(m, "KeptPredictionF32");
  bind_kept_prediction<double>(m, "KeptPredictionF64");

  m.def("best_isa", [] { return isa_name(best_supported_isa()); },
        "The fastest instruction set this CPU can run.");
  m.def("active_isa", [] { return isa_name(active_isa()); },
        "The instruction set the GEMM uses now.");
  m.def("set_isa", [](const std::string& name) { set_active_isa(isa_from_name(name)); },
        py::arg("name"), "Choose the GEMM's instruction set (tests, benchmarks).");
  m.def(
      "team_segments",
      [] {
        return py::make_tuple(cpu::segments_run[0].load(), cpu::segments_run[1].load());
      },
      "Epoch segments run so far in this process: (on one thread, on a full team).");
  m.def("core_round_trip", &core_round_trip, py::arg("rounds") = 20000,
        py::arg("max_seconds") = 0.05,
        "Median seconds of a round trip of one cache line between two threads (a diagnostic\n"
        "of how far apart the cores a team runs on are: bench/RESULTS.md), or None when the\n"
        "trips took longer than max_seconds (the threads were not running at once).");
  m.def(
      "team_predictions",
      [] {
        return py::make_tuple(cpu::predictions_run[0].load(), cpu::predictions_run[1].load());
      },
      "Prediction calls that had a team of threads to choose from, so far in this process: "
      "(run on one thread, on the full team).");
  m.def("_training_threads_running", [] { return cpu::training_threads_running.load(); },
        "Threads of the training passes running now in this process, each pass its full team "
        "(fits in several Python threads; for tests).");
  m.def("_halves_epochs", [] { return cpu::halves_epochs.load(); },
        "Epochs whose first layer's forward pass ran in two halves of its depth, so far in this "
        "process (for tests).");
  m.def(
      "_skipped_zero_steps",
      [] {
        return py::make_tuple(__atomic_load_n(&cpu::skipped_zero_steps[0], __ATOMIC_RELAXED),
                              __atomic_load_n(&cpu::skipped_zero_steps[1], __ATOMIC_RELAXED));
      },
      "Steps of A panels whose values were all zeros, skipped by the kernels so far in "
      "this process: (of column-major panels, of row-major panels) (for tests).");
  m.def("_row_blocks", &row_block_bounds, py::arg("rows"), py::arg("mr"),
        "The first row of each row block of a batch, then its row count (for tests).");
  m.def("_same_objects", &same_objects, py::arg("state"), py::arg("names"), py::arg("objects"),
        py::arg("n_lists"),
        "Whether the dict `state` holds the objects of `objects` under `names`, the first "
        "`n_lists` of them lists whose items follow in `objects` (identity, not equality).");
  m.def("_forget_team_choice", [] { cpu::TeamChooser::forget_shared(); },
        "New trainers start on the full team again, whatever earlier ones found (for tests).");
  // The chooser alone, fed with made-up timings (tests of its rules).
  py::class_<cpu::TeamChooser>(m, "_TeamChooser")
      .def(py::init([](const std::string& kind) {
             if (kind != "epoch" && kind != "prediction")
               throw py::value_error("kind must be 'epoch' or 'prediction'");
             return cpu::TeamChooser(kind == "epoch" ? cpu::TeamChooser::Kind::epoch
                                                     : cpu::TeamChooser::Kind::prediction);
           }),
           py::arg("kind"))
      // load: None (read the machine's), "free" (the other processes leave CPUs enough for the
      // team alone), "oversubscribed" or "unknown"; other_threads: None (count this process's
      // other training passes' threads), or their number.
      .def(
          "set_conditions",
          [](cpu::TeamChooser& chooser, std::optional<std::string> load, std::optional<int> other_threads) {
            std::optional<cpu::LoadState> state;
            if (load) {
              if (*load == "free")
                state = cpu::LoadState::free;
              else if (*load == "oversubscribed")
                state = cpu::LoadState::oversubscribed;
              else if (*load == "unknown")
                state = cpu::LoadState::unknown;
              else
                throw py::value_error("load must be None, 'free', 'oversubscribed' or 'unknown'");
            }
            if (other_threads && *other_threads < 0) throw py::value_error("other_threads must be >= 0");
            chooser.set_conditions_for_tests(state, other_threads);
          },
          py::arg("load") = py::none(), py::arg("other_threads") = py::none())
      .def("pick", &cpu::TeamChooser::pick, py::arg("full"))
      .def("record", &cpu::TeamChooser::record, py::arg("team"), py::arg("elapsed"), py::arg("rows"));
  m.def(
      "machine_load",
      [] {
        const cpu::MachineLoad load = cpu::machine_load();
        return py::make_tuple(load.runnable, load.own, load.cpus);
      },
      "(tasks running or waiting for a CPU on the machine now, this process's threads among "
      "them, CPUs online), from /proc; zeros without it. When the others and a team need more "
      "CPUs than there are, a new trainer starts on one thread (csrc/cpu/threads.h; "
      "FUSEDMLP_CHECK_LOAD=0 turns that off).");
  m.def("shuffled_indices", &shuffled_indices, py::arg("indices"), py::arg("bit_generator"),
        py::arg("mt19937") = false,
        "indices[p] for the permutation p that numpy.random.RandomState.shuffle makes of "
        "arange(len(indices)), with the same draws from bit_generator (a BitGenerator's capsule; "
        "hold its lock); mt19937=True: numpy's MT19937, whose layout _mt19937_layout_matches "
        "confirmed, drawn inline.");
  m.def("_mt19937_layout_matches", &mt19937_layout_matches, py::arg("bit_generator"),
        py::arg("key"), py::arg("pos"),
        "Whether an MT19937 capsule's state holds this key and position where the engine reads "
        "them.");
  m.def("max_threads", [] { return omp_get_max_threads(); },
        "OpenMP's current thread limit (OMP_NUM_THREADS, threadpoolctl).");
  m.def(
      "default_threads",
      &default_threads,
      py::arg("usable_cpus"),
      "The team of n_threads=None (see fusedmlp._engine.default_threads), in one call: "
      "OpenMP's current limit, capped at usable_cpus unless OMP_NUM_THREADS is set, 1 to 64.");
  m.def("activations", [] {
    py::list out;
    for (const ActivationInfo& a : kActivations) {
      py::dict d;
      d["name"] = a.name;
      d["derivative"] = a.derivative == Derivative::from_input    ? "input"
                        : a.derivative == Derivative::from_output ? "output"
                                                                  : "none";
      d["hidden"] = a.hidden;
      d["in_sklearn"] = a.in_sklearn;
      d["glorot_factor"] = a.glorot_factor;
      d["positive"] = a.positive;
      d["param"] = a.param[0] == '\0' ? py::object(py::none()) : py::object(py::str(a.param));
      d["param_default"] = a.param_default;
      out.append(d);
    }
    return out;
  }, "The activation registry (csrc/include/fusedmlp/activation.h), one dict per activation.");
  m.def("losses", [] {
    py::list out;
    for (const LossInfo& l : kLosses) {
      py::dict d;
      d["name"] = l.name;
      d["canonical_output"] = l.canonical_output == Activation::softmax
                                  ? "softmax" : activation_info(l.canonical_output).name;
      d["regression"] = l.regression;
      d["positive"] = l.positive;
      d["fused"] = l.fused;
      out.append(d);
    }
    return out;
  }, "The loss registry (csrc/include/fusedmlp/loss.h), one dict per loss.");
  m.def("dropout_mask", [](std::uint64_t seed, std::uint64_t epoch, std::uint64_t batch, int layer,
                           index_t rows, index_t units, double rate) {
    if (rows < 0 || units < 0) throw py::value_error("rows and units must be >= 0");
    if (!(rate >= 0.0 && rate < 1.0)) throw py::value_error("rate must be in [0, 1)");
    py::array_t<bool> kept({rows, units});
    bool* out = kept.mutable_data();
    const std::uint64_t key = dropout_key(seed, epoch, batch, layer);
    const std::uint32_t threshold = dropout_threshold(rate);
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < units; ++j)
        out[i * units + j] = threshold == 0 || dropout_bits(key, i, j) >= threshold;
    return kept;
  }, py::arg("seed"), py::arg("epoch"), py::arg("batch"), py::arg("layer"), py::arg("rows"),
     py::arg("units"), py::arg("rate"),
     "Which units dropout keeps in one layer of one batch (fusedmlp/dropout.h): the mask the "
     "engines apply, for tests.");
  m.def("single_threaded_after_fork", &single_threaded_after_fork,
        "Whether this process was forked after its parent ran a thread team (libgomp's pool "
        "does not survive fork), so every call runs on one thread.");
  m.def("_transpose_f32", &transpose_py<float>, py::arg("a"),
        "a.T (2-D, float32) as the engine transposes a layer's weights, for tests.");
  m.def("_transpose_f64", &transpose_py<double>, py::arg("a"),
        "a.T (2-D, float64) as the engine transposes a layer's weights, for tests.");
  m.def("gemm_f32", &gemm_py<float>, py::arg("a"), py::arg("b"), py::arg("epilogue") = "none",
        py::arg("activation") = "identity", py::arg("bias") = py::none(),
        py::arg("aux") = py::none(), py::arg("alpha") = 0.0, py::arg("scale") = 1.0,
        py::arg("colsum") = false, py::arg("n_threads") = 0, py::arg("c") = py::none(),
        py::arg("out") = py::none(), py::arg("check_a") = false, py::arg("zero_steps") = false);
  m.def("gemm_f64", &gemm_py<double>, py::arg("a"), py::arg("b"), py::arg("epilogue") = "none",
        py::arg("activation") = "identity", py::arg("bias") = py::none(),
        py::arg("aux") = py::none(), py::arg("alpha") = 0.0, py::arg("scale") = 1.0,
        py::arg("colsum") = false, py::arg("n_threads") = 0, py::arg("c") = py::none(),
        py::arg("out") = py::none(), py::arg("check_a") = false, py::arg("zero_steps") = false);
  bind_perceptron(m);
}
