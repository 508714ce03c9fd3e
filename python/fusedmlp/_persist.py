"""Save and load fitted estimators as portable files: arrays and JSON, never pickle.

``est.save(path)`` writes the estimator's parameters and its whole fitted state (weights,
optimizer state, schedules, histories, label encoding, random state) into the container of
``_archive.py``; ``fusedmlp.load(path)`` builds an identical estimator: the same predictions
bit for bit, and ``partial_fit`` continues exactly where the saved model stopped.

Values are written as JSON with a few tagged forms (tuples, non-finite floats, numpy scalars,
dtypes, dicts with non-string keys, object arrays of strings); arrays go to the container by
name. Objects are restored only from a fixed list of classes (the estimators, their
optimizers and schedules, scikit-learn's ``LabelBinarizer`` and numpy's ``RandomState``), by
setting attributes on a new instance: nothing in a file can name code to run, and no
attribute may hide one of the class's own (a method, a property). A file that decodes is
then checked for consistency (types, shapes, dtypes, lengths, ranges) before an estimator is
returned, so that an edited file fails at ``load`` with ``FileFormatError`` rather than later,
or worse, inside numpy or the engines. Metadata requests (``set_fit_request``) are kept as
plain JSON beside the state and set again through the estimator's own setters.
"""

import math

import numpy as np
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import InvalidParameterError

from ._archive import FileFormatError, read_archive, write_archive
from ._params import (
    SKLEARN_SCHEDULES,
    STEP_SCHEDULES,
    AdamOptimizer,
    Layout,
    Schedule,
    SGDOptimizer,
    layer_units,
)

# attributes never saved: the flat buffer's views and layout (rebuilt from coefs_, as after
# unpickling), and what only lives during a fit
_TRANSIENT = {"_params", "_param_views", "_layout", "_skl_callbacks", "_callback_fit_ctx",
              "_skl_callbacks_to_teardown", "_parent_callback_ctx"}
# set_fit_request and the like (scikit-learn's metadata routing) keep their requests here;
# a file holds them as plain JSON beside the state, and load sets them again
_METADATA_REQUEST = "_metadata_request"
_DTYPES = ("float32", "float64", "int32", "int64", "bool")
# numpy scalars a file may hold ('str' is numpy.str_)
_SCALARS = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
            "float32", "float64", "str")
_FLOAT_TYPES = (np.float32, np.float64)
_SCHEDULES = SKLEARN_SCHEDULES + STEP_SCHEDULES
_LABEL_TYPES = ("binary", "multiclass", "multilabel-indicator")
_MT19937_WORDS = 624  # numpy's legacy RandomState: 624 words of state and a position


def _classes():
    from ._multilayer_perceptron import MLPClassifier, MLPRegressor
    from ._perceptron import Perceptron

    estimators = {c.__name__: c for c in (MLPClassifier, MLPRegressor, Perceptron)}
    helpers = {c.__name__: c for c in (SGDOptimizer, AdamOptimizer, Schedule, LabelBinarizer)}
    return estimators, helpers


# ---- encoding -----------------------------------------------------------------------------


