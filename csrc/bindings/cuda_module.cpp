// fusedmlp._cuda (nvcc build) and fusedmlp._cuda_sim (the same engine on the CUDA simulator):
// argument checking and conversion only; the engine lives in csrc/cuda/.
//
// Arrays arrive as numpy arrays (host memory, copied to the device) or as any object with a
// __cuda_array_interface__ (CuPy, Numba, PyTorch CUDA tensors: read in place on the device,
// the engine's stream ordered after the producer's by an event).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/input.h"
#include "cuda/trainer.cuh"

#ifndef FUSEDMLP_CUDA_MODULE
#error "FUSEDMLP_CUDA_MODULE names the module (_cuda or _cuda_sim)"
#endif

namespace py = pybind11;
using namespace fusedmlp;
using fusedmlp::bindings::contiguous_ptr;
using fusedmlp::bindings::has_type;
using fusedmlp::bindings::EpochArgs;
using fusedmlp::bindings::epoch_result;
using fusedmlp::bindings::SignalCheck;

namespace {

bool on_device(const py::object& x) { return py::hasattr(x, "__cuda_array_interface__"); }

// A numpy array argument given as an object (None allowed by the caller): anything else is a
// TypeError, never a cast that would read a non-array as one.
py::array as_array(const py::object& a, const char* name) {
  if (!py::isinstance<py::array>(a)) throw py::type_error(std::string(name) + " must be a numpy array");
  return py::reinterpret_borrow<py::array>(a);
}

// A 2-D float32/float64 matrix, on the host (numpy) or on the device (__cuda_array_interface__).
struct Matrix {
  cuda::MatrixView view;
  py::object keep;
  std::uintptr_t stream = 0;
};

Matrix to_matrix(const py::object& x, index_t n_features) {
  Matrix m;
  m.keep = x;
  if (on_device(x)) {
    py::dict cai = x.attr("__cuda_array_interface__");
    py::tuple shape = cai["shape"];
    const std::string typestr = py::str(cai["typestr"]);
    if (shape.size() != 2) throw py::value_error("X must be 2-dimensional");
    if (typestr != "<f4" && typestr != "<f8")
      throw py::type_error("X on the device must be float32 or float64, got '" + typestr + "'");
    m.view.f32 = typestr == "<f4";
    const index_t isz = m.view.f32 ? 4 : 8;
    m.view.rows = shape[0].cast<index_t>();
    m.view.cols = shape[1].cast<index_t>();
    py::tuple data = cai["data"];
    m.view.data = reinterpret_cast<const void*>(data[0].cast<std::uintptr_t>());
    if (!cai.contains("strides") || cai["strides"].is_none()) {
      m.view.rs = m.view.cols;
      m.view.cs = 1;
    } else {
      py::tuple strides = cai["strides"];
      const index_t s0 = strides[0].cast<index_t>(), s1 = strides[1].cast<index_t>();
      if (s0 < 0 || s1 < 0 || s0 % isz != 0 || s1 % isz != 0)
        throw py::value_error("X on the device must have non-negative strides, multiples of its item size");
      m.view.rs = s0 / isz;
      m.view.cs = s1 / isz;
    }
    // an interface without "stream" (before version 3: PyTorch's) says nothing about where X was
    // made: the legacy default stream is waited for, as a blocking stream would; "stream": None
    // means nothing to wait for
    if (!cai.contains("stream"))
      m.stream = 1;
    else if (!cai["stream"].is_none())
      m.stream = cai["stream"].cast<std::uintptr_t>();
    m.view.on_device = true;
    const int owner = cuda::pointer_device(m.view.data);
    if (owner >= 0 && owner != cuda::current_device())
      throw py::value_error("X is on CUDA device " + std::to_string(owner) + " but the current device is " +
                            std::to_string(cuda::current_device()) +
                            "; select that device (e.g. with cupy.cuda.Device) or move X");
  } else {
    if (!py::isinstance<py::array>(x)) throw py::type_error("X must be a numpy array or a device array");
    py::array a = py::reinterpret_borrow<py::array>(x);
    if (a.ndim() != 2) throw py::value_error("X must be 2-dimensional");
    if (has_type<float>(a))
      m.view.f32 = true;
    else if (has_type<double>(a))
      m.view.f32 = false;
    else
      throw py::type_error("X must be float32 or float64, got " + std::string(py::str(a.dtype())));
    const index_t isz = m.view.f32 ? 4 : 8;
    if (a.strides(0) < 0 || a.strides(1) < 0 || a.strides(0) % isz != 0 || a.strides(1) % isz != 0)
      throw py::value_error("X must have non-negative strides, multiples of its item size");
    m.view.rows = a.shape(0);
    m.view.cols = a.shape(1);
    m.view.rs = a.strides(0) / isz;
    m.view.cs = a.strides(1) / isz;
    m.view.data = a.data();
    m.view.on_device = false;
  }
  if (m.view.cols != n_features)
    throw py::value_error("X has " + std::to_string(m.view.cols) + " features, the network expects " +
                          std::to_string(n_features));
  return m;
}

template <class T>
class PyTrainer {
 public:
  PyTrainer(const std::vector<index_t>& units, const std::string& activation, const std::string& loss,
            const std::string& out_activation, const py::dict& options)
      : trainer_(fusedmlp::bindings::make_layout(units, activation, loss, out_activation, options)) {}

