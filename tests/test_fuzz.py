"""Malformed calls, fuzzed: fusedmlp never crashes, hangs or modifies its inputs, and raises
where scikit-learn raises, with an exception of a compatible type.

Hypothesis draws calls of MLPClassifier and MLPRegressor (fit, partial_fit, predict,
predict_proba, score) and Perceptron (fit, partial_fit, predict, decision_function, score)
with malformed data (dtypes, NaN and inf, values beyond float32's range, shapes, sample
weights, class lists, initial coefficients), malformed hyperparameters and corrupted scipy
sparse matrices, and makes each call on fusedmlp and on scikit-learn. Corrupted sparse
matrices go to fusedmlp only (scikit-learn itself can crash on them): fusedmlp must reject
them with a ValueError or TypeError that says what is wrong.

The hypothesis loop runs in one child process, this file run as a script. The child logs
every call before making it, so a crash or a hang fails the test with the call that caused
it; the parent then resumes the (derandomized, hence repeatable) loop after that example, so
one run reports every crash and every mismatch. FUSEDMLP_FUZZ_EXAMPLES=20000 fuzzes longer
(the default, 1100 calls, takes about 15 s).
"""

import copy
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

MIN_CALLS = 1000  # malformed calls on fusedmlp per run, asserted by the parent
# one malformed fusedmlp call per example
MAX_EXAMPLES = int(os.environ.get("FUSEDMLP_FUZZ_EXAMPLES", 1100))
CALL_TIMEOUT = 60  # seconds; a call that takes longer is a hang (the calls take milliseconds)
CHILD_TIMEOUT = 120 + MAX_EXAMPLES // 2  # seconds; the backstop for a hang outside a call
MAX_CHILD_RUNS = 12  # the first run, and one more after each crash
MEMORY_LIMIT = 6 << 30  # address space of the child: huge layers fail fast, not by swapping

# finite, and all beyond float32's range (3.4e38)
HUGE = (1e300, -1e300, 1e39, -1e39, 3.5e38, float(np.finfo(np.float64).max))
SPARSE_WORDS = ("sparse", "csr", "csc", "coo", "bsr", "indices", "index", "indptr", "pointer")

CLASSES = ("MLPClassifier", "MLPRegressor", "Perceptron")
METHODS = {
    "MLPClassifier": ("fit", "partial_fit", "predict", "predict_proba", "score"),
    "MLPRegressor": ("fit", "partial_fit", "predict", "score"),
    "Perceptron": ("fit", "partial_fit", "predict", "decision_function", "score"),
}
PREDICTING = ("predict", "predict_proba", "decision_function", "score")
TAKES_Y = ("fit", "partial_fit", "score")

# Kinds of malformation, in the order they are applied (values, then types, then shapes and
# containers). The exclusive kinds are drawn alone; the others, one or two at a time.
STAGES = (
    "unfitted", "hyper", "fm_param", "nonfinite", "huge", "sample_weight", "classes", "init",
    "y_dtype", "X_dtype", "shape", "sparse", "corrupt_sparse",
)
EXCLUSIVE = ("unfitted", "hyper", "fm_param", "corrupt_sparse")

HUGE_INTS = (2**31 - 1, 2**31, 2**63, 2**64, np.int64(2**40))
NAN, INF = float("nan"), float("inf")

