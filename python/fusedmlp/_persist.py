"""Save and load fitted estimators as portable files: arrays and JSON, never pickle.

``est.save(path)`` writes the estimator's parameters and its whole fitted state (weights,
optimizer state, schedules, histories, label encoding, random state) into the container of
``_archive.py``; ``fusedmlp.load(path)`` builds an identical estimator: the same predictions
bit for bit, and ``partial_fit`` continues exactly where the saved model stopped.

Values are written as JSON with a few tagged forms (tuples, non-finite floats, numpy scalars,
dtypes, dicts with non-string keys); arrays go to the container by name. Objects are
restored only from a fixed list of classes (the estimators, their optimizers and schedules,
scikit-learn's ``LabelBinarizer`` and numpy's ``RandomState``), by setting attributes on a
new instance: nothing in a file can name code to run. A file that decodes is then checked
for consistency (shapes, dtypes, lengths) before an estimator is returned.
"""

import math

import numpy as np
from sklearn.preprocessing import LabelBinarizer

from ._archive import FileFormatError, read_archive, write_archive
from ._params import AdamOptimizer, Schedule, SGDOptimizer, layer_units

# attributes never saved: the flat buffer's views and layout (rebuilt from coefs_, as after
# unpickling), and what only lives during a fit
_TRANSIENT = {"_params", "_param_views", "_layout", "_skl_callbacks", "_callback_fit_ctx",
              "_skl_callbacks_to_teardown", "_parent_callback_ctx"}
_DTYPES = ("float32", "float64", "int32", "int64", "bool")


def _classes():
    from ._multilayer_perceptron import MLPClassifier, MLPRegressor
    from ._perceptron import Perceptron

    estimators = {c.__name__: c for c in (MLPClassifier, MLPRegressor, Perceptron)}
    helpers = {c.__name__: c for c in (SGDOptimizer, AdamOptimizer, Schedule, LabelBinarizer)}
    return estimators, helpers


