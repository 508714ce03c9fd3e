"""ONNX export of fusedmlp's MLPClassifier and MLPRegressor, through skl2onnx.

After ``register_onnx_converters()``, skl2onnx converts fusedmlp's estimators as it converts
scikit-learn's MLPs, alone or inside a pipeline::

    from skl2onnx import to_onnx
    from fusedmlp._onnx import register_onnx_converters

    register_onnx_converters()
    onx = to_onnx(clf, X[:1].astype(np.float32), options={"zipmap": False})

The graphs have scikit-learn's outputs and options: a classifier gives ``label`` and
``probabilities`` (two columns for a binary problem, one per label for multilabel targets),
with skl2onnx's ``zipmap``, ``output_class_labels`` and ``nocl`` options; a regressor gives
``variable`` of shape (N, n_outputs), (N, 1) for one output. As skl2onnx does, the graph
computes in its input's float type: float for float32 (and integer) input, double for float64
input, whatever the estimator's ``dtype``.

Every activation of fusedmlp's registry (``csrc/include/fusedmlp/activation.h``) is written
with the standard ONNX operators that match its formula best. The logistic function is
1 / (1 + exp(-z)), as the engines compute it, not the Sigmoid operator, whose ONNX Runtime
kernels lose the lower tail. Where ONNX Runtime has no double kernel (Erf, Elu, Selu,
LeakyRelu, Softplus), double graphs compose the same formula from operators it has, keeping
double accuracy: expm1 and log1p by Kahan's tricks, erf by fdlibm's rational approximations
(those of glibc's erf, which the float64 engine calls).
"""

from numbers import Integral

import numpy as np

from . import _cpu

# X(...) rows of activation.h, as the compiled module lists them: the parameter names
# (leaky_relu's negative_slope, elu's elu_alpha) are read, not written twice.
_REGISTRY = {a["name"]: a for a in _cpu.activations()}

_SELU_SCALE = 1.0507009873554804934193349852946  # kSeluScale
_SELU_ALPHA = 1.6732632423543772848170429916717  # kSeluAlpha
_SQRT_HALF = 0.70710678118654752440084436210485  # kSqrtHalf, 1 / sqrt(2)
_SQRT_2_OVER_PI = 0.79788456080286535587989211986876  # kSqrt2OverPi
_GELU_CUBIC = 0.044715  # kGeluCubic
_SOFTPLUS_LINEAR_ABOVE = 20.0  # softplus is z itself above 20 (PyTorch's threshold)

_CLASSIFIER_ALIAS = "FusedmlpMLPClassifier"
_REGRESSOR_ALIAS = "FusedmlpMLPRegressor"
_MIN_OPSET = 11  # Equal on floats, Where, Erf, IsNaN, Sign


def register_onnx_converters():
    """Register converters for fusedmlp's MLPClassifier and MLPRegressor with skl2onnx.

    Afterwards ``skl2onnx.to_onnx`` and ``skl2onnx.convert_sklearn`` convert fusedmlp's
    estimators, alone or inside pipelines, with the outputs and options of scikit-learn's
    MLPs: the classifier accepts ``zipmap`` (True, False, 'columns'),
    ``output_class_labels`` and ``nocl``. Calling it again changes nothing.

    Raises
    ------
    ImportError
        When skl2onnx is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from skl2onnx import to_onnx
    >>> from fusedmlp import MLPClassifier
    >>> from fusedmlp._onnx import register_onnx_converters
    >>> register_onnx_converters()
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    >>> clf = MLPClassifier((4,), solver="lbfgs", random_state=0).fit(X, [0, 1, 1, 0])
    >>> onx = to_onnx(clf, X[:1], options={"zipmap": False})
    >>> [o.name for o in onx.graph.output]
    ['label', 'probabilities']
    """
    try:
        from skl2onnx import update_registered_converter
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ONNX export needs skl2onnx (and onnxruntime to run the graphs): "
            "pip install skl2onnx onnxruntime"
        ) from error
    from ._multilayer_perceptron import MLPClassifier, MLPRegressor

    # overwrite=True: registering again replaces the entries with the same ones
    update_registered_converter(
        MLPClassifier,
        _CLASSIFIER_ALIAS,
        _classifier_shapes,
        _convert_classifier,
        overwrite=True,
        parser=_parse_classifier,
        options={
            "zipmap": [True, False, "columns"],
            "output_class_labels": [False, True],
            "nocl": [True, False],
        },
    )
    update_registered_converter(
        MLPRegressor,
        _REGRESSOR_ALIAS,
        _regressor_shapes,
        _convert_regressor,
        overwrite=True,
    )