# (parameter, malformed values, valid parameters that go with it)
MLP_BAD_PARAMS = [
    ("hidden_layer_sizes", [0, -1, (3, 0), (3, -2), 2**31, 2**63, (2**63,), "3", 3.5, (3.5,),
                            (NAN,), None, [], np.array([3, 0]), ("3",)], {}),
    ("activation", ["softmax", "RELU", None, 1], {}),
    ("solver", ["newton", None, 0], {}),
    ("alpha", [-1.0, NAN, INF, -INF, "0.1", None], {}),
    ("batch_size", [0, -1, *HUGE_INTS, 1.5, "big", NAN, None], {}),
    ("learning_rate", ["cyclic", None], {}),
    ("learning_rate_init", [0.0, -1.0, NAN, INF, "0.1"], {}),
    ("power_t", [-1.0, NAN, INF], {"solver": "sgd", "learning_rate": "invscaling"}),
    # huge max_iter with a stopping rule that ends the fit after two epochs
    ("max_iter", [0, -1, 2.5, NAN, INF, "2", None], {}),
    ("max_iter", list(HUGE_INTS), {"tol": 10.0, "n_iter_no_change": 1}),
    ("shuffle", ["yes", 2, None], {}),
    ("random_state", [-1, 2**32, 2**63, 1.5, "seed"], {}),
    ("tol", [-1.0, NAN, "x", None], {}),
    ("verbose", [-1, "loud", None], {}),
    ("warm_start", ["no", 2], {}),
    ("momentum", [1.5, -0.1, NAN, INF], {"solver": "sgd"}),
    ("nesterovs_momentum", ["yes", None], {"solver": "sgd"}),
    ("early_stopping", ["yes", 2], {}),
    ("validation_fraction", [1.0, -0.1, NAN, 2.0], {"early_stopping": True}),
    ("validation_fraction", [0.0, 0.01, 0.99], {"early_stopping": True}),
    ("beta_1", [1.0, -0.1, NAN], {}),
    ("beta_2", [1.0, NAN, 2.0], {}),
    ("epsilon", [0.0, -1e-8, NAN, INF], {}),
    ("n_iter_no_change", [0, -1, *HUGE_INTS, NAN, 1.5, -INF], {}),
    ("max_fun", [0, -1, *HUGE_INTS, 1.5, NAN], {"solver": "lbfgs"}),
]
# (absolute_error, huber and quantile are fusedmlp's own losses: not malformed here)
REGRESSOR_BAD_PARAMS = [("loss", ["hinge", "log_loss", None], {})]
PERCEPTRON_BAD_PARAMS = [
    ("penalty", ["l3", "L2", 1], {}),
    ("alpha", [-1.0, NAN, INF, "x"], {"penalty": "l2"}),
    ("l1_ratio", [1.5, -0.1, NAN], {"penalty": "elasticnet"}),
    ("fit_intercept", ["yes", 2, None], {}),
    ("max_iter", [0, -1, 2.5, NAN, None], {}),
    ("max_iter", list(HUGE_INTS), {"tol": 10.0, "n_iter_no_change": 1}),
    ("tol", [-1.0, NAN, "x", -INF], {}),
    ("shuffle", ["yes"], {}),
    ("verbose", [-1, "loud"], {}),
    ("eta0", [0.0, -1.0, NAN, INF], {}),
    ("n_jobs", [0, 1.5, "2", *HUGE_INTS, -(2**63)], {}),
    ("random_state", [-1, 2**32, 1.5, "seed"], {}),
    ("early_stopping", ["yes"], {}),
    ("validation_fraction", [0.0, 1.0, NAN, -1.0], {"early_stopping": True}),
    ("n_iter_no_change", [0, -1, *HUGE_INTS, 1.5, NAN], {}),
    ("class_weight", ["auto", {9: 1.0}, {0: -1.0}, {0: NAN}, {0: "x"}, [1.0, 2.0]], {}),
    ("warm_start", ["yes"], {}),
]
# fusedmlp's own parameters: (name, value, valid) -- invalid values must be rejected by fit
# and partial_fit with a ValueError naming the parameter; valid ones (huge thread counts)
# must work or be rejected the same way.
FM_PARAMS = [
    *[("n_threads", v, False) for v in (0, -1, -(2**63), 1.5, "2", NAN)],
    *[("n_threads", v, True) for v in HUGE_INTS],
    *[("dtype", v, False) for v in ("float16", "int64", "f8", "float", None, int, np.float16,
                                    np.dtype(np.int32))],
    *[("device", v, False) for v in ("tpu", "CPU", None, 0, "cuda:0", "cuda")],
]


# ---- the cases ------------------------------------------------------------------------------


class Case:
    """One malformed call: the estimator, its parameters, an optional clean setup fit, the
    method and its arguments, and what was malformed."""

    def __init__(self, cls, method):
        self.cls, self.method = cls, method
        self.params = {}  # valid parameters, shared with scikit-learn
        self.fm_params = {}  # fusedmlp's own valid parameters
        self.bad = {}  # malformed shared parameters (set after the setup fit, if any)
        self.fm_bad = None  # (name, value, valid): one of fusedmlp's own parameters
        self.setup = False  # fit both estimators on clean data first
        self.X = self.y = None
        self.kwargs = {}
        self.X_train = self.y_train = None
        self.kinds, self.tags = [], []
        self.corrupt_sparse = False
        self.beyond_float32 = False  # X, y or sample_weight holds a value of HUGE
        self.n_features = self.n_classes = None

    @property
    def is_mlp(self):
        return self.cls.startswith("MLP")

    @property
    def is_classifier(self):
        return self.cls != "MLPRegressor"

    def effective(self, name, default=None):
        return self.bad.get(name, self.params.get(name, default))

    @property
    def fm_float32(self):
        return self.is_mlp and self.fm_params.get("dtype") != "float64"

    def args(self):
        return ((self.X, self.y) if self.method in TAKES_Y else (self.X,)), dict(self.kwargs)

    def n_rows(self):
        return len(self.X) if hasattr(self.X, "__len__") else 0

    def describe(self):
        with np.printoptions(threshold=sys.maxsize, linewidth=sys.maxsize, floatmode="unique"):
            fm_params = dict(self.fm_params)
            lines = [
                f"malformed: {'; '.join(self.tags)}",
                f"{self.cls}(**{_fmt({**self.params, **fm_params})})",
            ]
            later = {**self.bad}
            if self.fm_bad is not None:
                later[self.fm_bad[0]] = self.fm_bad[1]
            if self.setup:
                lines.append(f"  .fit(X_train, y_train) with X_train={_fmt(self.X_train)}, "
                             f"y_train={_fmt(self.y_train)}")
                if later:
                    lines.append(f"  .set_params(**{_fmt(later)})")
            elif later:
                lines[1] = f"{self.cls}(**{_fmt({**self.params, **fm_params, **later})})"
            lines.append(f"  .{self.method}(...) with")
            args, kwargs = self.args()
            for name, value in zip(("X", "y"), args):
                lines.append(f"    {name} = {_fmt(value)}")
            for name, value in kwargs.items():
                lines.append(f"    {name} = {_fmt(value)}")
            return "\n".join(lines)