class _Encoder:
    def __init__(self):
        self.arrays = {}

    def array(self, a, where):
        a = np.asarray(a)
        tag = {}
        if a.dtype == object:
            # object arrays of strings (feature_names_in_, labels from pandas) are kept as
            # fixed-width unicode and come back as object arrays
            text = None
            if all(type(v) is str for v in a.ravel()):
                text = a.astype(str)
                if not np.array_equal(text.astype(object), a):
                    text = None  # (trailing NULs, which fixed-width unicode drops)
            if text is None:
                raise TypeError(f"{where}: an object array that is not all strings cannot be "
                                "saved without pickle.")
            a, tag = text, {"object": True}
        name = f"a{len(self.arrays)}"
        self.arrays[name] = a
        return {"__array__": name, **tag}

    def scalar(self, v, where):
        if isinstance(v, np.bool_):
            return {"__scalar__": "bool", "value": bool(v)}
        if isinstance(v, np.str_):
            return {"__scalar__": "str", "value": str(v)}
        name = v.dtype.name
        if name not in _SCALARS:
            raise TypeError(f"{where} is a numpy {name} scalar, which a fusedmlp model file "
                            "cannot hold (bool, integers, float32, float64 and str only).")
        if isinstance(v, np.integer):
            return {"__scalar__": name, "value": int(v)}
        return {"__scalar__": name, "value": self.value(float(v), where)}

    def value(self, v, where):
        # numpy's scalars first: numpy.float64 is a float, numpy.str_ a str
        if isinstance(v, np.generic):
            return self.scalar(v, where)
        if v is None or type(v) in (bool, int, str):
            return v
        if type(v) is float:
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(v, np.ndarray):
            return self.array(v, where)
        if isinstance(v, tuple):
            return {"__tuple__": [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, dict):
            if all(type(k) is str for k in v):
                return {"__dict__": {k: self.value(x, f"{where}[{k!r}]") for k, x in v.items()}}
            return {"__items__": [[self.value(k, where), self.value(x, f"{where}[{k!r}]")]
                                  for k, x in v.items()]}
        if isinstance(v, type) and v in _FLOAT_TYPES:
            return {"__type__": v.__name__}
        if isinstance(v, np.dtype) and v.name in _DTYPES:
            return {"__dtype__": v.name}
        if type(v) is np.random.RandomState:
            kind, keys, pos, has_gauss, gauss = v.get_state()
            return {"__random_state__": [kind, self.array(keys, where), int(pos),
                                         int(has_gauss), float(gauss)]}
        _, helpers = _classes()
        if type(v).__name__ in helpers and type(v) is helpers[type(v).__name__]:
            return {"__object__": type(v).__name__,
                    "state": self.value(dict(vars(v)), f"{where}.__dict__")}
        hint = ""
        if hasattr(v, "toarray"):
            hint = " (a sparse coef_ after sparsify(): call densify() first)"
        raise TypeError(
            f"{where} is a {type(v).__module__}.{type(v).__name__}, which a fusedmlp model file "
            f"cannot hold (only numbers, strings, arrays and the estimators' own types){hint}. "
            "Use pickle or joblib for such a model."
        )


# ---- decoding -----------------------------------------------------------------------------

# each tag and the keys its object holds besides the tag
_TAGS = {
    "__array__": ({"object"}, set()),  # (optional keys, required keys)
    "__float__": (set(), set()),
    "__scalar__": (set(), {"value"}),
    "__tuple__": (set(), set()),
    "__dict__": (set(), set()),
    "__items__": (set(), set()),
    "__type__": (set(), set()),
    "__dtype__": (set(), set()),
    "__random_state__": (set(), set()),
    "__object__": (set(), {"state"}),
}


class _Decoder:
    def __init__(self, arrays):
        self.arrays = arrays

    def value(self, v, where):
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is list:
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if type(v) is not dict or len(v) == 0:
            raise FileFormatError(f"{where}: unexpected value {_short(v)}: the file was edited.")
        tag = next(iter(v))
        if tag not in _TAGS:
            raise FileFormatError(
                f"{where}: unknown tag {_short(tag)} (a fusedmlp model file has only "
                f"{sorted(_TAGS)}): the file was edited or is not from fusedmlp."
            )
        optional, required = _TAGS[tag]
        keys = set(v) - {tag}
        if not required <= keys <= optional | required:
            raise FileFormatError(
                f"{where}: the {tag!r} entry has the keys {sorted(v)}, not {tag!r} with "
                f"{sorted(required)} (and optionally {sorted(optional)}): the file was edited."
            )
        try:
            return self._tagged(tag, v, where)
        except FileFormatError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, OverflowError, AttributeError) as e:
            raise FileFormatError(
                f"{where}: malformed {tag!r} entry ({type(e).__name__}: {e}): the file is "
                "damaged or was edited."
            ) from e

    def _tagged(self, tag, v, where):
        body = v[tag]
        if tag == "__array__":
            if type(body) is not str or body not in self.arrays:
                raise FileFormatError(f"{where}: names the array {_short(body)}, which the file "
                                      "does not hold: the file was edited.")
            array = self.arrays[body].copy()
            if "object" in v:
                if v["object"] is not True or array.dtype.kind != "U":
                    raise ValueError("only unicode arrays are stored for object arrays")
                array = array.astype(object)
            return array
        if tag == "__float__":
            if body not in ("nan", "inf", "-inf"):
                raise ValueError(f"not a non-finite float: {_short(body)}")
            return float(body)
        if tag == "__scalar__":
            return self._scalar(body, v["value"], where)
        if tag == "__tuple__":
            return tuple(self.value(x, where) for x in _list(body))
        if tag == "__dict__":
            if type(body) is not dict:
                raise TypeError("a dict must be a JSON object")
            return {k: self.value(x, f"{where}[{k!r}]") for k, x in body.items()}
        if tag == "__items__":
            items = {}
            for pair in _list(body):
                if type(pair) is not list or len(pair) != 2:
                    raise ValueError("each item must be a [key, value] pair")
                key = self.value(pair[0], where)
                hash(key)  # (TypeError for a list or an array: not a dict key)
                items[key] = self.value(pair[1], f"{where}[{key!r}]")
            return items
        if tag == "__type__":
            return {"float32": np.float32, "float64": np.float64}[body]
        if tag == "__dtype__":
            if body not in _DTYPES:
                raise ValueError(f"dtype {_short(body)} is not allowed")
            return np.dtype(body)
        if tag == "__random_state__":
            return self._random_state(_list(body), where)
        # "__object__"
        _, helpers = _classes()
        if type(body) is not str or body not in helpers:
            raise FileFormatError(
                f"{where}: names the class {_short(body)}, which a fusedmlp model file never "
                f"holds (only {sorted(helpers)}): the file was edited or crafted."
            )
        cls = helpers[body]
        state = self.value(v["state"], f"{where}.__dict__")
        if type(state) is not dict:
            raise ValueError("an object's state must be a dict")
        _check_attribute_names(cls, state, f"{where} ({body})")
        obj = cls.__new__(cls)
        obj.__dict__.update(state)
        return obj

    def _scalar(self, name, value, where):
        if type(name) is not str or name not in _SCALARS:
            raise ValueError(f"scalar type {_short(name)} is not allowed")
        if name == "bool":
            if type(value) is not bool:
                raise TypeError("a bool scalar holds true or false")
            return np.bool_(value)
        if name == "str":
            if type(value) is not str:
                raise TypeError("a str scalar holds a string")
            return np.str_(value)
        dtype = np.dtype(name)
        if dtype.kind in "iu":
            if type(value) is not int:
                raise TypeError(f"an {name} scalar holds an integer")
            info = np.iinfo(dtype)
            if not info.min <= value <= info.max:
                raise OverflowError(f"{value} is out of the range of {name}")
            return dtype.type(value)
        value = self.value(value, where)
        if type(value) not in (int, float):
            raise TypeError(f"a {name} scalar holds a number")
        return dtype.type(value)

    def _random_state(self, body, where):
        """numpy's legacy RandomState, only from a state numpy's own generator could have:
        its position indexes the 624 words unchecked, so a crafted one reads memory."""
        if len(body) != 5:
            raise ValueError("a random state is [kind, keys, pos, has_gauss, gauss]")
        kind, keys, pos, has_gauss, gauss = body
        keys = self.value(keys, where)
        if (
            kind != "MT19937"
            or not isinstance(keys, np.ndarray)
            or keys.dtype != np.uint32
            or keys.shape != (_MT19937_WORDS,)
            or type(pos) is not int
            or not 0 <= pos <= _MT19937_WORDS
            or has_gauss not in (0, 1)
            or type(has_gauss) is not int
            or type(gauss) not in (int, float)
            or not math.isfinite(gauss)
        ):
            raise FileFormatError(
                f"{where}: the random state is not one numpy's MT19937 can be in (624 uint32 "
                "words, a position from 0 to 624): the file was edited or crafted."
            )
        rs = np.random.RandomState()
        rs.set_state(("MT19937", keys, pos, has_gauss, float(gauss)))
        return rs


