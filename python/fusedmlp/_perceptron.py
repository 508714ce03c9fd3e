"""Perceptron: scikit-learn's linear perceptron, trained by fusedmlp's C++ loop.

The control flow (validation, parameter allocation, class weights, the one-vs-rest driver, the
random draws, the validation split, warnings and errors) follows scikit-learn's
``sklearn/linear_model/_stochastic_gradient.py`` (``BaseSGDClassifier``, ``fit_binary``) step
by step. What scikit-learn's Cython ``_plain_sgd`` does, sample by sample and epoch by epoch,
runs in ``fusedmlp._cpu`` (csrc/cpu/perceptron.cpp): one native call for a whole fit, with the
one-vs-rest classes on parallel threads. Prediction is scikit-learn's own
``LinearClassifierMixin``.
"""

import time
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model._base import LinearClassifierMixin, SparseCoefMixin
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils import check_random_state, compute_class_weight
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import _check_partial_fit_first_call
from sklearn.utils.validation import _assert_all_finite, _check_sample_weight, validate_data

from . import _cpu, _engine, _persist
from ._driver import CallbackSupport, FitHooks
from ._validation import check_sparse_structure

MAX_INT = np.iinfo(np.int32).max
# scikit-learn damps the intercept's updates on sparse data (sklearn.linear_model._base)
SPARSE_INTERCEPT_DECAY = 0.01