def _fmt(value):
    if sp.issparse(value):
        parts = [f"{k}={_fmt(v)}" for k, v in value.__dict__.items() if k not in ("maxprint",)]
        return f"{type(value).__name__}({', '.join(parts)})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def draw_case(draw, index):
    """The index-th malformed call; every random choice is made here, before any call, so
    that the sequence of cases does not depend on the outcomes."""
    from hypothesis import strategies as st

    cls = draw(st.sampled_from(CLASSES))
    method = draw(st.sampled_from(METHODS[cls]))
    case = Case(cls, method)
    n_rows = draw(st.integers(6, 20))
    n_features = draw(st.integers(2, 4))
    n_classes = draw(st.integers(2, 3))
    # the index tells apart the examples where hypothesis repeats a seed
    rng = np.random.default_rng([index, draw(st.integers(0, 2**32 - 1))])
    case.n_features, case.n_classes = n_features, n_classes

    case.params = {"max_iter": 2, "random_state": 0}
    if case.is_mlp:
        case.params.update(hidden_layer_sizes=(3,), solver=draw(st.sampled_from(
            ["adam", "sgd", "lbfgs"])))
        if draw(st.booleans()):
            case.fm_params["dtype"] = "float64"
    if cls == "MLPRegressor":
        case.params["loss"] = draw(st.sampled_from(["squared_error", "poisson"]))

    def targets(n):
        if case.is_classifier:
            return rng.permutation(np.arange(n) % n_classes)
        t = rng.standard_normal(n)
        return np.abs(t) if case.params["loss"] == "poisson" else t

    case.X = rng.standard_normal((n_rows, n_features))
    case.y = targets(n_rows) if method in TAKES_Y else None
    case.X_train = rng.standard_normal((12, n_features))
    case.y_train = targets(12)
    case.setup = method in PREDICTING or draw(st.booleans())
    if case.setup and method == "fit":
        case.params["warm_start"] = True
    if method == "partial_fit" and case.is_classifier and not case.setup:
        case.kwargs["classes"] = np.arange(n_classes)

    # The malformations come from rng, seeded by hypothesis: hypothesis's own choices
    # cluster (it mutates earlier examples), and these lists are long.
    kinds = [k for k in STAGES if _applies(k, case)]
    first = _pick(rng, kinds)
    chosen = [first]
    if first not in EXCLUSIVE and rng.random() < 0.5:
        chosen.append(_pick(rng, [k for k in kinds if k not in EXCLUSIVE and k != first]))
    for kind in sorted(chosen, key=STAGES.index):
        case.kinds.append(kind)
        APPLY[kind](case, rng)
    return case


def _applies(kind, case):
    if kind == "unfitted":
        return case.method in PREDICTING
    if kind == "hyper":
        # parameters are validated by fit and by partial_fit's first call; predict and a
        # later partial_fit take them as they are, as scikit-learn does
        return case.method == "fit" or (case.method == "partial_fit" and not case.setup)
    if kind == "fm_param":
        return case.is_mlp
    if kind == "sample_weight":
        return case.method in TAKES_Y
    if kind == "classes":
        return case.method == "partial_fit" and case.is_classifier
    if kind == "init":
        return case.cls == "Perceptron" and case.method == "fit"
    if kind == "y_dtype":
        return case.method in TAKES_Y
    return True


def _pick(rng, options):
    return options[int(rng.integers(0, len(options)))]


def _position(rng, a):
    return tuple(int(rng.integers(0, n)) for n in a.shape)


def apply_unfitted(case, rng):
    case.setup = False
    case.tags.append("the estimator is not fitted")


def apply_hyper(case, rng):
    table = (MLP_BAD_PARAMS + (REGRESSOR_BAD_PARAMS if case.cls == "MLPRegressor" else [])
             if case.is_mlp else PERCEPTRON_BAD_PARAMS)
    name, values, extra = _pick(rng, table)
    value = _pick(rng, values)
    case.bad = {**extra, name: value}
    case.tags.append(f"parameter {name}={value!r}" + (f" with {extra}" if extra else ""))


def apply_fm_param(case, rng):
    name, value, valid = _pick(rng, FM_PARAMS)
    case.fm_bad = (name, value, valid)
    case.fm_params.pop(name, None)
    case.tags.append(f"fusedmlp parameter {name}={value!r}")


def _target(case, rng, what):
    """The array a value goes into: X, y or sample_weight (created when absent)."""
    choices = ["X"]
    if case.method in TAKES_Y and not (case.is_classifier and what == "huge"):
        choices.append("y")
    if case.method in TAKES_Y:
        choices.append("sample_weight")
    target = _pick(rng, choices)
    if target == "sample_weight" and not isinstance(case.kwargs.get("sample_weight"),
                                                    np.ndarray):
        case.kwargs["sample_weight"] = np.ones(case.n_rows())
    return target


def _set_value(case, target, value, everywhere, rng):
    if target == "X":
        case.X = case.X.astype(np.float64)
        if everywhere:
            case.X[:, int(rng.integers(0, case.X.shape[1]))] = value
        else:
            case.X[_position(rng, case.X)] = value
    elif target == "y":
        case.y = case.y.astype(np.float64)
        case.y[slice(None) if everywhere else int(rng.integers(0, len(case.y)))] = value
    else:
        sw = case.kwargs["sample_weight"].astype(np.float64)
        sw[slice(None) if everywhere else int(rng.integers(0, len(sw)))] = value
        case.kwargs["sample_weight"] = sw


def apply_nonfinite(case, rng):
    target = _target(case, rng, "nonfinite")
    value = _pick(rng, [NAN, INF, -INF])
    everywhere = _pick(rng, [False, True])
    _set_value(case, target, value, everywhere, rng)
    case.tags.append(f"{value} in {'a whole column of ' if everywhere else ''}{target}")


def apply_huge(case, rng):
    target = _target(case, rng, "huge")
    value = _pick(rng, HUGE)
    everywhere = _pick(rng, [False, True])
    _set_value(case, target, value, everywhere, rng)
    case.beyond_float32 = True
    case.tags.append(f"{value!r} in {'a whole column of ' if everywhere else ''}{target}")