# ---- what can be converted ----------------------------------------------------------------


def _check_convertible(model):
    """A clear error before any graph is built: unfitted, or an activation without formula."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "coefs_")
    hidden = sorted(name for name, a in _REGISTRY.items() if a["hidden"] and name in _ACTIVATIONS)
    if model.activation not in hidden:
        raise ValueError(
            f"The ONNX converter has no formula for the hidden activation "
            f"{model.activation!r} (it converts {hidden}): the formula belongs in "
            "_ACTIVATIONS in fusedmlp/_onnx.py."
        )
    if model.out_activation_ not in _ACTIVATIONS and model.out_activation_ != "softmax":
        raise ValueError(
            f"The ONNX converter has no formula for the output activation "
            f"{model.out_activation_!r}: the formula belongs in _ACTIVATIONS in "
            "fusedmlp/_onnx.py."
        )


def _is_multilabel(model):
    binarizer = getattr(model, "_label_binarizer", None)
    return getattr(binarizer, "y_type_", "") == "multilabel-indicator"


def _label_tensor(classes):
    """Class labels as an ONNX tensor's content: (int64 array, 'int64') or (utf-8 bytes,
    'string'), as skl2onnx writes scikit-learn's labels."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "biu":
        return classes.astype(np.int64), "int64"
    if classes.dtype.kind == "f":
        if np.all(np.isfinite(classes)) and np.all(classes == np.round(classes)):
            return classes.astype(np.int64), "int64"
        raise ValueError(
            f"ONNX labels are integers or strings; these class labels are non-integral "
            f"floats ({classes[:5]}). Encode y as integers (LabelEncoder) or strings before "
            "fitting."
        )
    if all(isinstance(c, str) for c in classes):
        return np.array([c.encode("utf-8") for c in classes], dtype=object), "string"
    if all(isinstance(c, (Integral, np.bool_)) for c in classes):  # integers in an object array
        return classes.astype(np.int64), "int64"
    raise ValueError(
        f"ONNX labels are integers or strings; these class labels are of type "
        f"{type(classes[0]).__name__}. Encode y as integers or strings before fitting."
    )


# ---- parser and shape calculators ----------------------------------------------------------


def _parse_classifier(scope, model, inputs, custom_parsers=None):
    """skl2onnx's parser of classifiers (label, probabilities, then the zipmap and class
    label options), once the model is known to be convertible: it reads classes_."""
    from skl2onnx._parse import _parse_sklearn_classifier

    _check_convertible(model)
    return _parse_sklearn_classifier(scope, model, inputs, custom_parsers=custom_parsers)