  index_t n_params() const { return trainer_.layout().n_params; }
  int device() const { return trainer_.device(); }

  // params None: the epoch trains the device-resident parameters (set_parameters).
  py::dict run_epoch(const py::object& x, const py::array& y, const py::object& sample_weight,
                     const py::array& order, const py::object& params, const py::dict& opt,
                     const py::dict& hyper, std::uintptr_t stream) {
    const NetworkLayout& L = trainer_.layout();
    load(x, y, sample_weight);
    const index_t n_order = static_cast<index_t>(order.size());
    const index_t* idx = fusedmlp::bindings::row_order(order, rows_);
    T* p = params.is_none() ? nullptr
                            : contiguous_ptr<T>(as_array(params, "params"), "params", L.n_params, true);
    EpochArgs<T> args(hyper, opt, L.n_params, n_order);
    SignalCheck check;
    EpochResult r;
    {
      py::gil_scoped_release release;
      trainer_.set_stream(stream);
      r = trainer_.run_epoch(idx, n_order, p, args.state, args.opts,
                             std::ref(check));
    }
    args.finish();
    if (check.raised) throw py::error_already_set();
    return epoch_result(r);
  }

  // The training data on the device, copied again even when the arrays are the ones loaded
  // last (their values may have changed since: a kept engine serves several calls); run_epoch
  // and loss_grad then copy only other arrays.
  void load_training_data(const py::object& x, const py::array& y, const py::object& sample_weight) {
    x_ = py::object();
    load(x, y, sample_weight);
  }

  // Forgets the arrays of the last call (a kept engine keeps its device buffers, not the
  // caller's data); the next call loads its own.
  void release_data() {
    x_ = py::object();
    y_ = py::object();
    w_ = py::object();
    val_x_ = py::object();
    val_rows_ = 0;
  }

  // ---- device-resident training: the parameters and the optimizer state (the arrays of
  // `optimizer`, as run_epoch takes them) stay on the device between epochs

  void set_parameters(const py::array& params, const py::dict& opt) {
    const index_t n = trainer_.layout().n_params;
    const T* p = contiguous_ptr<T>(params, "params", n, false);
    const OptState st = optimizer_arrays(opt, false);
    py::gil_scoped_release release;
    trainer_.set_stream(0);
    trainer_.set_parameters(p, st.state, st.solver);
  }

  void get_parameters(const py::array& params, const py::dict& opt) {
    T* p = contiguous_ptr<T>(params, "params", trainer_.layout().n_params, true);
    OptState st = optimizer_arrays(opt, true);
    py::gil_scoped_release release;
    trainer_.set_stream(0);
    trainer_.get_parameters(p, st.state, st.solver);
  }

  void end_training() {
    release_data();
    py::gil_scoped_release release;
    trainer_.set_stream(0);
    trainer_.end_training();
  }

  bool parameters_finite() {
    py::gil_scoped_release release;
    trainer_.set_stream(0);
    return trainer_.parameters_finite();
  }

  void set_best(const py::array& params) {
    const T* p = contiguous_ptr<T>(params, "params", trainer_.layout().n_params, false);
    py::gil_scoped_release release;
    trainer_.set_stream(0);
    trainer_.set_best(p);
  }

  void keep_best() {
    py::gil_scoped_release release;
    trainer_.set_stream(0);
    trainer_.keep_best();
  }