def apply_sample_weight(case, rng):
    n = case.n_rows()
    variants = {
        "too short": lambda: np.ones(n - 1),
        "too long": lambda: np.ones(n + 1),
        "empty": lambda: np.ones(0),
        "2-D": lambda: np.ones((n, 2)),
        "2-D column": lambda: np.ones((n, 1)),
        "one negative": lambda: np.r_[-1.0, rng.random(n - 1)],
        "all negative": lambda: -np.ones(n),
        "all zero": lambda: np.zeros(n),
        "a string": lambda: "heavy",
        "numeric strings": lambda: rng.random(n).astype(str),
        "object": lambda: rng.random(n).astype(object),
        "object with None": lambda: np.array([None] + [1.0] * (n - 1), dtype=object),
        "complex": lambda: rng.random(n) + 1j,
        "a scalar": lambda: 2.0,
        "int": lambda: np.arange(n) % 3,
        "bool": lambda: np.arange(n) % 2 == 0,
        "datetime64": lambda: np.arange(n).astype("datetime64[D]"),
        "a list": lambda: [1.0] * n,
    }
    name = _pick(rng, list(variants))
    case.kwargs["sample_weight"] = variants[name]()
    case.tags.append(f"sample_weight {name}")


def apply_classes(case, rng):
    k = case.n_classes
    if case.setup:  # a later call of partial_fit
        variants = {
            "changed": np.arange(k + 1),
            "the same again": np.arange(k),
            "strings": np.arange(k).astype(str),
        }
    else:
        variants = {
            "missing": None,
            "a subset of y's": np.arange(k - 1),
            "a superset of y's": np.arange(k + 2),
            "strings": np.arange(k).astype(str),
            "2-D": np.arange(k)[:, None],
            "empty": np.array([]),
            "with NaN": np.r_[np.arange(k - 1.0), NAN],
            "with duplicates": np.r_[np.arange(k), 0],
            "a scalar": k,
        }
    name = _pick(rng, list(variants))
    case.kwargs.pop("classes", None)
    if variants[name] is not None:
        case.kwargs["classes"] = variants[name]
    case.tags.append(f"classes {name}")


def apply_init(case, rng):
    rows = 1 if case.n_classes == 2 else case.n_classes
    f = case.n_features
    variants = {
        "coef_init of the wrong shape": ("coef_init", np.zeros((rows + 1, f))),
        "coef_init with too few features": ("coef_init", np.zeros((rows, f - 1))),
        "coef_init NaN": ("coef_init", np.full((rows, f), NAN)),
        "coef_init strings": ("coef_init", np.full((rows, f), "a")),
        "coef_init 3-D": ("coef_init", np.zeros((rows, f, 1))),
        "intercept_init of the wrong shape": ("intercept_init", np.zeros(rows + 2)),
        "intercept_init NaN": ("intercept_init", np.full(rows, NAN)),
        "intercept_init a string": ("intercept_init", "a"),
    }
    name = _pick(rng, list(variants))
    key, value = variants[name]
    case.kwargs[key] = value
    case.tags.append(name)


def _dtype_variants(a, rng, labels):
    """Malformed (and some odd but valid) versions of array a, by name."""
    def with_item(b, item):
        b = b.astype(object)
        b[_position(rng, b)] = item
        return b

    ints = np.rint(np.nan_to_num(a * (1 if labels else 3), nan=0.0, posinf=9.0, neginf=-9.0))
    variants = {
        "object": lambda: a.astype(object),
        "object with None": lambda: with_item(a, None),
        "object with a string": lambda: with_item(a, "abc"),
        "numeric strings": lambda: a.astype(str),
        "non-numeric strings": lambda: with_item(a, "abc").astype(str),
        "bytes": lambda: a.astype("S32"),
        "bool": lambda: a > 0,
        "complex": lambda: a.astype(np.complex128),
        "complex with an imaginary part": lambda: a + 1j,
        "datetime64": lambda: ints.astype(np.int64).astype("datetime64[s]"),
        "timedelta64": lambda: ints.astype(np.int64).astype("timedelta64[ms]"),
        "int64": lambda: ints.astype(np.int64),
        "int8": lambda: ints.astype(np.int8),
        "uint64": lambda: np.abs(ints).astype(np.uint64),
        "float16": lambda: a.astype(np.float16),
        "float32": lambda: a.astype(np.float32),
        "a nested list": lambda: a.tolist(),
    }
    if labels:
        variants["label strings"] = lambda: np.array(["a", "b", "c", "d"])[
            np.clip(ints.astype(np.int64), 0, 3)]
        variants["continuous"] = lambda: rng.standard_normal(a.shape)
        variants["float labels"] = lambda: a + 0.5
    return variants


def apply_y_dtype(case, rng):
    y = np.asarray(case.y)
    variants = _dtype_variants(y, rng, labels=case.is_classifier)
    name = _pick(rng, list(variants))
    case.y = variants[name]()
    case.tags.append(f"y {name}")


def apply_X_dtype(case, rng):
    variants = _dtype_variants(np.asarray(case.X), rng, labels=False)
    X = np.asarray(case.X)
    variants["structured"] = lambda: np.zeros(len(X), dtype=[("a", "f8"), ("b", "f8")])
    variants["a ragged list"] = lambda: [row[: 1 + i % 2] for i, row in enumerate(X.tolist())]
    variants["a string"] = lambda: "abc"
    name = _pick(rng, list(variants))
    case.X = variants[name]()
    case.tags.append(f"X {name}")