def _graph_tensor_type(input_type):
    """The float tensor type the graph computes in: double for double input, else float."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    return DoubleTensorType if isinstance(input_type, DoubleTensorType) else FloatTensorType


def _check_inputs_outputs(operator, n_outputs):
    from skl2onnx.common.data_types import (
        BooleanTensorType,
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
    )
    from skl2onnx.common.utils import (
        check_input_and_output_numbers,
        check_input_and_output_types,
    )

    check_input_and_output_numbers(
        operator, input_count_range=1, output_count_range=n_outputs
    )
    check_input_and_output_types(
        operator,
        good_input_types=[BooleanTensorType, DoubleTensorType, FloatTensorType, Int64TensorType],
    )


def _classifier_shapes(operator):
    """label: (N,) of the classes' type, or (N, n_labels) int64 for multilabel targets;
    probabilities: (N, n_classes) in the graph's float type."""
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType
    from skl2onnx.common.utils_classifier import get_label_classes

    _check_inputs_outputs(operator, 2)
    model = operator.raw_operator
    _check_convertible(model)
    n_rows = operator.inputs[0].get_first_dimension()
    if _is_multilabel(model):
        operator.outputs[0].set_type(Int64TensorType(shape=[n_rows, model.n_outputs_]))
        n_columns = model.n_outputs_
    else:
        _, kind = _label_tensor(get_label_classes(operator.scope_inst, model))
        label_type = Int64TensorType if kind == "int64" else StringTensorType
        operator.outputs[0].set_type(label_type(shape=[n_rows]))
        n_columns = 2 if model.n_outputs_ == 1 else model.n_outputs_
    float_type = _graph_tensor_type(operator.inputs[0].type)
    operator.outputs[1].set_type(float_type(shape=[n_rows, n_columns]))


def _regressor_shapes(operator):
    """variable: (N, n_outputs) in the graph's float type."""
    _check_inputs_outputs(operator, 1)
    model = operator.raw_operator
    _check_convertible(model)
    n_rows = operator.inputs[0].get_first_dimension()
    float_type = _graph_tensor_type(operator.inputs[0].type)
    operator.outputs[0].set_type(float_type(shape=[n_rows, model.n_outputs_]))


# ---- graph building -----------------------------------------------------------------------


class _Graph:
    """Nodes and constants over skl2onnx's scope and container, in one float type."""

    def __init__(self, scope, container, double):
        from onnx import TensorProto

        if container.target_opset is not None and container.target_opset < _MIN_OPSET:
            raise ValueError(
                f"fusedmlp's ONNX converters need target_opset >= {_MIN_OPSET}; got "
                f"{container.target_opset}. Pass target_opset={_MIN_OPSET} or more, or None "
                "(skl2onnx's default)."
            )
        self.scope = scope
        self.container = container
        self.double = double
        self.proto_dtype = TensorProto.DOUBLE if double else TensorProto.FLOAT
        self.np_dtype = np.float64 if double else np.float32
        self._constants = {}

    def tensor(self, array, hint, dtype=None):
        """An initializer holding `array` (the graph's float type unless `dtype` says)."""
        from onnx import numpy_helper

        name = self.scope.get_unique_variable_name(hint)
        array = np.ascontiguousarray(array, dtype=dtype or self.np_dtype)
        proto = numpy_helper.from_array(array, name)
        self.container.add_initializer(name, proto.data_type, list(array.shape), proto)
        return name

    def const(self, value):
        """A scalar of the graph's float type, one initializer per value."""
        key = float(value)
        if key not in self._constants:
            self._constants[key] = self.tensor(np.array(key), "c")
        return self._constants[key]

    def node(self, op_type, inputs, output=None, op_domain="", **attrs):
        """Add a node; returns its output's name (`output`, or a new unique one)."""
        if output is None:
            output = self.scope.get_unique_variable_name(op_type.lower())
        inputs = [self.const(i) if isinstance(i, (int, float)) else i for i in inputs]
        self.container.add_node(
            op_type,
            inputs,
            output,
            op_domain=op_domain,
            name=self.scope.get_unique_operator_name(op_type),
            **attrs,
        )
        return output

    def add(self, a, b):
        return self.node("Add", [a, b])

    def sub(self, a, b):
        return self.node("Sub", [a, b])

    def mul(self, a, b):
        return self.node("Mul", [a, b])

    def div(self, a, b):
        return self.node("Div", [a, b])

    def where(self, condition, a, b):
        return self.node("Where", [condition, a, b])

    def poly(self, x, coefficients):
        """c[0] + x * (c[1] + x * (... + x * c[-1])), Horner's scheme as fdlibm writes it."""
        acc = self.const(coefficients[-1])
        for c in reversed(coefficients[:-1]):
            acc = self.add(self.mul(x, acc), c)
        return acc