def _list(body):
    if type(body) is not list:
        raise TypeError("expected a JSON array")
    return body


def _short(v):
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_attribute_names(cls, state, where):
    """A file sets attributes, never anything that would hide the class's own (a method, a
    property, a dunder): a loaded object behaves as its class says."""
    for key in state:
        if type(key) is not str or not key.isidentifier() or key.startswith("__"):
            raise FileFormatError(
                f"{where}: the attribute name {_short(key)} is not allowed: the file was edited."
            )
        if hasattr(cls, key):
            raise FileFormatError(
                f"{where}: the attribute {key!r} would hide {cls.__name__}.{key}: the file was "
                "edited or crafted."
            )


# ---- saving and loading -------------------------------------------------------------------


def save(estimator, file):
    """Write `estimator` (fitted or not) to `file`; see ``MLPClassifier.save``."""
    estimators, _ = _classes()
    kind = type(estimator).__name__
    if estimators.get(kind) is not type(estimator):
        raise TypeError(f"save writes fusedmlp's estimators; got {type(estimator).__name__}.")
    encoder = _Encoder()
    state = {k: v for k, v in vars(estimator).items() if k not in _TRANSIENT}
    if hasattr(estimator, "_params") and hasattr(estimator, "coefs_"):
        # the buffer as training reads it (coefs_ may have been reassigned since)
        dtype = estimator._params.dtype.type
        state["coefs_"] = [np.asarray(c, dtype=dtype) for c in estimator.coefs_]
        state["intercepts_"] = [np.asarray(b, dtype=dtype) for b in estimator.intercepts_]
    requests = state.pop(_METADATA_REQUEST, None)
    meta = {"state": encoder.value(state, kind)}
    if requests is not None:
        meta["metadata_requests"] = _metadata_requests(requests, kind)
    write_archive(file, kind, meta, encoder.arrays)