class Perceptron(CallbackSupport, LinearClassifierMixin, SparseCoefMixin, BaseEstimator):
    """Linear perceptron classifier, a drop-in for scikit-learn's Perceptron.

    scikit-learn's ``Perceptron`` is ``SGDClassifier(loss="perceptron", eta0=1,
    learning_rate="constant", penalty=None)``; this class trains the same model with the same
    arithmetic, the per-sample loop in C++ and the one-vs-rest classes of a multiclass problem
    on parallel threads. Parameters, attributes, warnings and errors are scikit-learn's.

    Parameters
    ----------
    penalty : {'l2','l1','elasticnet'}, default=None
        The penalty (aka regularization term) to be used.

    alpha : float, default=0.0001
        Constant that multiplies the regularization term if regularization is used.

    l1_ratio : float, default=0.15
        The Elastic Net mixing parameter, with `0 <= l1_ratio <= 1`. `l1_ratio=0` corresponds
        to L2 penalty, `l1_ratio=1` to L1. Only used if `penalty='elasticnet'`.

    fit_intercept : bool, default=True
        Whether the intercept should be estimated or not. If False, the data is assumed to be
        already centered.

    max_iter : int, default=1000
        The maximum number of passes over the training data (aka epochs). It only impacts the
        behavior in the ``fit`` method, and not the :meth:`partial_fit` method.

    tol : float or None, default=1e-3
        The stopping criterion. If it is not None, the iterations will stop when
        (loss > previous_loss - tol).

    shuffle : bool, default=True
        Whether or not the training data should be shuffled after each epoch.

    verbose : int, default=0
        The verbosity level. With `verbose > 0` the classes of a multiclass problem are
        trained one after another, so that each epoch's report prints as it ends.

    eta0 : float, default=1
        Constant by which the updates are multiplied.

    n_jobs : int, default=None
        The number of threads that train the classes of a multiclass (one-versus-all) problem
        at once, read as joblib reads it: ``None`` means 1 unless in a
        :obj:`joblib.parallel_backend` context, ``-1`` means all processors. The threads are
        OpenMP threads of one native call; the model does not depend on their number. The
        one pass that prepares dense X for the fast path is data-parallel, like the BLAS
        calls in scikit-learn, and uses OpenMP's thread limit (``OMP_NUM_THREADS``,
        threadpoolctl).

    random_state : int, RandomState instance or None, default=0
        Used to shuffle the training data, when ``shuffle`` is set to ``True``. Pass an int for
        reproducible output across multiple function calls. The same draws as scikit-learn's
        give the same shuffles.

    early_stopping : bool, default=False
        Whether to use early stopping to terminate training when validation score is not
        improving. If set to True, it will automatically set aside a stratified fraction of
        training data as validation and terminate training when validation score is not
        improving by at least `tol` for `n_iter_no_change` consecutive epochs.

    validation_fraction : float, default=0.1
        The proportion of training data to set aside as validation set for early stopping.
        Must be between 0 and 1. Only used if early_stopping is True.

    n_iter_no_change : int, default=5
        Number of iterations with no improvement to wait before early stopping.

    class_weight : dict, {class_label: weight} or "balanced", default=None
        Preset for the class_weight fit parameter. Weights associated with classes. If not
        given, all classes are supposed to have weight one. The "balanced" mode uses the
        values of y to automatically adjust weights inversely proportional to class
        frequencies in the input data as ``n_samples / (n_classes * np.bincount(y))``.

    warm_start : bool, default=False
        When set to True, reuse the solution of the previous call to fit as initialization,
        otherwise, just erase the previous solution.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The unique classes labels.

    coef_ : ndarray of shape (1, n_features) if n_classes == 2 else (n_classes, n_features)
        Weights assigned to the features, in the dtype of the training data (float32 or
        float64).

    intercept_ : ndarray of shape (1,) if n_classes == 2 else (n_classes,)
        Constants in decision function.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X` has feature names
        that are all strings.

    n_iter_ : int
        The actual number of iterations to reach the stopping criterion. For multiclass fits,
        it is the maximum over every binary fit.

    t_ : int
        Number of weight updates performed during training. Same as
        ``(n_iter_ * n_samples + 1)``.

    Notes
    -----
    Differences from scikit-learn 1.9, all deliberate: ``coef_init`` and ``intercept_init``
    are copied, never trained in place; a :meth:`partial_fit` on data of the other float
    precision than the model's converts the data (scikit-learn raises a TypeError from its
    Cython loop), and one after :meth:`sparsify` raises a TypeError that says to call
    :meth:`densify` (scikit-learn's TypeError comes from Cython); with ``verbose``, joblib's
    own progress lines are not printed.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from fusedmlp import Perceptron
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = Perceptron(tol=1e-3, random_state=0)
    >>> clf.fit(X, y)
    Perceptron()
    >>> clf.score(X, y)
    0.939...
    """

    _parameter_constraints: dict = {
        "penalty": [StrOptions({"l2", "l1", "elasticnet"}), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "fit_intercept": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "shuffle": ["boolean"],
        "verbose": ["verbose"],
        "eta0": [Interval(Real, 0, None, closed="neither")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "warm_start": ["boolean"],
    }

    # What scikit-learn's Perceptron fixes in the SGDClassifier it is (read-only here).
    loss = "perceptron"
    learning_rate = "constant"
    power_t = 0.5
    epsilon = 0.1
    average = False

    def __init__(
        self,
        *,
        penalty=None,
        alpha=0.0001,
        l1_ratio=0.15,
        fit_intercept=True,
        max_iter=1000,
        tol=1e-3,
        shuffle=True,
        verbose=0,
        eta0=1.0,
        n_jobs=None,
        random_state=0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        class_weight=None,
        warm_start=False,
    ):
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.eta0 = eta0
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.warm_start = warm_start

    # ---- scikit-learn's BaseSGD ------------------------------------------------------------

    def _more_validate_params(self, for_partial_fit=False):
        # learning_rate is "constant" and l1_ratio never None here: of scikit-learn's checks
        # only this one can fail
        if self.early_stopping and for_partial_fit:
            raise ValueError("early_stopping should be False with partial_fit")
        # scikit-learn's loop takes these as C ints (it raises OverflowError beyond);
        # partial_fit runs one epoch whatever max_iter says
        for name in ("n_iter_no_change",) if for_partial_fit else ("max_iter", "n_iter_no_change"):
            if getattr(self, name) > MAX_INT:
                raise ValueError(
                    f"The '{name}' parameter must be at most {MAX_INT}; got "
                    f"{getattr(self, name)!r}."
                )

    def _allocate_parameter_mem(
        self, n_classes, n_features, input_dtype, coef_init=None, intercept_init=None
    ):
        """Allocate mem for parameters; initialize if provided (copies, never views)."""
        if n_classes > 2:
            if coef_init is not None:
                coef_init = np.array(coef_init, dtype=input_dtype, order="C")
                if coef_init.shape != (n_classes, n_features):
                    raise ValueError("Provided ``coef_`` does not match dataset. ")
                self.coef_ = coef_init
            else:
                self.coef_ = np.zeros((n_classes, n_features), dtype=input_dtype, order="C")

            if intercept_init is not None:
                intercept_init = np.array(intercept_init, order="C", dtype=input_dtype)
                if intercept_init.shape != (n_classes,):
                    raise ValueError("Provided intercept_init does not match dataset.")
                self.intercept_ = intercept_init
            else:
                self.intercept_ = np.zeros(n_classes, dtype=input_dtype, order="C")
        else:
            if coef_init is not None:
                coef_init = np.array(coef_init, dtype=input_dtype, order="C")
                coef_init = coef_init.ravel()
                if coef_init.shape != (n_features,):
                    raise ValueError("Provided coef_init does not match dataset.")
                self.coef_ = coef_init
            else:
                self.coef_ = np.zeros(n_features, dtype=input_dtype, order="C")

            if intercept_init is not None:
                intercept_init = np.array(intercept_init, dtype=input_dtype)
                if intercept_init.shape != (1,) and intercept_init.shape != ():
                    raise ValueError("Provided intercept_init does not match dataset.")
                self.intercept_ = intercept_init.reshape(1)
            else:
                self.intercept_ = np.zeros(1, dtype=input_dtype, order="C")

    def _make_validation_split(self, y, sample_mask):
        """Split the dataset between training set and validation set.

        Returns a boolean mask of shape (n_samples,), True on the validation set.
        """
        n_samples = y.shape[0]
        validation_mask = np.zeros(n_samples, dtype=np.bool_)
        if not self.early_stopping:
            # use the full set for training, with an empty validation set
            return validation_mask

        cv = StratifiedShuffleSplit(
            test_size=self.validation_fraction, random_state=self.random_state
        )
        idx_train, idx_val = next(cv.split(np.zeros(shape=(y.shape[0], 1)), y))

        if not np.any(sample_mask[idx_val]):
            raise ValueError(
                "The sample weights for validation set are all zero, consider using a"
                " different random state."
            )

        if idx_train.shape[0] == 0 or idx_val.shape[0] == 0:
            raise ValueError(
                "Splitting %d samples into a train set and a validation set "
                "with validation_fraction=%r led to an empty set (%d and %d "
                "samples). Please either change validation_fraction, increase "
                "number of samples, or disable early_stopping."
                % (
                    n_samples,
                    self.validation_fraction,
                    idx_train.shape[0],
                    idx_val.shape[0],
                )
            )

        validation_mask[idx_val] = True
        return validation_mask

    def _validate_data_and_read_rows(self, X, y, max_iter, **params):
        """validate_data(self, X, y, **params), and dense X read once by the native engine,
        which checks that its values are finite (scikit-learn's check, on OpenMP's threads) as
        it prepares the rows the fit screens samples from. Returns X, y and the rows (None for
        sparse X). The errors are scikit-learn's, in its order."""
        if sp.issparse(X):
            return (*validate_data(self, X, y, **params), None)
        try:
            X, y = validate_data(self, X, y, ensure_all_finite=False, **params)
        except Exception:
            # scikit-learn checks X's values before what validate_data checks after them
            validate_data(self, X, y, **params)
            raise
        rows_class = _cpu.PerceptronRowsF32 if X.dtype == np.float32 else _cpu.PerceptronRowsF64
        rows = rows_class(_engine.as_engine_input(X), int(max_iter), _cpu.max_threads())
        if not rows.all_finite:
            _assert_all_finite(X, input_name="X", estimator_name=type(self).__name__)
        return X, y, rows

    # ---- scikit-learn's BaseSGDClassifier --------------------------------------------------

    def _partial_fit(
        self, X, y, max_iter, classes, sample_weight, coef_init, intercept_init,
        classes_of_y=False,
    ):
        first_call = not hasattr(self, "classes_")
        X, y, rows = self._validate_data_and_read_rows(
            X,
            y,
            max_iter,
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            order="C",
            accept_large_sparse=False,
            reset=first_call,
        )

        n_samples, n_features = X.shape

        _check_partial_fit_first_call(self, classes)

        n_classes = self.classes_.shape[0]

        # Allocate datastructures from input arguments
        if self.class_weight is None and classes_of_y:
            # what compute_class_weight returns when the classes are y's own, without its
            # pass over y
            self._expanded_class_weight = np.ones(n_classes, dtype=np.float64)
        else:
            self._expanded_class_weight = compute_class_weight(
                self.class_weight, classes=self.classes_, y=y
            )

        # Skip check that validation weights are not all zero when `early_stopping` is
        # set to True as `_make_validation_split` will raise a more informative error.
        sample_weight = _check_sample_weight(
            sample_weight,
            X,
            dtype=X.dtype,
            allow_all_zero_weights=self.early_stopping,
        )

        if getattr(self, "coef_", None) is None or coef_init is not None:
            self._allocate_parameter_mem(
                n_classes=n_classes,
                n_features=n_features,
                input_dtype=X.dtype,
                coef_init=coef_init,
                intercept_init=intercept_init,
            )
        elif n_features != self.coef_.shape[-1]:
            raise ValueError(
                "Number of features %d does not match previous data %d."
                % (n_features, self.coef_.shape[-1])
            )

        if not hasattr(self, "t_"):
            self.t_ = 1.0

        # scikit-learn's callback protocol: the fit, then one subtask per epoch
        hooks = FitHooks(self, X, y, sample_weight, max_subtasks=int(max_iter))
        self._hooks = hooks
        try:
            self._train(X, y, sample_weight, max_iter, n_classes, rows)
        finally:
            del self._hooks
            self.__dict__.pop("_live_solver", None)
        hooks.close()  # (the model is stored: the fit's task ends)
        return self

    def _train(self, X, y, sample_weight, max_iter, n_classes, rows):
        # delegate to concrete training procedure
        if n_classes > 2:
            self._fit_multiclass(X, y, sample_weight=sample_weight, max_iter=max_iter, rows=rows)
        elif n_classes == 2:
            self._fit_binary(X, y, sample_weight=sample_weight, max_iter=max_iter, rows=rows)
        else:
            raise ValueError(
                "The number of classes has to be greater than one; got %d class"
                % n_classes
            )

        return self

    def _fit(self, X, y, coef_init=None, intercept_init=None, sample_weight=None):
        if hasattr(self, "classes_"):
            # delete the attribute otherwise _partial_fit thinks it's not the first call
            delattr(self, "classes_")

        # labels can be encoded as float, int, or string literals
        # np.unique sorts in asc order; largest class id is positive class
        y = validate_data(self, y=y)
        classes = np.unique(y)

        if self.warm_start and hasattr(self, "coef_"):
            if coef_init is None:
                coef_init = self.coef_
            if intercept_init is None:
                intercept_init = self.intercept_
        else:
            self.coef_ = None
            self.intercept_ = None

        # Clear iteration count for multiple call to fit.
        self.t_ = 1.0

        self._partial_fit(
            X,
            y,
            self.max_iter,
            classes,
            sample_weight,
            coef_init,
            intercept_init,
            classes_of_y=True,
        )

        if (
            self.tol is not None
            and self.tol > -np.inf
            and self.n_iter_ == self.max_iter
        ):
            warnings.warn(
                (
                    "Maximum number of iteration reached before "
                    "convergence. Consider increasing max_iter to "
                    "improve the fit."
                ),
                ConvergenceWarning,
            )

        return self

    def _fit_binary(self, X, y, sample_weight, max_iter, rows=None):
        """Fit a binary classifier on X and y: scikit-learn's fit_binary for class 1."""
        # fit_binary's random draws: make_dataset draws a seed it does not shuffle with, the
        # validation split uses self.random_state, then the shuffle seed
        random_state = check_random_state(self.random_state)
        random_state.randint(1, MAX_INT)
        if self.early_stopping:  # the split is of the +1/-1 labels
            y_i = np.ones(y.shape, dtype=X.dtype, order="C")
            y_i[y != self.classes_[1]] = -1.0
        else:
            y_i = y
        validation_mask = self._make_validation_split(y_i, sample_mask=sample_weight > 0)
        seed = random_state.randint(MAX_INT)

        coef = self._coef_to_train().reshape(1, -1)
        intercepts = np.array([self.intercept_[0]], dtype=np.float64)
        n_iter, intercepts = self._run_sgd(
            X, y, sample_weight, max_iter, validation_mask, coef, intercepts,
            positive=[1],
            weight_pos=[self._expanded_class_weight[1]],
            weight_neg=[self._expanded_class_weight[0]],
            seeds=[seed],
            rows=rows,
        )
        self._store_binary(X, coef, intercepts, n_iter)

    def _coef_to_train(self):
        """A copy of coef_, which the native loop trains in place."""
        if sp.issparse(self.coef_):
            # scikit-learn fails here too, with a TypeError from its Cython loop
            raise TypeError(
                "coef_ is a sparse matrix (after sparsify()); call densify() before "
                "partial_fit."
            )
        return np.array(self.coef_, order="C")

    def _store_binary(self, X, coef, intercepts, n_iter):
        n_iter_ = int(n_iter[0])
        self.t_ += n_iter_ * X.shape[0]
        self.n_iter_ = n_iter_
        # need to be 2d
        self.coef_ = coef.reshape(1, -1)
        # intercept is a float, need to convert it to an array of length 1
        self.intercept_ = np.atleast_1d(float(intercepts[0]))

    def _fit_multiclass(self, X, y, sample_weight, max_iter, rows=None):
        """Fit a multi-class classifier by combining binary classifiers.

        Each binary classifier predicts one class versus all others (OvA, OvR). They train
        at once on up to `n_jobs` threads.
        """
        # Precompute the validation split using the multiclass labels
        # to ensure proper balancing of the classes.
        validation_mask = self._make_validation_split(y, sample_mask=sample_weight > 0)

        # The seed of each class, drawn as scikit-learn draws them; fit_binary then makes a
        # RandomState of it, which draws make_dataset's seed and then the shuffle seed.
        random_state = check_random_state(self.random_state)
        seeds = random_state.randint(MAX_INT, size=len(self.classes_))
        shuffle_seeds = []
        for seed in seeds:
            rs = check_random_state(seed)
            rs.randint(1, MAX_INT)
            shuffle_seeds.append(rs.randint(MAX_INT))
        n_classes = len(self.classes_)
        if self.n_jobs is not None and self.n_jobs > MAX_INT:
            # (scikit-learn's one-vs-rest threads reject it too; negative counts mean "all
            # cores but |n_jobs| - 1", at least one, as in joblib)
            raise ValueError(
                f"The 'n_jobs' parameter must be at most {MAX_INT}; got {self.n_jobs!r}."
            )
        n_threads = min(effective_n_jobs(self.n_jobs), n_classes)

        coef = self._coef_to_train()
        intercepts = np.asarray(self.intercept_, dtype=np.float64)
        n_iter, intercepts = self._run_sgd(
            X, y, sample_weight, max_iter, validation_mask, coef, intercepts,
            positive=list(range(n_classes)),
            weight_pos=list(self._expanded_class_weight),
            weight_neg=[1.0] * n_classes,
            seeds=shuffle_seeds,
            n_threads=n_threads,
            rows=rows,
        )
        self._store_multiclass(X, coef, intercepts, n_iter)

    def _store_multiclass(self, X, coef, intercepts, n_iter):
        intercept_ = np.array(self.intercept_)
        # take the maximum of n_iter_ over every binary fit
        n_iter_ = 0.0
        for i, n_iter_i in enumerate(n_iter):
            intercept_[i] = intercepts[i]
            n_iter_ = max(n_iter_, int(n_iter_i))
        self.coef_ = coef
        self.intercept_ = intercept_
        self.t_ += n_iter_ * X.shape[0]
        self.n_iter_ = n_iter_

    def _run_sgd(
        self, X, y, sample_weight, max_iter, validation_mask, coef, intercepts, positive,
        weight_pos, weight_neg, seeds, n_threads=1, rows=None,
    ):
        """scikit-learn's _plain_sgd for every task, in one native call: trains coef (one row
        per task) in place; returns each task's number of epochs and intercept. `rows`: X as
        _validate_data_and_read_rows read it."""
        # all-ones weights are not handed over: one memory read less per sample
        unit_weights = bool(np.all(sample_weight == 1))
        dtype = coef.dtype
        if X.dtype != dtype:
            # partial_fit on data of the other precision than the model's
            X = X.astype(dtype)
            sample_weight = sample_weight.astype(dtype)
            rows = None
        y_class = np.full(y.shape[0], -1, dtype=np.int32)
        for i, c in enumerate(self.classes_):
            y_class[y == c] = i

        validation, validation_weight_sum = None, 0.0
        if self.early_stopping:
            validation = validation_mask.view(np.uint8)
            # accuracy_score's np.average: the weights' sum, in float64, must not be zero
            validation_weight_sum = float(
                sample_weight[validation_mask].sum(dtype=np.float64)
            )
            if validation_weight_sum == 0.0:
                raise ZeroDivisionError("Weights sum to zero, can't be normalized")

        solver_class = _cpu.PerceptronSolverF32 if dtype == np.float32 else _cpu.PerceptronSolverF64
        solver = solver_class(
            _engine.as_engine_input(X),
            y_class,
            None if unit_weights else np.ascontiguousarray(sample_weight, dtype=dtype),
            validation,
            validation_weight_sum,
            coef,
            tasks=dict(
                positive=np.asarray(positive, dtype=np.int64),
                intercept=np.asarray(intercepts, dtype=np.float64),
                weight_pos=np.asarray(weight_pos, dtype=np.float64),
                weight_neg=np.asarray(weight_neg, dtype=np.float64),
                seed=np.asarray(seeds, dtype=np.int64),
            ),
            options=self._solver_options(max_iter, sp.issparse(X)),
            rows=rows,
        )
        n_tasks = coef.shape[0]
        hooks = getattr(self, "_hooks", None)
        try:
            if self.verbose > 0:
                self._run_verbose(solver, n_tasks)
            elif hooks is not None and hooks.active:
                self._run_with_callbacks(solver, n_tasks, n_threads, hooks)
            else:
                solver.run(None, max_iter, n_threads)
        except KeyboardInterrupt:
            # Ctrl-C: keep what has been trained, as a consistent model, and stop
            solver.finish()
            status = [solver.status(k) for k in range(n_tasks)]
            n_iter = [s["n_iter"] for s in status]
            if n_tasks == 1:
                self._store_binary(X, coef, [status[0]["intercept"]], n_iter)
            else:
                self._store_multiclass(X, coef, [s["intercept"] for s in status], n_iter)
            raise

        status = [solver.status(k) for k in range(n_tasks)]
        for s in status:
            if s["diverged"]:
                raise ValueError(
                    "Floating-point under-/overflow occurred at epoch"
                    " #%d. Scaling input data with StandardScaler or"
                    " MinMaxScaler might help." % s["n_iter"]
                )
        return [s["n_iter"] for s in status], [s["intercept"] for s in status]

    def _run_with_callbacks(self, solver, n_tasks, n_threads, hooks):
        """Every task one epoch at a time (the same arithmetic as one call for all epochs),
        with a callback subtask per epoch; a callback's stop request ends every task."""
        self._live_solver = (solver, n_tasks)
        while not all(solver.status(k)["done"] for k in range(n_tasks)):
            hooks.begin("epoch")
            solver.run(None, 1, n_threads)
            if hooks.end():
                solver.finish()  # the weights as they are now, in coef
                if self.verbose:
                    print("A callback asked to stop.")
                return

    def _reconstruction_attributes(self):
        """The model as it is now, between two epochs (scikit-learn's callback protocol)."""
        solver, n_tasks = self._live_solver
        status = [solver.status(k) for k in range(n_tasks)]
        return {
            "coef_": solver.current_weights(),
            "intercept_": np.array([s["intercept"] for s in status], dtype=np.float64),
            "n_iter_": max(int(s["n_iter"]) for s in status),
        }

    def _solver_options(self, max_iter, sparse):
        return dict(
            penalty=str(self.penalty).lower(),
            alpha=float(self.alpha),
            l1_ratio=float(self.l1_ratio),
            eta0=float(self.eta0),
            fit_intercept=bool(self.fit_intercept),
            intercept_decay=SPARSE_INTERCEPT_DECAY if sparse else 1.0,
            max_iter=int(max_iter),
            tol=float(self.tol) if self.tol is not None else -np.inf,
            n_iter_no_change=int(self.n_iter_no_change),
            shuffle=bool(self.shuffle),
            early_stopping=bool(self.early_stopping),
            verbose=int(self.verbose) > 0,
        )

    def _run_verbose(self, solver, n_tasks):
        """One task after the other, one epoch per call, printing scikit-learn's report."""
        for k in range(n_tasks):
            t_start = time.time()
            status = solver.status(k)
            while not status["done"]:
                print("-- Epoch %d" % (status["n_iter"] + 1))
                solver.run([k], 1)
                status = solver.status(k)
                if status["diverged"]:
                    return
                e = status["last_epoch"]
                line = "Norm: %.2f, NNZs: %d, Bias: %.6f, T: %d, Avg. loss: %f, Objective: %f" % (
                    e["norm"], e["nnz"], e["intercept"], e["count"], e["avg_loss"], e["objective"],
                )
                if self.early_stopping:
                    line += ", Validation score: %f" % e["score"]
                print(line)
                print("Total training time: %.2f seconds." % (time.time() - t_start))
                if status["converged"]:
                    print(
                        "Convergence after %d epochs took %.2f seconds"
                        % (status["n_iter"], time.time() - t_start)
                    )

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Perform one epoch of stochastic gradient descent on given samples.

        Internally, this method uses ``max_iter = 1``. Therefore, it is not guaranteed that a
        minimum of the cost function is reached after calling it once. Matters such as
        objective convergence, early stopping, and learning rate adjustments should be
        handled by the user.

        Parameters
        ----------
        X : {array-like, sparse matrix}, shape (n_samples, n_features)
            Subset of the training data.

        y : ndarray of shape (n_samples,)
            Subset of the target values.

        classes : ndarray of shape (n_classes,), default=None
            Classes across all calls to partial_fit. Can be obtained by via
            `np.unique(y_all)`, where y_all is the target vector of the entire dataset.
            This argument is required for the first call to partial_fit and can be omitted
            in the subsequent calls. Note that y doesn't need to contain all labels in
            `classes`.

        sample_weight : array-like, shape (n_samples,), default=None
            Weights applied to individual samples. If not provided, uniform weights are
            assumed.

        Returns
        -------
        self : object
            Returns an instance of self.
        """
        check_sparse_structure(X)
        check_sparse_structure(y, "y")
        if not hasattr(self, "classes_"):
            self._more_validate_params(for_partial_fit=True)

            if self.class_weight == "balanced":
                raise ValueError(
                    "class_weight '{0}' is not supported for "
                    "partial_fit. In order to use 'balanced' weights,"
                    " use compute_class_weight('{0}', "
                    "classes=classes, y=y). "
                    "In place of y you can use a large enough sample "
                    "of the full training set target to properly "
                    "estimate the class frequency distributions. "
                    "Pass the resulting weights as the class_weight "
                    "parameter.".format(self.class_weight)
                )

        return self._partial_fit(
            X,
            y,
            max_iter=1,
            classes=classes,
            sample_weight=sample_weight,
            coef_init=None,
            intercept_init=None,
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, coef_init=None, intercept_init=None, sample_weight=None):
        """Fit linear model with Stochastic Gradient Descent.

        Parameters
        ----------
        X : {array-like, sparse matrix}, shape (n_samples, n_features)
            Training data.

        y : ndarray of shape (n_samples,)
            Target values.

        coef_init : ndarray of shape (n_classes, n_features), default=None
            The initial coefficients to warm-start the optimization (copied).

        intercept_init : ndarray of shape (n_classes,), default=None
            The initial intercept to warm-start the optimization (copied).

        sample_weight : array-like, shape (n_samples,), default=None
            Weights applied to individual samples. If not provided, uniform weights are
            assumed. These weights will be multiplied with class_weight (passed through the
            constructor) if class_weight is specified.

        Returns
        -------
        self : object
            Returns an instance of self.
        """
        check_sparse_structure(X)
        check_sparse_structure(y, "y")
        self._more_validate_params()

        return self._fit(
            X,
            y,
            coef_init=coef_init,
            intercept_init=intercept_init,
            sample_weight=sample_weight,
        )

    def save(self, file):
        """Save this estimator, fitted or not, to a portable file (arrays and JSON, no
        pickle); read it back with ``fusedmlp.load``. See ``MLPClassifier.save``.

        Parameters
        ----------
        file : str, path-like or binary file object
            Where to write.
        """
        _persist.save(self, file)

    def decision_function(self, X):
        """Predict confidence scores for samples.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The data matrix for which we want to get the confidence scores.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Confidence scores per `(n_samples, n_classes)` combination. In the binary case,
            confidence score for `self.classes_[1]` where >0 means this class would be
            predicted.
        """
        check_sparse_structure(X)
        return super().decision_function(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