  void get_best(const py::array& params) {
    T* p = contiguous_ptr<T>(params, "params", trainer_.layout().n_params, true);
    py::gil_scoped_release release;
    trainer_.set_stream(0);
    trainer_.get_best(p);
  }

  void restore_best() {
    py::gil_scoped_release release;
    trainer_.set_stream(0);
    trainer_.restore_best();
  }

  // X_val None: `rows` are rows of the training data loaded by the last run_epoch.
  void set_validation(const py::object& x, const py::object& rows, const py::array& y,
                      const py::object& sample_weight) {
    const NetworkLayout& L = trainer_.layout();
    Matrix m;
    index_t n = 0;
    const index_t* idx = nullptr;
    if (!x.is_none()) {
      m = to_matrix(x, L.n_inputs());
      n = m.view.rows;
      if (!rows.is_none()) throw py::value_error("set_validation takes X_val or rows, not both");
    } else {
      if (rows.is_none()) throw py::value_error("set_validation needs X_val or rows");
      if (!x_) throw py::value_error("set_validation: no training data loaded to take rows from");
      const py::array r = rows.cast<py::array>();
      n = static_cast<index_t>(r.size());
      idx = fusedmlp::bindings::row_order(r, rows_);
    }
    const T* yp = contiguous_ptr<T>(y, "Y_val", n * L.n_outputs(), false);
    const T* wp = nullptr;
    if (!sample_weight.is_none())
      wp = contiguous_ptr<T>(as_array(sample_weight, "sample_weight_val"), "sample_weight_val", n, false);
    {
      py::gil_scoped_release release;
      trainer_.set_stream(0);
      if (!x.is_none()) trainer_.order_after(m.stream);
      trainer_.set_validation(x.is_none() ? nullptr : &m.view, idx, n, yp, wp);
    }
    val_x_ = x;  // (device memory is read in place: keep it alive)
    val_rows_ = n;
  }

  // (objective, outputs): the validation set's loss + L2 term and its outputs (float64, host).
  py::tuple evaluate(double alpha) {
    if (val_rows_ == 0) throw py::value_error("evaluate: no validation set (set_validation)");
    const index_t n_val = val_rows_;
    py::array_t<double> out({n_val, trainer_.layout().n_outputs()});
    double* o = out.mutable_data();
    const double loss = fusedmlp::bindings::run_interruptible([&](const StopCheck& stop) {
      trainer_.set_stream(0);
      return trainer_.evaluate(alpha, o, stop);
    });
    return py::make_tuple(loss, out);
  }

  double loss_grad(const py::object& x, const py::array& y, const py::object& sample_weight,
                   const py::array& params, double alpha, const py::array& grad) {
    const NetworkLayout& L = trainer_.layout();
    load(x, y, sample_weight);
    const T* p = contiguous_ptr<T>(params, "params", L.n_params, false);
    T* g = contiguous_ptr<T>(grad, "grad", L.n_params, true);
    return fusedmlp::bindings::run_interruptible([&](const StopCheck& stop) {
      trainer_.set_stream(0);
      return trainer_.loss_grad(p, alpha, g, stop);
    });
  }

  py::array predict(const py::object& x, const py::array& params, std::uintptr_t stream) {
    const NetworkLayout& L = trainer_.layout();
    Matrix m = to_matrix(x, L.n_inputs());
    const T* p = contiguous_ptr<T>(params, "params", L.n_params, false);
    py::array_t<double> out({m.view.rows, L.n_outputs()});
    run_predict(m, p, out.mutable_data(), false, stream);
    return std::move(out);
  }

  // Writes into `out`, a C-contiguous float64 device array (rows x n_outputs).
  void predict_into(const py::object& x, const py::array& params, const py::object& out,
                    std::uintptr_t stream) {
    const NetworkLayout& L = trainer_.layout();
    Matrix m = to_matrix(x, L.n_inputs());
    if (!on_device(out)) throw py::type_error("out must be a device array");
    py::dict cai = out.attr("__cuda_array_interface__");
    py::tuple shape = cai["shape"];
    if (std::string(py::str(cai["typestr"])) != "<f8" || shape.size() != 2 ||
        shape[0].cast<index_t>() != m.view.rows || shape[1].cast<index_t>() != L.n_outputs() ||
        (cai.contains("strides") && !cai["strides"].is_none()))
      throw py::value_error("out must be a C-contiguous float64 device array of shape (n_rows, n_outputs)");
    double* o = reinterpret_cast<double*>(py::tuple(cai["data"])[0].cast<std::uintptr_t>());
    run_predict(m, contiguous_ptr<T>(params, "params", L.n_params, false), o, true, stream);
  }