def _metadata_requests(requests, kind):
    """scikit-learn's MetadataRequest as {method: {parameter: True, False, None or alias}}."""
    try:
        serialized = requests._serialize()
    except AttributeError:
        raise TypeError(
            f"{kind}'s metadata requests (set_fit_request, ...) are a "
            f"{type(requests).__name__}, which this scikit-learn does not serialize: use pickle "
            "or joblib for such a model, or save it before setting the requests."
        ) from None
    return {str(method): {str(p): v for p, v in params.items()}
            for method, params in serialized.items()}


def _restore_metadata_requests(est, requests):
    """The requests set again through the estimator's own set_<method>_request."""
    from sklearn import config_context

    if type(requests) is not dict:
        raise FileFormatError("metadata_requests is not a JSON object: the file was edited.")
    for method, params in requests.items():
        setter = getattr(est, f"set_{method}_request", None)
        if not (method.isidentifier() and callable(setter) and type(params) is dict
                and all(v is None or type(v) in (bool, str) for v in params.values())):
            raise FileFormatError(f"the metadata requests of {_short(method)} are not "
                                  "requests this estimator takes: the file was edited.")
        try:
            with config_context(enable_metadata_routing=True):
                setter(**params)
        except (TypeError, ValueError) as e:
            raise FileFormatError(f"the metadata requests of {method!r} are invalid ({e}): the "
                                  "file was edited.") from e


def load(file, *, max_bytes=None):
    """Read an estimator written by ``save``.

    Parameters
    ----------
    file : str, path-like or binary file object
        The file ``est.save`` wrote.

    max_bytes : int, default=None
        The most bytes the file may decompress to. By default a file may declare up to
        about 1000 times its own size (DEFLATE's limit); pass a limit when loading files
        from untrusted sources.

    Returns
    -------
    estimator : MLPClassifier, MLPRegressor or Perceptron
        The estimator as it was saved: the same parameters, weights, optimizer state and
        histories; predictions are bit-identical and ``partial_fit`` continues exactly.

    Raises
    ------
    FileFormatError
        The file is not a fusedmlp model file, or it is truncated, damaged, edited by hand,
        or written by a newer format version. Nothing in a file is executed, whatever it
        holds.
    """
    kind, meta, arrays = read_archive(file, max_bytes=max_bytes)
    estimators, _ = _classes()
    if kind not in estimators:
        raise FileFormatError(
            f"the file holds a {kind!r}, which is not a fusedmlp estimator "
            f"({sorted(estimators)})."
        )
    if not {"state"} <= set(meta) <= {"state", "metadata_requests"}:
        raise FileFormatError("the file's metadata is not a saved estimator: it was edited.")
    state = _Decoder(arrays).value(meta["state"], kind)
    if type(state) is not dict:
        raise FileFormatError("the saved state is not a dict: the file was edited.")
    cls = estimators[kind]
    _check_attribute_names(cls, state, kind)
    if _METADATA_REQUEST in state:
        raise FileFormatError(f"the state holds {_METADATA_REQUEST}, which a model file keeps "
                              "as metadata_requests: the file was edited.")
    est = cls.__new__(cls)
    est.__dict__.update(state)
    if "metadata_requests" in meta:
        _restore_metadata_requests(est, meta["metadata_requests"])
    try:
        _check_loaded(est)
    except FileFormatError as e:
        raise FileFormatError(f"the saved {kind} is inconsistent: {e}") from e.__cause__
    except Exception as e:  # any inconsistency an edited file can hold
        raise FileFormatError(
            f"the saved {kind} is inconsistent ({type(e).__name__}: {e}): the file is damaged "
            "or was edited."
        ) from e
    return est