def _expm1(g, x):
    """exp(x) - 1 without cancellation near 0 (ONNX has no Expm1): Kahan's
    (u - 1) * x / log(u) with u = exp(x), exact to a few ulp."""
    u = g.node("Exp", [x])
    u_minus_1 = g.sub(u, 1.0)
    kahan = g.div(g.mul(u_minus_1, x), g.node("Log", [u]))
    saturated = g.where(g.node("Equal", [u_minus_1, g.const(-1.0)]), g.const(-1.0), kahan)
    return g.where(g.node("Equal", [u, g.const(1.0)]), x, saturated)


def _log1p(g, x):
    """log(1 + x) without cancellation near 0 (ONNX has no Log1p): Kahan's
    log(w) * x / (w - 1) with w = 1 + x, exact to a few ulp."""
    w = g.add(x, 1.0)
    w_minus_1 = g.sub(w, 1.0)
    kahan = g.div(g.mul(g.node("Log", [w]), x), w_minus_1)
    return g.where(g.node("Equal", [w_minus_1, g.const(0.0)]), x, kahan)


# fdlibm's s_erf.c (Sun Microsystems, 1993): rational approximations of erf on [0, 0.84375)
# and [0.84375, 1.25), and of erfc on [1.25, 1/0.35) and [1/0.35, 6); erf is +-1 beyond 6.
_ERX = 8.45062911510467529297e-01
_PP = [1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05]
_QQ = [1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02,
       5.08130628187576562776e-03, 1.32494738004321644526e-04, -3.96022827877536812320e-06]
_PA = [-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03]
_QA = [1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01,
       7.18286544141962662868e-02, 1.26171219808761642112e-01, 1.36370839120290507362e-02,
       1.19844998467991074170e-02]
_RA = [-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00]
_SA = [1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02,
       4.34565877475229228821e+02, 6.45387271733267880336e+02, 4.29008140027567833386e+02,
       1.08635005541779435134e+02, 6.57024977031928170135e+00, -6.04244152148580987438e-02]
_RB = [-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02]
_SB = [1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02,
       1.53672958608443695994e+03, 3.19985821950859553908e+03, 2.55305040643316442583e+03,
       4.74528541206955367215e+02, -2.24409524465858183362e+01]


def _erf_double(g, x):
    """erf in double from operators ONNX Runtime runs in double (it has no double Erf):
    fdlibm's algorithm, every branch evaluated and the right one selected."""
    from onnx import TensorProto

    ax = g.node("Abs", [x])
    sign = g.node("Sign", [x])
    # |x| < 0.84375: x + x * P(x^2) / Q(x^2)
    x2 = g.mul(x, x)
    small = g.add(x, g.mul(x, g.div(g.poly(x2, _PP), g.poly(x2, _QQ))))
    # 0.84375 <= |x| < 1.25: sign * (erx + P(s) / Q(s)), s = |x| - 1
    s = g.sub(ax, 1.0)
    middle = g.mul(sign, g.add(g.const(_ERX), g.div(g.poly(s, _PA), g.poly(s, _QA))))
    # 1.25 <= |x| < 6: sign * (1 - exp(-x^2 - 0.5625 + R/S) / |x|), R, S of 1 / x^2; with
    # fdlibm's split of x^2: z (|x| rounded to float) has z * z exact in double
    t = g.div(1.0, g.mul(ax, ax))
    near = g.node("Less", [ax, g.const(1 / 0.35)])
    r_over_s = g.where(
        near,
        g.div(g.poly(t, _RA), g.poly(t, _SA)),
        g.div(g.poly(t, _RB), g.poly(t, _SB)),
    )
    z = g.node("Cast", [g.node("Cast", [ax], to=TensorProto.FLOAT)], to=TensorProto.DOUBLE)
    head = g.node("Exp", [g.sub(g.node("Neg", [g.mul(z, z)]), 0.5625)])
    tail = g.node("Exp", [g.add(g.mul(g.sub(z, ax), g.add(z, ax)), r_over_s)])
    erfc = g.div(g.mul(head, tail), ax)
    large = g.mul(sign, g.sub(1.0, erfc))
    # |x| >= 6 (and NaN): sign(x)
    return g.where(
        g.node("Less", [ax, g.const(0.84375)]),
        small,
        g.where(
            g.node("Less", [ax, g.const(1.25)]),
            middle,
            g.where(g.node("Less", [ax, g.const(6.0)]), large, sign),
        ),
    )