 private:
  struct OptState {
    OptimizerState<T> state;
    Solver solver = Solver::adam;
  };
  // The optimizer's arrays: SGD's velocity, or Adam's m and v (t crosses with each epoch).
  OptState optimizer_arrays(const py::dict& opt, bool writable) const {
    const index_t n = trainer_.layout().n_params;
    OptState st;
    if (opt.contains("velocity")) {
      st.solver = Solver::sgd;
      st.state.velocity = contiguous_ptr<T>(opt["velocity"], "velocity", n, writable);
    } else {
      if (!opt.contains("m") || !opt.contains("v")) throw py::key_error("the optimizer lacks 'm' and 'v'");
      st.state.m = contiguous_ptr<T>(opt["m"], "m", n, writable);
      st.state.v = contiguous_ptr<T>(opt["v"], "v", n, writable);
    }
    return st;
  }

  // The prediction itself, GIL released, Ctrl-C polled between chunks.
  void run_predict(const Matrix& m, const T* p, double* o, bool out_on_device, std::uintptr_t stream) {
    SignalCheck check;
    bool finished;
    {
      py::gil_scoped_release release;
      trainer_.set_stream(stream);
      trainer_.order_after(m.stream);
      finished = trainer_.predict(m.view, p, o, out_on_device, std::ref(check));
    }
    if (!finished && check.raised) throw py::error_already_set();
  }

  // The training data goes to the device once: again only when other arrays come.
  void load(const py::object& x, const py::array& y, const py::object& sample_weight) {
    const NetworkLayout& L = trainer_.layout();
    if (x.is(x_) && y.is(y_) && sample_weight.is(w_)) return;
    Matrix m = to_matrix(x, L.n_inputs());
    const T* yp = contiguous_ptr<T>(y, "Y", m.view.rows * L.n_outputs(), false);
    const T* wp = nullptr;
    if (!sample_weight.is_none())
      wp = contiguous_ptr<T>(as_array(sample_weight, "sample_weight"), "sample_weight", m.view.rows, false);
    {
      py::gil_scoped_release release;
      trainer_.set_stream(0);
      trainer_.order_after(m.stream);
      trainer_.load_training_data(m.view, yp, wp);
    }
    x_ = x;
    y_ = y;
    w_ = sample_weight;
    rows_ = m.view.rows;
    val_rows_ = 0;  // (the engine forgets a validation set taken from the old data)
    val_x_ = py::none();
  }