# ---- checks of a decoded estimator --------------------------------------------------------


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return _is_int(v) or isinstance(v, (float, np.floating))


def _is_finite(v):
    return _is_real(v) and math.isfinite(v)


def _is_bool(v):
    return isinstance(v, (bool, np.bool_))


def _is_count(v, limit=1 << 62):
    return _is_int(v) and 0 <= v < limit


def _is_reals(v):
    return type(v) is list and all(_is_real(x) for x in v)


def _is_name(v, names):
    return type(v) is str and v in names


def _is_float_array(a, ndim):
    return isinstance(a, np.ndarray) and a.ndim == ndim and a.dtype in _FLOAT_TYPES


def _expect(obj, name, check, what, where=None):
    """Raise FileFormatError unless `obj.name`, when present, passes `check`."""
    if name not in vars(obj):
        return
    value = vars(obj)[name]
    if not check(value):
        raise FileFormatError(f"{where or ''}{name} is {_short(value)}, not {what}.")


def _require(obj, names, where):
    missing = [name for name in names if name not in vars(obj)]
    if missing:
        raise FileFormatError(f"{where} lacks {missing}.")


def _check_loaded(est):
    """Reject a decoded estimator whose parts disagree, before anyone uses it."""
    missing = [name for name in type(est)._get_param_names() if name not in vars(est)]
    if missing:
        raise FileFormatError(f"the parameter(s) {missing} are missing.")
    try:
        est._validate_params()
    except InvalidParameterError as e:
        raise FileFormatError(f"a parameter has an invalid value: {e}") from e
    _check_parameter_contents(est)
    _expect(est, "n_features_in_", lambda v: _is_count(v) and v >= 1, "a number of features")
    if "feature_names_in_" in vars(est):
        names = est.feature_names_in_
        if not (isinstance(names, np.ndarray) and names.ndim == 1
                and all(type(n) is str for n in names.tolist())
                and names.shape[0] == getattr(est, "n_features_in_", None)):
            raise FileFormatError("feature_names_in_ is not one name per feature.")
    _expect(est, "classes_", lambda v: isinstance(v, np.ndarray) and v.ndim == 1,
            "a 1-d array")
    from ._perceptron import Perceptron

    if isinstance(est, Perceptron):
        _check_perceptron(est)
    else:
        _check_mlp(est)


def _check_parameter_contents(est):
    """What the declared constraints ('array-like', dict) leave open: the elements."""
    params = vars(est)
    if "hidden_layer_sizes" in params:
        sizes = params["hidden_layer_sizes"]
        if not (_is_int(sizes) and sizes >= 1) and not (
            isinstance(sizes, (list, tuple, np.ndarray)) and np.ndim(sizes) == 1
            and all(_is_int(n) and n >= 1 for n in list(sizes))
        ):
            raise FileFormatError(f"hidden_layer_sizes is {_short(sizes)}, not a positive "
                                  "integer or a sequence of them.")
    if "dropout" in params:
        rates = params["dropout"]
        if not (_is_finite(rates) or (
            isinstance(rates, (list, tuple, np.ndarray)) and np.ndim(rates) == 1
            and all(_is_finite(r) and 0 <= r < 1 for r in list(rates))
        )):
            raise FileFormatError(f"dropout is {_short(rates)}, not a rate or a sequence of "
                                  "rates in [0, 1).")
    weights = params.get("class_weight")
    if isinstance(weights, dict) and not all(_is_finite(w) for w in weights.values()):
        raise FileFormatError(f"class_weight is {_short(weights)}: its values must be numbers.")