def apply_shape(case, rng):
    X = case.X
    variants = ["X 1-D", "X 3-D", "no rows", "no features", "X a scalar", "X None",
                "X an empty list", "one row"]
    if case.setup:
        variants.append("another number of features")
    if case.method in TAKES_Y:
        variants += ["y too short", "y too long", "y a column", "y two columns", "y 3-D",
                     "y None", "y a scalar"]
    name = _pick(rng, variants)
    arr = isinstance(X, np.ndarray) and X.ndim == 2
    sw = case.kwargs.get("sample_weight")
    if name == "X 1-D" and arr:
        case.X = X[:, 0]
    elif name == "X 3-D" and arr:
        case.X = X[:, :, None]
    elif name in ("no rows", "one row") and arr:
        rows = slice(0, 0) if name == "no rows" else slice(0, 1)
        case.X = X[rows]
        if case.y is not None and hasattr(case.y, "__getitem__"):
            case.y = case.y[rows]
        if isinstance(sw, (np.ndarray, list)):
            case.kwargs["sample_weight"] = sw[rows]
    elif name == "no features" and arr:
        case.X = X[:, :0]
    elif name == "X a scalar":
        case.X = 1.5
    elif name == "X None":
        case.X = None
    elif name == "X an empty list":
        case.X = []
    elif name == "another number of features" and arr:
        extra = _pick(rng, [1, -1])
        case.X = (np.hstack([X, X[:, :1]]) if extra == 1 or X.shape[1] == 1
                  else X[:, :-1])
    elif name == "y too short":
        case.y = case.y[:-1]
    elif name == "y too long":
        case.y = np.concatenate([np.asarray(case.y), np.asarray(case.y)[:1]])
    elif name == "y a column":
        case.y = np.asarray(case.y)[:, None]
    elif name == "y two columns":
        y = np.asarray(case.y)
        case.y = np.stack([y, y[::-1]], axis=1)
    elif name == "y 3-D":
        case.y = np.asarray(case.y)[:, None, None]
    elif name == "y None":
        case.y = None
    elif name == "y a scalar":
        case.y = 1
    else:
        return  # X is no 2-D array any more: nothing to reshape
    case.tags.append(name)


SPARSE_BUILDERS = {
    f"{fmt}_{kind}": getattr(sp, f"{fmt}_{kind}")
    for fmt in ("csr", "csc", "coo", "bsr", "lil", "dok", "dia")
    for kind in ("matrix", "array")
}


def apply_sparse(case, rng):
    """X as a valid sparse matrix (its values and dtype malformed by the other kinds)."""
    name = _pick(rng, list(SPARSE_BUILDERS))
    wide_indices = _pick(rng, [False, True])
    X = case.X
    if not (isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "biufc"):
        return
    X = X.copy()
    if X.dtype.kind in "fc":
        X[rng.random(X.shape) < 0.3] = 0
    try:
        S = SPARSE_BUILDERS[name](X)
    except Exception:  # noqa: BLE001 - a dtype or shape scipy does not store (float16)
        return
    if wide_indices and hasattr(S, "indptr"):
        S.indices = S.indices.astype(np.int64)
        S.indptr = S.indptr.astype(np.int64)
        name += " with int64 indices"
    case.X = S
    case.tags.append(f"X a valid {name}")


def _corrupt_compressed(S, name, rng, minor):
    nnz = int(S.indptr[-1])
    k = int(rng.integers(0, nnz))
    big = 2**31 - 1 if S.indices.dtype == np.int32 else 2**40
    if name == "negative index":
        S.indices[k] = -1
    elif name == "index past the end":
        S.indices[k] = minor
    elif name == "huge index":
        S.indices[k] = big
    elif name == "decreasing indptr":
        i = int(rng.integers(1, len(S.indptr)))
        S.indptr[i] = S.indptr[i - 1] - 1
    elif name == "indptr[0] != 0":
        S.indptr[0] = _pick(rng, [1, -1, nnz])
    elif name == "indptr too short":
        S.indptr = S.indptr[:-1]
    elif name == "indptr too long":
        S.indptr = np.append(S.indptr, S.indptr[-1])
    elif name == "empty indptr":
        S.indptr = S.indptr[:0]
    elif name == "indptr[-1] beyond indices":
        S.indptr[-1] = len(S.indices) + int(rng.integers(1, 4))
    elif name == "indices shorter than data":
        S.indices = S.indices[:-1]
    elif name == "data shorter than indices":
        S.data = S.data[:-1]
    elif name == "float indices":
        S.indices = S.indices.astype(np.float64)
    elif name == "float indptr":
        S.indptr = S.indptr.astype(np.float64)
    elif name == "2-D indices":
        S.indices = S.indices[:, None]
    else:
        raise AssertionError(name)


COMPRESSED_DEFECTS = (
    "negative index", "index past the end", "huge index", "decreasing indptr",
    "indptr[0] != 0", "indptr too short", "indptr too long", "empty indptr",
    "indptr[-1] beyond indices", "indices shorter than data", "data shorter than indices",
    "float indices", "float indptr", "2-D indices",
)
COO_DEFECTS = (
    "negative row", "negative col", "row past the end", "col past the end", "huge col",
    "float row", "float col", "row shorter than data", "col shorter than data",
    "data shorter than coords",
)