# Each activation as activation.h's activate() writes it (same operation order where the
# order changes the rounding); p is the activation's parameter.


def _identity(g, z, p):
    return z


def _sigmoid(g, z):
    """1 / (1 + exp(-z)), scipy's expit as activation.h writes it. Not the Sigmoid operator:
    ONNX Runtime's loses relative accuracy in the lower tail (4x off below z = -16 in float,
    0 below z = -37 in double), where this stays within an ulp or two."""
    return g.div(1.0, g.add(g.node("Exp", [g.node("Neg", [z])]), 1.0))


def _logistic(g, z, p):
    return _sigmoid(g, z)


def _tanh(g, z, p):
    return g.node("Tanh", [z])


def _relu(g, z, p):
    return g.node("Relu", [z])


def _exp(g, z, p):
    return g.node("Exp", [z])


def _softplus(g, z, p):
    if not g.double:
        return g.node("Softplus", [z])
    # log1p(exp(z)), and z itself above 20
    soft = _log1p(g, g.node("Exp", [z]))
    linear = g.node("Greater", [z, g.const(_SOFTPLUS_LINEAR_ABOVE)])
    return g.where(linear, z, soft)


def _selu(g, z, p):
    if not g.double:
        return g.node("Selu", [z], alpha=float(_SELU_ALPHA), gamma=float(_SELU_SCALE))
    negative = g.mul(g.const(_SELU_SCALE * _SELU_ALPHA), _expm1(g, z))
    return g.where(g.node("Greater", [z, g.const(0.0)]), g.mul(g.const(_SELU_SCALE), z), negative)


def _leaky_relu(g, z, p):
    if not g.double:  # x if x >= 0 else alpha * x: the same numbers (both give 0 at 0)
        return g.node("LeakyRelu", [z], alpha=float(p))
    return g.where(g.node("Greater", [z, g.const(0.0)]), z, g.mul(z, g.const(p)))


def _elu(g, z, p):
    if not g.double:
        return g.node("Elu", [z], alpha=float(p))
    return g.where(g.node("Greater", [z, g.const(0.0)]), z, g.mul(g.const(p), _expm1(g, z)))


def _gelu(g, z, p):
    # 0.5 * z * (1 + erf(z / sqrt(2)))
    u = g.mul(z, g.const(_SQRT_HALF))
    erf = _erf_double(g, u) if g.double else g.node("Erf", [u])
    return g.mul(g.mul(g.const(0.5), z), g.add(g.const(1.0), erf))


def _gelu_tanh(g, z, p):
    # 0.5 * z * (1 + tanh(sqrt(2 / pi) * (z + 0.044715 * z^3)))
    cubic = g.mul(g.mul(g.mul(g.const(_GELU_CUBIC), z), z), z)
    t = g.node("Tanh", [g.mul(g.const(_SQRT_2_OVER_PI), g.add(z, cubic))])
    return g.mul(g.mul(g.const(0.5), z), g.add(g.const(1.0), t))


def _silu(g, z, p):
    return g.mul(z, _sigmoid(g, z))


def _heaviside(g, z, p):
    # 1 from 0 on, 0 below; NaN stays NaN
    inner = g.where(g.node("IsNaN", [z]), z, g.const(1.0))
    return g.where(g.node("Less", [z, g.const(0.0)]), g.const(0.0), inner)


def _sign(g, z, p):
    return g.node("Sign", [z])  # numpy.sign: -1, 0, 1, NaN for NaN


def _softmax(g, z, p):
    return g.node("Softmax", [z], axis=1)