# what every fitted MLP has (_initialize, set_weights), and what stochastic training keeps
_MLP_FITTED = ("intercepts_", "n_outputs_", "n_layers_", "n_features_in_", "out_activation_",
               "n_iter_", "t_", "_output_dtype", "_best_params", "_dropout_seed", "_epochs_run",
               "history_")
_MLP_STOCHASTIC = ("_no_improvement_count", "best_loss_", "validation_scores_",
                   "validation_loss_curve_", "best_validation_score_")


def _check_mlp(est):
    from sklearn.base import is_classifier

    from ._multilayer_perceptron import LOSSES, OUTPUT_ACTIVATIONS

    _expect(est, "_random_state", lambda v: type(v) is np.random.RandomState,
            "a numpy RandomState")
    classifier = is_classifier(est)
    if "_label_binarizer" in vars(est):
        _check_label_binarizer(est._label_binarizer)
    _expect(est, "_output_dtype", lambda v: any(v is t for t in _FLOAT_TYPES),
            "numpy.float32 or float64")
    if "coefs_" not in vars(est):
        # unfitted, or a first fit that failed before the weights: nothing to bind
        for name in ("intercepts_", "_optimizer", "_best_params"):
            if name in vars(est):
                raise FileFormatError(f"the estimator has {name} but no coefs_.")
        return
    _require(est, _MLP_FITTED, "the fitted estimator")
    for name in ("n_outputs_", "n_layers_"):
        _expect(est, name, _is_count, "a count")
    if "_optimizer" in vars(est):
        _require(est, ("loss_curve_", "loss_"), "the estimator trained by sgd or adam")
    if "loss_curve_" in vars(est):
        _require(est, _MLP_STOCHASTIC, "the estimator set up for sgd or adam")
    coefs, intercepts = est.coefs_, est.intercepts_
    if not (type(coefs) is list and type(intercepts) is list
            and len(coefs) == len(intercepts) >= 1):
        raise FileFormatError("coefs_ and intercepts_ must be lists of equal length.")
    dtype = coefs[0].dtype if isinstance(coefs[0], np.ndarray) else None
    if dtype not in _FLOAT_TYPES:
        raise FileFormatError(f"coefs_ have dtype {dtype}; a model computes in float32 or "
                              "float64.")
    for i, (c, b) in enumerate(zip(coefs, intercepts)):
        if not (isinstance(c, np.ndarray) and isinstance(b, np.ndarray)
                and c.ndim == 2 and b.ndim == 1 and c.dtype == dtype and b.dtype == dtype
                and b.shape[0] == c.shape[1] and min(c.shape) >= 1
                and (i == 0 or c.shape[0] == coefs[i - 1].shape[1])):
            raise FileFormatError(f"layer {i}'s weights and biases have shapes or dtypes "
                                  "that disagree.")
    units = layer_units(coefs)
    if est.n_outputs_ != units[-1] or est.n_features_in_ != units[0]:
        raise FileFormatError(
            f"n_features_in_ ({_short(est.n_features_in_)}) and n_outputs_ "
            f"({_short(est.n_outputs_)}) disagree with the weights ({units[0]} inputs, "
            f"{units[-1]} outputs)."
        )
    if est.n_layers_ != len(units):
        raise FileFormatError(f"n_layers_ is {_short(est.n_layers_)}, but the weights make "
                              f"{len(units)} layers.")
    if classifier:
        _check_classes(est)
    else:
        outputs = set(OUTPUT_ACTIVATIONS) | {
            loss["canonical_output"] for loss in LOSSES.values() if loss["regression"]
        }
        if not _is_name(est.out_activation_, outputs):
            raise FileFormatError(f"out_activation_ is {_short(est.out_activation_)}, not "
                                  f"one of {sorted(outputs)}.")
    n_params = Layout(units).n_params
    for name in ("n_iter_", "t_", "_no_improvement_count", "_epochs_run"):
        _expect(est, name, _is_count, "a count")
    _expect(est, "_dropout_seed", lambda v: v is None or _is_count(v, 1 << 31),
            "None or a seed in [0, 2**31)")
    _expect(est, "loss_", _is_real, "a number")
    for name in ("best_loss_", "best_validation_score_"):
        _expect(est, name, lambda v: v is None or _is_real(v), "None or a number")
    _expect(est, "loss_curve_", _is_reals, "a list of numbers")
    for name in ("validation_scores_", "validation_loss_curve_"):
        _expect(est, name, lambda v: v is None or _is_reals(v), "None or a list of numbers")
    _expect(est, "history_", _is_history, "a dict of equally long lists of numbers")
    _expect(est, "_best_params",
            lambda v: v is None or (_is_float_array(v, 1) and v.shape == (n_params,)),
            f"None or a float array of the {n_params} parameters (the early-stopping snapshot)")
    if "_optimizer" in vars(est):
        _check_optimizer(est._optimizer, n_params)
    est.__setstate__(dict(vars(est)))  # binds the flat buffer, as after unpickling