def apply_corrupt_sparse(case, rng):
    fmt = _pick(rng, ["csr", "csc", "coo", "bsr"])
    kind = _pick(rng, ["matrix", "array"])
    defect = _pick(rng, COO_DEFECTS if fmt == "coo" else COMPRESSED_DEFECTS)
    wide_indices = _pick(rng, [False, True])
    X = np.asarray(case.X, dtype=np.float64).copy()
    X[rng.random(X.shape) < 0.3] = 0
    X[0, 0], X[-1, -1] = 1.0, 2.0  # at least two stored values
    n_rows, n_cols = X.shape
    if fmt == "bsr":
        blocksize = (2 if n_rows % 2 == 0 and rng.random() < 0.5 else 1,
                     2 if n_cols % 2 == 0 and rng.random() < 0.5 else 1)
        S = getattr(sp, f"bsr_{kind}")(X, blocksize=blocksize)
        minor = n_cols // blocksize[1]
    else:
        S = getattr(sp, f"{fmt}_{kind}")(X)
        minor = n_rows if fmt == "csc" else n_cols
    if fmt == "coo":
        row, col = (c.astype(np.int64) if wide_indices else c for c in S.coords)
        k = int(rng.integers(0, len(row)))
        if defect == "negative row":
            row[k] = -1
        elif defect == "negative col":
            col[k] = -1
        elif defect == "row past the end":
            row[k] = n_rows
        elif defect == "col past the end":
            col[k] = n_cols
        elif defect == "huge col":
            col[k] = np.iinfo(col.dtype).max
        elif defect == "float row":
            row = row.astype(np.float64)
        elif defect == "float col":
            col = col.astype(np.float64)
        elif defect == "row shorter than data":
            row = row[:-1]
        elif defect == "col shorter than data":
            col = col[:-1]
        elif defect == "data shorter than coords":
            S.data = S.data[:-1]
        S.coords = (row, col)
    else:
        if wide_indices:
            S.indices = S.indices.astype(np.int64)
            S.indptr = S.indptr.astype(np.int64)
        _corrupt_compressed(S, defect, rng, minor)
    case.X = S
    case.corrupt_sparse = True
    case.tags.append(f"X a {fmt}_{kind}{' with int64 indices' if wide_indices else ''} "
                     f"with {defect}")


APPLY = {
    "unfitted": apply_unfitted,
    "hyper": apply_hyper,
    "fm_param": apply_fm_param,
    "nonfinite": apply_nonfinite,
    "huge": apply_huge,
    "sample_weight": apply_sample_weight,
    "classes": apply_classes,
    "init": apply_init,
    "y_dtype": apply_y_dtype,
    "X_dtype": apply_X_dtype,
    "shape": apply_shape,
    "sparse": apply_sparse,
    "corrupt_sparse": apply_corrupt_sparse,
}


# ---- outcomes -------------------------------------------------------------------------------