  cuda::Trainer<T> trainer_;
  py::object x_, y_, w_;
  index_t rows_ = 0;
  py::object val_x_;
  index_t val_rows_ = 0;
};

template <class T>
py::object gemm_py(const py::array& a, const py::array& b, const std::string& epilogue,
                   const std::string& activation, const py::object& bias, const py::object& aux,
                   double alpha, double scale, bool with_colsum, py::object c_in, int splits) {
  if (a.ndim() != 2 || b.ndim() != 2) throw py::value_error("gemm: A and B must be 2-D");
  if (!has_type<T>(a) || !has_type<T>(b)) throw py::type_error("gemm: A and B must share the dtype");
  if (a.shape(1) != b.shape(0)) throw py::value_error("gemm: inner dimensions differ");
  const index_t m = a.shape(0), k = a.shape(1), n = b.shape(1);
  const auto isz = static_cast<index_t>(sizeof(T));
  for (const py::array* x : {&a, &b})
    if (x->strides(0) < 0 || x->strides(1) < 0 || x->strides(0) % isz != 0 || x->strides(1) % isz != 0)
      throw py::value_error("gemm: strides must be non-negative multiples of the item size");
  int epi;
  if (epilogue == "none") epi = 0;
  else if (epilogue == "bias_activation") epi = 1;
  else if (epilogue == "weight_grad") epi = 2;
  else if (epilogue == "activation_grad") epi = 3;
  else throw py::value_error("gemm: unknown epilogue '" + epilogue + "'");
  const Activation act = activation_from_name(activation);
  if (epi == 1 || epi == 3) check_hidden_activation(act);
  py::array_t<T, py::array::c_style | py::array::forcecast> bias_arr, aux_arr;
  const T* bp = nullptr;
  const T* ap = nullptr;
  if (epi == 1) {
    bias_arr = py::array_t<T, py::array::c_style | py::array::forcecast>(bias);
    bp = contiguous_ptr<T>(bias_arr, "bias", n, false);
  }
  if (epi == 2 || epi == 3) {
    aux_arr = py::array_t<T, py::array::c_style | py::array::forcecast>(aux);
    ap = contiguous_ptr<T>(aux_arr, "aux", m * n, false);
  }
  py::array_t<T> c({m, n});
  bool accumulate = false;
  if (!c_in.is_none()) {
    py::array ci = py::array_t<T, py::array::c_style | py::array::forcecast>(c_in);
    std::copy_n(contiguous_ptr<T>(ci, "C", m * n, false), m * n, c.mutable_data());
    accumulate = true;
  } else {
    std::fill_n(c.mutable_data(), m * n, T(0));
  }
  py::array_t<T> colsum(n);
  std::fill_n(colsum.mutable_data(), n, T(0));
  {
    py::gil_scoped_release release;
    cuda::test_gemm<T>(m, n, k, static_cast<const T*>(a.data()), a.strides(0) / isz, a.strides(1) / isz,
                       static_cast<const T*>(b.data()), b.strides(0) / isz, b.strides(1) / isz,
                       c.mutable_data(), epi, act, bp, ap, static_cast<T>(alpha), static_cast<T>(scale),
                       with_colsum ? colsum.mutable_data() : nullptr, accumulate, splits);
  }
  if (with_colsum) return py::make_tuple(c, colsum);
  return std::move(c);
}

template <class T>
void bind_trainer(py::module_& m, const char* name) {
  py::class_<PyTrainer<T>>(m, name)
      .def(py::init<const std::vector<index_t>&, const std::string&, const std::string&,
                    const std::string&, const py::dict&>(),
           py::arg("units"), py::arg("activation"), py::arg("loss"), py::arg("out_activation") = "",
           py::arg("options") = py::dict())
      .def_property_readonly("n_params", &PyTrainer<T>::n_params)
      .def_property_readonly("device", &PyTrainer<T>::device)
      .def("run_epoch", &PyTrainer<T>::run_epoch, py::arg("X"), py::arg("Y"), py::arg("sample_weight"),
           py::arg("order"), py::arg("params"), py::arg("optimizer"), py::arg("hyper"),
           py::arg("stream") = 0)
      .def("load_training_data", &PyTrainer<T>::load_training_data, py::arg("X"), py::arg("Y"),
           py::arg("sample_weight"))
      .def("release_data", &PyTrainer<T>::release_data)
      .def("set_parameters", &PyTrainer<T>::set_parameters, py::arg("params"), py::arg("optimizer"))
      .def("get_parameters", &PyTrainer<T>::get_parameters, py::arg("params"), py::arg("optimizer"))
      .def("end_training", &PyTrainer<T>::end_training)
      .def("parameters_finite", &PyTrainer<T>::parameters_finite)
      .def("set_best", &PyTrainer<T>::set_best, py::arg("params"))
      .def("keep_best", &PyTrainer<T>::keep_best)
      .def("get_best", &PyTrainer<T>::get_best, py::arg("params"))
      .def("restore_best", &PyTrainer<T>::restore_best)
      .def("set_validation", &PyTrainer<T>::set_validation, py::arg("X_val"), py::arg("rows"), py::arg("Y_val"),
           py::arg("sample_weight"))
      .def("evaluate", &PyTrainer<T>::evaluate, py::arg("alpha"))
      .def("loss_grad", &PyTrainer<T>::loss_grad, py::arg("X"), py::arg("Y"), py::arg("sample_weight"),
           py::arg("params"), py::arg("alpha"), py::arg("grad"))
      .def("predict", &PyTrainer<T>::predict, py::arg("X"), py::arg("params"), py::arg("stream") = 0)
      .def("predict_into", &PyTrainer<T>::predict_into, py::arg("X"), py::arg("params"), py::arg("out"),
           py::arg("stream") = 0);
}

}  // namespace