_ACTIVATIONS = {
    "identity": _identity,
    "logistic": _logistic,
    "tanh": _tanh,
    "relu": _relu,
    "softplus": _softplus,
    "selu": _selu,
    "exp": _exp,
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": _silu,
    "heaviside": _heaviside,
    "sign": _sign,
}


def _activation_param(model, name):
    param = _REGISTRY.get(name, {}).get("param")
    if param is None:
        return 0.0
    return float(getattr(model, param, _REGISTRY[name]["param_default"]))


def _forward(g, model, input_variable):
    """The network's output, output activation applied: (N, n_outputs) in the graph's type."""
    from skl2onnx.common.data_types import guess_proto_type

    x = input_variable.full_name
    if guess_proto_type(input_variable.type) != g.proto_dtype:
        x = g.node("Cast", [x], to=g.proto_dtype)
    hidden = _ACTIVATIONS[model.activation]
    hidden_param = _activation_param(model, model.activation)
    last = len(model.coefs_) - 1
    for i, (coef, intercept) in enumerate(zip(model.coefs_, model.intercepts_)):
        # x: (N, fan_in), coef: (fan_in, fan_out), z: (N, fan_out)
        weights = g.tensor(np.asarray(coef), "coefficient")
        bias = g.tensor(np.asarray(intercept).reshape(1, -1), "intercepts")
        z = g.add(g.node("MatMul", [x, weights]), bias)
        if i < last:
            x = hidden(g, z, hidden_param)
        elif model.out_activation_ == "softmax":
            x = _softmax(g, z, 0.0)
        else:
            out = model.out_activation_
            x = _ACTIVATIONS[out](g, z, _activation_param(model, out))
    return x


# ---- converters ---------------------------------------------------------------------------


def _convert_classifier(scope, operator, container):
    """label and probabilities, as skl2onnx's converter of scikit-learn's MLPClassifier."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.common.utils_classifier import get_label_classes

    model = operator.raw_operator
    g = _Graph(scope, container, isinstance(operator.inputs[0].type, DoubleTensorType))
    y = _forward(g, model, operator.inputs[0])
    label_name = operator.outputs[0].full_name
    proba_name = operator.outputs[1].full_name

    if _is_multilabel(model):
        # one logistic output per label: probabilities as they are, labels above 0.5
        g.node("Identity", [y], proba_name)
        above = g.node("Greater", [y, g.const(0.5)])
        g.node("Cast", [above], label_name, to=TensorProto.INT64)
        return

    if model.n_outputs_ == 1:  # binary: [P(classes_[0]), P(classes_[1])]
        g.node("Concat", [g.sub(1.0, y), y], proba_name, axis=1)
    else:
        g.node("Identity", [y], proba_name)
    classes, kind = _label_tensor(get_label_classes(scope, model))
    if len(classes) == 1:  # a single class: both columns name it
        classes = np.repeat(classes, 2)
    if kind == "int64":
        class_tensor = g.tensor(classes, "classes", dtype=np.int64)
    else:
        class_tensor = scope.get_unique_variable_name("classes")
        container.add_initializer(class_tensor, TensorProto.STRING, [len(classes)],
                                  list(classes))
    # the first most probable class; for binary, classes_[1] exactly when its probability
    # is above 0.5, as predict decides
    index = g.node("ArgMax", [proba_name], axis=1, keepdims=1)
    labels = g.node("ArrayFeatureExtractor", [class_tensor, index], op_domain="ai.onnx.ml")
    flat = g.tensor(np.array([-1]), "shape", dtype=np.int64)
    g.node("Reshape", [labels, flat], label_name)


def _convert_regressor(scope, operator, container):
    """variable, (N, n_outputs): (N, 1) for one output, as skl2onnx's MLPRegressor."""
    from skl2onnx.common.data_types import DoubleTensorType

    model = operator.raw_operator
    g = _Graph(scope, container, isinstance(operator.inputs[0].type, DoubleTensorType))
    y = _forward(g, model, operator.inputs[0])
    g.node("Identity", [y], operator.outputs[0].full_name)