def identical(a, b):
    """Whether b is a of the same type with the same bytes (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if sp.issparse(a):
        keys = {k for k in (*a.__dict__, *b.__dict__) if "has_" not in k}  # cached flags
        return all(identical(a.__dict__.get(k), b.__dict__.get(k)) for k in keys)
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.hasobject:
            return all(identical(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist()))
        return a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, (float, complex, np.inexact)):
        return bool(a == b) or (a != a and b != b)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - anything that cannot compare is compared by repr
        return repr(a) == repr(b)


def _exc(e):
    return f"{type(e).__name__}({str(e)[:300]!r})"


def compatible(sk_exc, fm_exc):
    """ValueError for ValueError, TypeError for TypeError (a subclass of scikit-learn's, or
    its base class); for scikit-learn's other exceptions (MemoryError, OverflowError, ...)
    the same type or a ValueError."""
    bases = tuple(b for b in (ValueError, TypeError) if isinstance(sk_exc, b))
    if bases:
        return isinstance(fm_exc, bases)
    return isinstance(fm_exc, (type(sk_exc), ValueError))


def _has_negative(y):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(np.any(np.asarray(y, dtype=np.float64) < 0))
    except Exception:  # noqa: BLE001 - y that is no number has no negative value
        return False


def documented_difference(case, exc):
    """fusedmlp's deliberate differences from scikit-learn (see the estimators' docs)."""
    if (
        case.fm_float32 and case.beyond_float32
        and isinstance(exc, ValueError) and "float64" in str(exc)
    ):
        return True  # values beyond float32's range with dtype float32: use dtype='float64'
    if (
        case.cls == "MLPRegressor" and case.effective("loss") == "poisson"
        and _has_negative(case.y) and isinstance(exc, ValueError)
        and "negative" in str(exc).lower()
    ):
        return True  # the Poisson loss needs y >= 0
    return False


def judge(case, sk, fm, fm_est):
    """What is wrong with fusedmlp's outcome fm, given scikit-learn's outcome sk (each
    ("ok", result) or ("raised", exception)); None when nothing is."""
    fm_exc = fm[1] if fm[0] == "raised" else None
    if (
        case.is_mlp and case.method == "partial_fit"
        and case.effective("solver") not in ("sgd", "adam") and isinstance(fm_exc, AttributeError)
    ):
        return None  # partial_fit is for the stochastic solvers (MLPRegressor: documented)
    if case.corrupt_sparse:
        if fm_exc is None:
            return "fusedmlp accepted a corrupted sparse matrix"
        if not isinstance(fm_exc, (ValueError, TypeError)):
            return f"fusedmlp raised {_exc(fm_exc)} for a corrupted sparse matrix"
        if not any(word in str(fm_exc).lower() for word in SPARSE_WORDS):
            return f"unclear error for a corrupted sparse matrix: {_exc(fm_exc)}"
        return None
    if case.fm_bad is not None and sk[0] == "ok":
        name, value, valid = case.fm_bad
        # fit validates the parameters, and so does partial_fit on its first call
        fitting = case.method == "fit" or (case.method == "partial_fit" and not case.setup)
        if name == "device" and value == "cuda" and fm_cuda_available():
            valid = True
        if fm_exc is None:
            return None if valid or not fitting else f"fusedmlp accepted {name}={value!r}"
        if isinstance(fm_exc, ValueError) and name in str(fm_exc):
            return None
        return (f"fusedmlp raised {_exc(fm_exc)} for {name}={value!r}; expected success or "
                f"a ValueError naming {name!r}")
    if fm_exc is not None and documented_difference(case, fm_exc):
        return None
    if sk[0] == "ok" and fm[0] == "ok":
        return check_result(case, sk[1], fm[1], fm_est)
    if sk[0] == "ok":
        return f"scikit-learn succeeded, fusedmlp raised {_exc(fm_exc)}"
    sk_exc = sk[1]
    if fm_exc is None:
        if (
            case.cls == "Perceptron" and case.method == "partial_fit" and case.setup
            and isinstance(sk_exc, TypeError) and "Dataset" in str(sk_exc)
        ):
            return None  # documented: the other float precision is converted, not refused
        return f"scikit-learn raised {_exc(sk_exc)}, fusedmlp succeeded"
    if not compatible(sk_exc, fm_exc):
        return f"scikit-learn raised {_exc(sk_exc)}, fusedmlp raised {_exc(fm_exc)}"
    return None


def check_result(case, sk_result, fm_result, fm_est):
    if case.method in ("fit", "partial_fit"):
        return None if fm_result is fm_est else f"{case.method} returned {fm_result!r}, not self"
    if np.shape(fm_result) != np.shape(sk_result):
        return (f"{case.method} returned shape {np.shape(fm_result)}, scikit-learn "
                f"{np.shape(sk_result)}")
    sk_values = np.asarray(sk_result)
    if (
        case.method != "score" and sk_values.dtype.kind == "f" and np.isfinite(sk_values).all()
        and not np.isfinite(np.asarray(fm_result, dtype=np.float64)).all()
        # near float64's limit the order of the sums decides what overflows
        and (np.abs(sk_values).max(initial=0) < 1e300 or case.fm_float32)
    ):
        return f"{case.method} returned non-finite values where scikit-learn's are finite"
    if case.method == "predict" and case.is_classifier and (
        np.asarray(fm_result).dtype != np.asarray(sk_result).dtype
    ):
        return (f"predict returned labels of dtype {np.asarray(fm_result).dtype}, "
                f"scikit-learn {np.asarray(sk_result).dtype}")
    return None


def fm_cuda_available():
    import fusedmlp

    return fusedmlp.cuda_available()


# ---- the child ------------------------------------------------------------------------------


def import_estimators(wait=180):
    """scikit-learn's and fusedmlp's estimators; waits while fusedmlp's extension is being
    rebuilt (it cannot be imported for a moment)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            import fusedmlp
            from sklearn import linear_model, neural_network

            break
        except ImportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(5)
    return {
        "MLPClassifier": (neural_network.MLPClassifier, fusedmlp.MLPClassifier),
        "MLPRegressor": (neural_network.MLPRegressor, fusedmlp.MLPRegressor),
        "Perceptron": (linear_model.Perceptron, fusedmlp.Perceptron),
    }


class Child:
    def __init__(self, log, results, start):
        import faulthandler

        self.faulthandler = faulthandler
        self.log, self.results, self.start = log, results, start
        self.estimators = import_estimators()
        self.index = -1
        self.calls = 0

    def note(self, line):
        self.log.write(line + "\n")
        self.log.flush()

    def call(self, label, fn):
        """fn()'s outcome, ("ok", result) or ("raised", exception); logged first, so that a
        crash is found, and watched, so that a hang ends the process with a traceback."""
        self.note(f"CALL {self.index} {label}")
        self.faulthandler.dump_traceback_later(CALL_TIMEOUT, exit=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return "ok", fn()
        except Exception as exc:  # noqa: BLE001 - the outcome itself is under test
            return "raised", exc
        finally:
            self.faulthandler.cancel_dump_traceback_later()

    def report(self, case, problem):
        self.results.write(json.dumps({
            "example": self.index,
            "signature": f"{case.cls}.{case.method}: {problem}",
            "problem": problem,
            "case": case.describe(),
        }) + "\n")
        self.results.flush()

    def run(self, case):
        sk_cls, fm_cls = self.estimators[case.cls]
        self.note(f"EXAMPLE {self.index} {json.dumps(case.describe())}")
        later_fm = dict(case.bad)
        if case.fm_bad is not None:
            later_fm[case.fm_bad[0]] = case.fm_bad[1]
        if case.setup:
            sk_est = sk_cls(**case.params)
            fm_est = fm_cls(**case.params, **case.fm_params)
            train = (case.X_train, case.y_train)
            sk_setup = self.call("scikit-learn setup fit", lambda: sk_est.fit(*train))
            if sk_setup[0] != "ok":  # a mistake of this test
                raise AssertionError(f"scikit-learn's clean setup fit failed: {sk_setup[1]!r}\n"
                                     + case.describe())
            fm_setup = self.call("fusedmlp setup fit", lambda: fm_est.fit(*copy.deepcopy(train)))
            if fm_setup[0] != "ok":
                self.report(case, f"the clean setup fit failed: {_exc(fm_setup[1])}")
                return
            sk_est.set_params(**case.bad)
            fm_est.set_params(**later_fm)
        else:
            sk_est = sk_cls(**{**case.params, **case.bad})
            fm_est = fm_cls(**{**case.params, **case.fm_params, **later_fm})

        method = case.method
        arguments = case.args()
        sk_in, fm_in, before = (copy.deepcopy(arguments) for _ in range(3))
        params_before = copy.deepcopy(fm_est.get_params(deep=False))
        sk = None
        if not case.corrupt_sparse:  # scikit-learn can crash on those
            sk = self.call("scikit-learn", lambda: getattr(sk_est, method)(*sk_in[0], **sk_in[1]))
        fm = self.call("fusedmlp", lambda: getattr(fm_est, method)(*fm_in[0], **fm_in[1]))
        self.calls += 1

        problem = judge(case, sk, fm, fm_est)
        if problem:
            self.report(case, problem)
        names = ["X", "y"][: len(before[0])] + list(before[1])
        values_before = list(before[0]) + list(before[1].values())
        values_after = list(fm_in[0]) + list(fm_in[1].values())
        for name, old, new in zip(names, values_before, values_after):
            if not identical(old, new):
                self.report(case, f"fusedmlp modified its argument {name}")
        if not identical(params_before, fm_est.get_params(deep=False)):
            self.report(case, "fusedmlp modified its parameters")

    def fuzz(self):
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import strategies as st

        @settings(
            max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def one_call(data):
            self.index += 1
            case = draw_case(data.draw, self.index)
            if self.index >= self.start:
                self.run(case)

        one_call()


def child_main(log_path, results_path, start):
    import faulthandler
    import resource

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > MEMORY_LIMIT:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, hard))
    except (ValueError, OSError):
        pass
    faulthandler.enable()
    warnings.simplefilter("ignore")
    with open(log_path, "a") as log, open(results_path, "a") as results:
        child = Child(log, results, start)
        child.fuzz()
        results.write(json.dumps({"done": True, "calls": child.calls,
                                  "examples": child.index + 1}) + "\n")
    print(f"{child.calls} malformed calls on fusedmlp")