def _is_history(v):
    if type(v) is not dict:
        return False
    lengths = {len(values) if _is_reals(values) else -1 for values in v.values()}
    return all(type(k) is str for k in v) and -1 not in lengths and len(lengths) <= 1


def _check_classes(est):
    _require(est, ("_label_binarizer", "classes_"), "the fitted classifier")
    binarizer, classes = est._label_binarizer, est.classes_
    if not (classes.dtype == binarizer.classes_.dtype
            and np.array_equal(classes, binarizer.classes_)):
        raise FileFormatError("classes_ and the label binarizer's classes disagree.")
    kind, n_classes = binarizer.y_type_, len(classes)
    if not _is_name(est.out_activation_, ("softmax", "logistic")):
        raise FileFormatError(f"out_activation_ is {_short(est.out_activation_)}; a "
                              "classifier's is 'softmax' or 'logistic'.")
    if est.out_activation_ == "softmax":
        consistent = kind == "multiclass" and est.n_outputs_ == n_classes
    else:
        consistent = (est.n_outputs_ == n_classes if kind == "multilabel-indicator"
                      else kind == "binary" and est.n_outputs_ == 1 and n_classes in (1, 2))
    if not consistent:
        raise FileFormatError(
            f"{n_classes} classes ({kind}) do not fit {est.n_outputs_} output(s) with "
            f"out_activation_={est.out_activation_!r}."
        )


def _check_label_binarizer(binarizer):
    where = "the label binarizer's "
    if type(binarizer) is not LabelBinarizer:
        raise FileFormatError(f"_label_binarizer is {_short(binarizer)}, not a LabelBinarizer.")
    _require(binarizer, ("classes_", "y_type_", "neg_label", "pos_label", "sparse_output",
                         "sparse_input_"), "the label binarizer")
    _expect(binarizer, "classes_", lambda v: isinstance(v, np.ndarray) and v.ndim == 1,
            "a 1-d array", where)
    _expect(binarizer, "y_type_", lambda v: _is_name(v, _LABEL_TYPES),
            "'binary', 'multiclass' or 'multilabel-indicator'", where)
    # fusedmlp's binarizers are LabelBinarizer() (scikit-learn's, after from_sklearn, too)
    _expect(binarizer, "neg_label", lambda v: _is_int(v) and v == 0, "0", where)
    _expect(binarizer, "pos_label", lambda v: _is_int(v) and v == 1, "1", where)
    _expect(binarizer, "sparse_output", lambda v: _is_bool(v) and not v, "False", where)
    _expect(binarizer, "sparse_input_", _is_bool, "a bool", where)
    if binarizer.sparse_input_ and binarizer.y_type_ != "multilabel-indicator":
        raise FileFormatError(f"{where}sparse_input_ is True for {binarizer.y_type_} labels; "
                              "only multilabel targets are sparse.")