// A C-contiguous float32 matrix in device memory of the device current when it was made,
// exposed through __cuda_array_interface__ only: the tests' array on a chosen device.
class TestDeviceArray {
 public:
  explicit TestDeviceArray(const py::array_t<float, py::array::c_style | py::array::forcecast>& a)
      : rows_(a.ndim() > 0 ? a.shape(0) : 0), cols_(a.ndim() > 1 ? a.shape(1) : 1),
        data_(cuda::device_copy(a.data(), static_cast<std::size_t>(a.nbytes()))) {}
  ~TestDeviceArray() { cuda::device_free(data_); }
  TestDeviceArray(const TestDeviceArray&) = delete;
  TestDeviceArray& operator=(const TestDeviceArray&) = delete;
  py::dict interface() const {
    py::dict d;
    d["shape"] = py::make_tuple(rows_, cols_);
    d["typestr"] = "<f4";
    d["data"] = py::make_tuple(reinterpret_cast<std::uintptr_t>(data_), false);
    d["version"] = 3;
    d["strides"] = py::none();
    d["stream"] = py::none();
    return d;
  }

 private:
  py::ssize_t rows_, cols_;
  void* data_;
};

PYBIND11_MODULE(FUSEDMLP_CUDA_MODULE, m) {
  py::class_<TestDeviceArray>(m, "_TestDeviceArray", py::module_local())
      .def(py::init<const py::array_t<float, py::array::c_style | py::array::forcecast>&>())
      .def_property_readonly("__cuda_array_interface__", &TestDeviceArray::interface);
  m.doc() = "fusedmlp CUDA engine: fused kernels for training and inference on a device";
  bind_trainer<float>(m, "TrainerF32");
  bind_trainer<double>(m, "TrainerF64");
  m.def("device_count", &cuda::device_count, "Number of usable CUDA devices.");
  m.def("current_device", &cuda::current_device, "The calling thread's current CUDA device.");
  m.def("set_device", &cuda::set_device, py::arg("device"),
        "Makes a device the calling thread's current one (cudaSetDevice).");
  m.def(
      "runtime_counts",
      [] {
        const cuda::RuntimeCounts c = cuda::runtime_counts();
        py::dict d;
        d["allocations"] = c.allocations;
        d["host_to_device"] = c.host_to_device;
        d["device_to_host"] = c.device_to_host;
        d["host_to_device_bytes"] = c.host_to_device_bytes;
        d["device_to_host_bytes"] = c.device_to_host_bytes;
        d["graphs"] = c.graphs;
        d["kernels"] = c.kernels;
        return d;
      },
      "The simulator's allocations, copies each way, graphs instantiated and kernels run since the "
      "module was loaded.");
  m.def(
      "device_status",
      [] {
        const cuda::DeviceStatus s = cuda::device_status();
        py::dict d;
        d["count"] = s.count;
        d["driver_version"] = s.driver_version;
        d["runtime_version"] = s.runtime_version;
        d["error_name"] = s.error_name;
        d["error_text"] = s.error_text;
        return d;
      },
      "The usable devices, the driver's and runtime's CUDA versions, and the runtime's error when "
      "there is no device.");
  m.def(
      "all_finite",
      [](const py::object& x) {
        if (!on_device(x)) throw py::type_error("all_finite takes a device array");
        py::dict cai = x.attr("__cuda_array_interface__");
        Matrix m = to_matrix(x, py::tuple(cai["shape"]).size() == 2 ? py::tuple(cai["shape"])[1].cast<index_t>() : 0);
        py::gil_scoped_release release;
        cuda::wait_for_stream(m.stream);
        return cuda::all_finite(m.view);
      },
      py::arg("X"), "Whether every element of a 2-D device array is finite.");
  m.attr("simulated") = cuda::simulated();
  m.def("gemm_f32", &gemm_py<float>, py::arg("a"), py::arg("b"), py::arg("epilogue") = "none",
        py::arg("activation") = "identity", py::arg("bias") = py::none(), py::arg("aux") = py::none(),
        py::arg("alpha") = 0.0, py::arg("scale") = 1.0, py::arg("colsum") = false, py::arg("c") = py::none(),
        py::arg("splits") = 1);
  m.def("gemm_f64", &gemm_py<double>, py::arg("a"), py::arg("b"), py::arg("epilogue") = "none",
        py::arg("activation") = "identity", py::arg("bias") = py::none(), py::arg("aux") = py::none(),
        py::arg("alpha") = 0.0, py::arg("scale") = 1.0, py::arg("colsum") = false, py::arg("c") = py::none(),
        py::arg("splits") = 1);
}