# ---- the test -------------------------------------------------------------------------------


def _last_call(log_path):
    """The index, description and label of the last call the child logged."""
    examples, last = {}, None
    if not log_path.exists():
        return None, "", ""
    for line in log_path.read_text().splitlines():
        kind, _, rest = line.partition(" ")
        index, _, text = rest.partition(" ")
        if kind == "EXAMPLE":
            examples[int(index)] = json.loads(text)
        elif kind == "CALL":
            last = (int(index), text)
    if last is None:
        return None, "", ""
    return last[0], examples.get(last[0], ""), last[1]


def _traceback(stderr, frames=8):
    """The head of faulthandler's report in the child's stderr (the innermost frames)."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines)
              if line.startswith(("Fatal Python error", "Timeout ("))]
    if not starts:
        return "\n".join(lines[-15:])
    return "\n".join(lines[starts[-1]: starts[-1] + 3 + frames])


def _death(returncode):
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def test_malformed_calls_match_sklearn_and_never_crash(tmp_path):
    start, calls, deaths, problems = 0, 0, [], []
    t0 = time.monotonic()
    for run in range(MAX_CHILD_RUNS):
        log, results = tmp_path / f"log{run}.txt", tmp_path / f"results{run}.jsonl"
        stdout, stderr = tmp_path / f"stdout{run}.txt", tmp_path / f"stderr{run}.txt"
        with open(stdout, "w") as out, open(stderr, "w") as err:
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", str(log), str(results), str(start)],
                    stdout=out, stderr=err, timeout=CHILD_TIMEOUT, cwd=Path(__file__).parent,
                )
                death = None if proc.returncode == 0 else _death(proc.returncode)
            except subprocess.TimeoutExpired:
                death = f"timed out after {CHILD_TIMEOUT} s"
        done = None
        if results.exists():
            for line in results.read_text().splitlines():
                record = json.loads(line)
                if record.get("done"):
                    done = record
                else:
                    problems.append(record)
        if death is None and done is not None:
            calls += done["calls"]
            break
        index, description, label = _last_call(log)
        if log.exists():
            calls += log.read_text().count(" fusedmlp\n")
        report = stderr.read_text()
        tail = _traceback(report)
        if "Timeout (" in report:
            death = f"hung (a call did not return in {CALL_TIMEOUT} s)"
        if index is None:
            deaths.append(f"the child {death} before its first call:\n{tail}")
            break
        deaths.append(f"the child {death} in the {label} call of example {index}:\n"
                      f"{description}\nstderr:\n{tail}")
        start = index + 1
    elapsed = time.monotonic() - t0

    groups = {}
    for p in problems:
        groups.setdefault(p["signature"], []).append(p)
    lines = []
    for d in deaths:
        lines.append("CRASH/HANG: " + d)
    for signature, members in groups.items():
        lines.append(f"MISMATCH ({len(members)}x): {signature}\n  first in example "
                     f"{members[0]['example']}:\n    "
                     + members[0]["case"].replace("\n", "\n    "))
    summary = (f"{calls} malformed calls in {elapsed:.1f} s, {len(deaths)} crash(es) or "
               f"hang(s), {len(problems)} mismatch(es) in {len(groups)} kind(s)")
    if lines:
        pytest.fail(summary + "\n\n" + "\n\n".join(lines), pytrace=False)
    assert calls >= MIN_CALLS, summary


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(f"usage: {sys.argv[0]} --child LOG RESULTS START")