_OPTIMIZER_ATTRIBUTES = {
    SGDOptimizer: {
        "learning_rate_init": (lambda v: _is_finite(v) and v > 0, "a positive number"),
        "learning_rate": (lambda v: _is_finite(v) and v >= 0, "a number >= 0"),
        "lr_schedule": (lambda v: _is_name(v, _SCHEDULES), "a schedule's name"),
        "momentum": (_is_finite, "a number"),
        "nesterov": (_is_bool, "a bool"),
        "power_t": (_is_finite, "a number"),
        "velocity": (None, "the velocity"),
        "schedule": (None, "a Schedule"),
    },
    AdamOptimizer: {
        "learning_rate_init": (lambda v: _is_finite(v) and v > 0, "a positive number"),
        "beta_1": (lambda v: _is_finite(v) and 0 <= v < 1, "a number in [0, 1)"),
        "beta_2": (lambda v: _is_finite(v) and 0 <= v < 1, "a number in [0, 1)"),
        "epsilon": (lambda v: _is_finite(v) and v > 0, "a positive number"),
        "m": (None, "the first moments"),
        "v": (None, "the second moments"),
        "_t": (None, "the step count"),
        "schedule": (None, "a Schedule"),
    },
}
_SCHEDULE_ATTRIBUTES = {
    "kind": (lambda v: _is_name(v, _SCHEDULES), "a schedule's name"),
    "warmup": (_is_count, "a count"),
    "lr_min": (_is_finite, "a number"),
    "gamma": (_is_finite, "a number"),
    "factor": (_is_finite, "a number"),
    "patience": (_is_count, "a count"),
    "tol": (_is_finite, "a number"),
    "step": (_is_count, "a count"),
    "epoch": (_is_count, "a count"),
    "scale": (_is_finite, "a number"),
    "best": (_is_real, "a number"),
    "bad_epochs": (_is_count, "a count"),
}


def _fresh_attributes(cls):
    """The attributes a new optimizer or schedule has (an optimizer gets its schedule from
    the driver), whatever this table checks of them."""
    if cls is Schedule:
        return set(vars(Schedule()))
    return set(vars(cls(1, np.float64))) | {"schedule"}


def _check_fields(obj, table, where):
    expected = _fresh_attributes(type(obj))
    if set(vars(obj)) != expected:
        missing, extra = sorted(expected - set(vars(obj))), sorted(set(vars(obj)) - expected)
        raise FileFormatError(f"{where} lacks {missing} or has unknown attributes {extra}.")
    for name, (check, what) in table.items():
        if check is not None:
            _expect(obj, name, check, what, f"{where}'s ")


def _check_optimizer(optimizer, n_params):
    where = "the optimizer"
    if type(optimizer) not in _OPTIMIZER_ATTRIBUTES:
        raise FileFormatError(f"_optimizer is {_short(optimizer)}, not fusedmlp's SGD or Adam.")
    _check_fields(optimizer, _OPTIMIZER_ATTRIBUTES[type(optimizer)], where)
    state = optimizer.arrays()
    steps = state.pop("t", None)
    dtypes = set()
    for name, a in state.items():
        if not (_is_float_array(a, 1) and a.shape == (n_params,)):
            raise FileFormatError(f"the optimizer's {name!r} state is not a float array of the "
                                  f"{n_params} parameters.")
        dtypes.add(a.dtype)
    if len(dtypes) != 1:
        raise FileFormatError("the optimizer's 'm' and 'v' states have different dtypes.")
    if type(optimizer) is AdamOptimizer and not (
        isinstance(steps, np.ndarray) and steps.dtype == np.int64 and steps.shape == (1,)
        and steps[0] >= 0
    ):
        raise FileFormatError("the optimizer's step count 't' is not one int64 >= 0.")
    schedule = optimizer.schedule
    if type(schedule) is not Schedule:
        raise FileFormatError(f"the optimizer's schedule is {_short(schedule)}, not a "
                              "Schedule.")
    _check_fields(schedule, _SCHEDULE_ATTRIBUTES, "the learning-rate schedule")


def _check_perceptron(est):
    _expect(est, "t_", _is_finite, "a number")
    _expect(est, "n_iter_", lambda v: _is_finite(v) and v >= 0, "a count")
    coef = vars(est).get("coef_")
    if coef is None:
        # unfitted, or a first fit that failed after clearing the weights
        if vars(est).get("intercept_") is not None:
            raise FileFormatError("the estimator has intercept_ but no coef_.")
        return
    _require(est, ("intercept_", "classes_", "n_features_in_"), "the fitted estimator")
    intercept, n_classes = est.intercept_, len(est.classes_)
    if not (_is_float_array(coef, 2) and _is_float_array(intercept, 1)
            and intercept.shape == (coef.shape[0],)
            and coef.shape[1] == est.n_features_in_ and n_classes >= 2
            and coef.shape[0] == (1 if n_classes == 2 else n_classes)):
        raise FileFormatError("coef_, intercept_, classes_ and n_features_in_ have shapes or "
                              "dtypes that disagree.")
    _expect(est, "_expanded_class_weight",
            lambda v: _is_float_array(v, 1) and v.shape == (n_classes,),
            "a float array of one weight per class")