class _Encoder:
    def __init__(self):
        self.arrays = {}

    def array(self, a, where):
        a = np.asarray(a)
        if a.dtype == object:
            try:
                a = a.astype(str) if all(isinstance(v, str) for v in a.ravel()) else None
            except TypeError:
                a = None
            if a is None:
                raise TypeError(f"{where}: an object array that is not all strings cannot be "
                                "saved without pickle.")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = a
        return {"__array__": name}

    def value(self, v, where):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(v, np.generic):
            if isinstance(v, np.bool_):
                return bool(v)
            if isinstance(v, np.integer):
                return {"__scalar__": str(v.dtype), "value": int(v)}
            if isinstance(v, np.floating):
                return {"__scalar__": str(v.dtype), "value": self.value(float(v), where)}
            if isinstance(v, np.str_):
                return str(v)
        if isinstance(v, np.ndarray):
            return self.array(v, where)
        if isinstance(v, tuple):
            return {"__tuple__": [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, dict):
            if all(isinstance(k, str) for k in v):
                return {"__dict__": {k: self.value(x, f"{where}[{k!r}]") for k, x in v.items()}}
            return {"__items__": [[self.value(k, where), self.value(x, f"{where}[{k!r}]")]
                                  for k, x in v.items()]}
        if isinstance(v, type) and v in (np.float32, np.float64):
            return {"__type__": v.__name__}
        if isinstance(v, np.dtype) and v.name in _DTYPES:
            return {"__dtype__": v.name}
        if isinstance(v, np.random.RandomState):
            kind, keys, pos, has_gauss, gauss = v.get_state()
            return {"__random_state__": [kind, self.array(keys, where), int(pos),
                                         int(has_gauss), float(gauss)]}
        _, helpers = _classes()
        if type(v).__name__ in helpers and type(v) is helpers[type(v).__name__]:
            return {"__object__": type(v).__name__,
                    "state": self.value(dict(vars(v)), f"{where}.__dict__")}
        raise TypeError(
            f"{where} is a {type(v).__module__}.{type(v).__name__}, which a fusedmlp model file "
            "cannot hold (only numbers, strings, arrays and the estimators' own types). Use "
            "pickle or joblib for such a model."
        )


class _Decoder:
    def __init__(self, arrays):
        self.arrays = arrays

    def value(self, v, where):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if not isinstance(v, dict) or len(v) == 0:
            raise FileFormatError(f"{where}: unexpected value {v!r}: the file was edited.")
        tag = next(iter(v))
        try:
            return self._tagged(tag, v, where)
        except FileFormatError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as e:
            raise FileFormatError(
                f"{where}: malformed {tag!r} entry ({e}): the file is damaged or was edited."
            ) from e

    def _tagged(self, tag, v, where):
        if tag == "__array__":
            return self.arrays[v["__array__"]].copy()
        if tag == "__float__":
            text = v["__float__"]
            if text not in ("nan", "inf", "-inf"):
                raise ValueError(f"not a non-finite float: {text!r}")
            return float(text)
        if tag == "__scalar__":
            dtype = np.dtype(v["__scalar__"])
            if dtype.name not in _DTYPES:
                raise ValueError(f"scalar type {dtype.name} is not allowed")
            return dtype.type(self.value(v["value"], where))
        if tag == "__tuple__":
            return tuple(self.value(x, where) for x in v["__tuple__"])
        if tag == "__dict__":
            return {str(k): self.value(x, f"{where}[{k!r}]") for k, x in v["__dict__"].items()}
        if tag == "__items__":
            return {self._key(self.value(k, where)): self.value(x, where)
                    for k, x in v["__items__"]}
        if tag == "__type__":
            return {"float32": np.float32, "float64": np.float64}[v["__type__"]]
        if tag == "__dtype__":
            if v["__dtype__"] not in _DTYPES:
                raise ValueError(f"dtype {v['__dtype__']} is not allowed")
            return np.dtype(v["__dtype__"])
        if tag == "__random_state__":
            kind, keys, pos, has_gauss, gauss = v["__random_state__"]
            rs = np.random.RandomState()
            rs.set_state((str(kind), self.value(keys, where), int(pos), int(has_gauss),
                          float(gauss)))
            return rs
        if tag == "__object__":
            _, helpers = _classes()
            cls = helpers[v["__object__"]]  # (KeyError: not an allowed class)
            state = self.value(v["state"], f"{where}.__dict__")
            if not isinstance(state, dict):
                raise ValueError("an object's state must be a dict")
            obj = cls.__new__(cls)
            obj.__dict__.update(state)
            return obj
        raise ValueError(f"unknown tag {tag!r}")

    @staticmethod
    def _key(k):
        hash(k)  # (TypeError for a list: not a dict key)
        return k


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
    meta = {"state": encoder.value(state, kind)}
    write_archive(file, kind, meta, encoder.arrays)


def load(file):
    """Read an estimator written by ``save``.

    Parameters
    ----------
    file : str, path-like or binary file object
        The file ``est.save`` wrote.

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
    kind, meta, arrays = read_archive(file)
    estimators, _ = _classes()
    if kind not in estimators:
        raise FileFormatError(
            f"the file holds a {kind!r}, which is not a fusedmlp estimator "
            f"({sorted(estimators)})."
        )
    if not isinstance(meta, dict) or set(meta) != {"state"}:
        raise FileFormatError("the file's metadata is not a saved estimator: it was edited.")
    state = _Decoder(arrays).value(meta["state"], kind)
    if not isinstance(state, dict):
        raise FileFormatError("the saved state is not a dict: the file was edited.")
    cls = estimators[kind]
    est = cls.__new__(cls)
    est.__dict__.update(state)
    try:
        _check_loaded(est)
    except FileFormatError:
        raise
    except Exception as e:  # any inconsistency an edited file can hold
        raise FileFormatError(
            f"the saved {kind} is inconsistent ({type(e).__name__}: {e}): the file is damaged "
            "or was edited."
        ) from e
    return est


def _check_loaded(est):
    """Reject a decoded estimator whose parts disagree, before anyone uses it."""
    params = est.get_params(deep=False)  # every parameter present
    for name in params:
        if name not in vars(est):
            raise FileFormatError(f"the saved estimator lacks its parameter {name!r}.")
    est._validate_params()
    if hasattr(est, "coefs_"):
        coefs, intercepts = est.coefs_, est.intercepts_
        if not (isinstance(coefs, list) and isinstance(intercepts, list)
                and len(coefs) == len(intercepts) >= 1):
            raise FileFormatError("coefs_ and intercepts_ must be lists of equal length.")
        dtype = coefs[0].dtype
        if dtype not in (np.float32, np.float64):
            raise FileFormatError(f"coefs_ have dtype {dtype}; a model computes in float32 or "
                                  "float64.")
        for i, (c, b) in enumerate(zip(coefs, intercepts)):
            if not (isinstance(c, np.ndarray) and isinstance(b, np.ndarray)
                    and c.ndim == 2 and b.ndim == 1 and c.dtype == dtype and b.dtype == dtype
                    and b.shape[0] == c.shape[1]
                    and (i == 0 or c.shape[0] == coefs[i - 1].shape[1])):
                raise FileFormatError(f"layer {i}'s weights and biases have shapes that "
                                      "disagree.")
        units = layer_units(coefs)
        if est.n_outputs_ != units[-1] or est.n_features_in_ != units[0]:
            raise FileFormatError("n_features_in_ and n_outputs_ disagree with the weights.")
        n_params = sum(a * b + b for a, b in zip(units[:-1], units[1:]))
        optimizer = getattr(est, "_optimizer", None)
        if optimizer is not None:
            for name, a in optimizer.arrays().items():
                expected = 1 if name == "t" else n_params
                if not (isinstance(a, np.ndarray) and a.ndim == 1 and a.shape[0] == expected):
                    raise FileFormatError(f"the optimizer's {name!r} state has the wrong "
                                          "shape.")
        best = getattr(est, "_best_params", None)
        if best is not None and (not isinstance(best, np.ndarray) or best.shape != (n_params,)):
            raise FileFormatError("the early-stopping snapshot has the wrong shape.")
        est.__setstate__(dict(vars(est)))  # binds the flat buffer, as after unpickling
    if hasattr(est, "coef_"):  # the Perceptron
        coef, intercept = est.coef_, est.intercept_
        if not (isinstance(coef, np.ndarray) and coef.ndim == 2
                and isinstance(intercept, np.ndarray) and intercept.shape == (coef.shape[0],)
                and coef.shape[1] == est.n_features_in_
                and coef.shape[0] == (1 if len(est.classes_) == 2 else len(est.classes_))):
            raise FileFormatError("coef_, intercept_ and classes_ have shapes that disagree.")
