"""Training callbacks as Keras and skorch users know them, on scikit-learn's callback protocol.

Set them with ``est.set_callbacks(...)`` (scikit-learn >= 1.9, ``sklearn.callback``); they
work on fusedmlp's ``MLPClassifier`` and ``MLPRegressor`` alone, inside a ``Pipeline`` and in
``GridSearchCV(n_jobs=2)``, where one callback instance serves many fits at once (clones,
worker processes): each fit has its own state, and files are named per fit.

Each callback reads the epoch's row of ``est.history_`` ('loss', 'learning_rate',
'epoch_time', and with early stopping or ``X_val`` 'val_loss' and 'val_score') at the end of
every epoch (every iteration with L-BFGS); returning True from the hook asks the estimator to
stop after that epoch.

- `EarlyStopping`: stop when a monitored value stops improving; optionally restore the best
  epoch's weights.
- `ModelCheckpoint`: save the model (``est.save``'s portable file) every epoch, or only when it
  improves.
- `CSVLogger`: one CSV row per epoch.
- `TerminateOnNaN`: stop when the loss is no longer finite.
- `TensorBoard`: scalars per epoch (and optionally weight histograms) for TensorBoard.
- `ProgressBar`: scikit-learn's ``ProgressBar``, whose bar of each fit also shows the last
  epoch's loss and validation score.
"""

import csv
import math
import os
import warnings

import numpy as np

__all__ = ["EarlyStopping", "ModelCheckpoint", "CSVLogger", "TerminateOnNaN", "TensorBoard",
           "ProgressBar"]

_EPOCH_TASKS = ("epoch", "iteration")


def _context_path(context):
    path = []
    while context is not None:
        path.append(context)
        context = context.parent
    return path[::-1]


class _EpochCallback:
    """What every callback here shares: per-fit state, keyed by the estimator being fitted
    (clones and worker processes each have their own), and the epoch's logs from history_."""

    def __init__(self):
        self._runs = {}

    # -- scikit-learn's protocol ------------------------------------------------------------

    def setup(self, estimator, context):
        self._runs[id(estimator)] = self._start(estimator, context)

    def teardown(self, estimator, context):
        state = self._runs.pop(id(estimator), None)
        if state is not None:
            self._close(estimator, state)

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        state = self._runs.get(id(estimator))
        if state is None:
            return False
        if context is getattr(estimator, "_callback_fit_ctx", None):
            self._fit_ends(estimator, state)
            return False
        if context.task_name not in _EPOCH_TASKS or not getattr(estimator, "history_", None):
            return False
        history = estimator.history_
        logs = {key: values[-1] for key, values in history.items()}
        epoch = len(next(iter(history.values())))  # counted from 1, across partial_fit calls
        return bool(self._epoch_ends(estimator, state, epoch, logs))

    # -- what a callback implements ---------------------------------------------------------

    def _start(self, estimator, context):
        return {}

    def _epoch_ends(self, estimator, state, epoch, logs):
        return False

    def _fit_ends(self, estimator, state):
        pass

    def _close(self, estimator, state):
        pass

    # -- pickling: a callback travels to worker processes before any fit there --------------

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_runs"] = {}
        return state

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


def _fit_label(context):
    """A name for this fit among the fits sharing a callback: '' for a fit of its own, else
    the task ids from the outermost meta-estimator down (e.g. '0-0-7' for GridSearchCV's
    eighth candidate-and-split fit)."""
    path = _context_path(context)
    if len(path) <= 1:
        return ""
    return "-".join(str(ctx.task_id) for ctx in path)


def _per_fit_path(path, label, **fields):
    """The path of this fit's file: `path` with its {fields} filled; when the fit shares the
    callback with others (label not empty) and the path has no {fit} field, the label goes
    before the extension."""
    path = os.fspath(path)
    if label and "{fit" not in path:
        root, ext = os.path.splitext(path)
        path = f"{root}-fit{label}{ext}"
    try:
        return path.format(fit=label, **fields)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(
            f"The path {path!r} has a field that cannot be filled ({e}); the fields are "
            f"{sorted(['fit'] + list(fields))}."
        ) from e


class _Monitor:
    """A monitored value's improvement rule, as Keras's: mode 'min', 'max' or 'auto' (max
    for scores, min otherwise), by more than min_delta. One per fit: it warns once when the
    fit does not record the value."""

    def __init__(self, monitor, mode, min_delta):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}.")
        if mode == "auto":
            mode = "max" if ("score" in monitor or "acc" in monitor) else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self.warned = False

    def initial(self):
        return np.inf if self.mode == "min" else -np.inf

    def improved(self, value, best):
        if value is None or not math.isfinite(value):
            return False
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def value(self, logs, owner):
        if self.monitor not in logs:
            if self.warned:
                return None
            self.warned = True
            warnings.warn(
                f"{owner} monitors {self.monitor!r}, which this fit does not record (it "
                f"records {sorted(logs)}). 'val_loss' and 'val_score' need a validation set: "
                "early_stopping=True, or X_val and y_val passed to fit.",
                UserWarning,
                stacklevel=4,
            )
            return None
        return logs[self.monitor]


class EarlyStopping(_EpochCallback):
    """Stop training when a monitored value has stopped improving (Keras's EarlyStopping).

    Parameters
    ----------
    monitor : str, default='val_loss'
        The ``history_`` key to watch: 'val_loss', 'val_score' (with a validation set:
        ``early_stopping=True`` or ``X_val``/``y_val``), or 'loss'.

    min_delta : float, default=0.0
        The smallest change that counts as an improvement.

    patience : int, default=0
        Epochs without improvement after which training stops.

    mode : {'auto', 'min', 'max'}, default='auto'
        Whether smaller or larger values are better; 'auto' takes 'max' for scores.

    restore_best_weights : bool, default=False
        At the end of the fit, set the model's weights to those of the best epoch.

    baseline : float, default=None
        A value the monitored quantity must beat; training stops after `patience` epochs
        without beating it.

    start_from_epoch : int, default=0
        Epochs to wait before watching (warm-up).

    Attributes
    ----------
    stopped_epoch_ : int
        The epoch (counted from 1) at which the last fit stopped, 0 if it did not stop.

    best_epoch_ : int
        The best epoch of the last fit (counted from 1), 0 before any.

    best_ : float
        The best value of the last fit.
    """

    def __init__(self, monitor="val_loss", *, min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False, baseline=None, start_from_epoch=0):
        super().__init__()
        self.monitor = monitor
        self.min_delta = min_delta
        self.patience = patience
        self.mode = mode
        self.restore_best_weights = restore_best_weights
        self.baseline = baseline
        self.start_from_epoch = start_from_epoch
        _Monitor(monitor, mode, min_delta)  # (checks mode now)
        self.stopped_epoch_ = 0
        self.best_epoch_ = 0
        self.best_ = None

    def _start(self, estimator, context):
        rule = _Monitor(self.monitor, self.mode, self.min_delta)
        best = rule.initial() if self.baseline is None else float(self.baseline)
        return {"rule": rule, "best": best, "best_epoch": 0, "wait": 0, "weights": None,
                "stopped": 0}

    def _epoch_ends(self, estimator, state, epoch, logs):
        if epoch <= self.start_from_epoch:
            return False
        rule = state["rule"]
        value = rule.value(logs, "EarlyStopping")
        if value is None:
            return False
        if rule.improved(value, state["best"]):
            state["best"], state["best_epoch"], state["wait"] = value, epoch, 0
            if self.restore_best_weights:
                state["weights"] = ([c.copy() for c in estimator.coefs_],
                                    [b.copy() for b in estimator.intercepts_])
            return False
        state["wait"] += 1
        if state["wait"] >= self.patience:
            state["stopped"] = epoch
            if getattr(estimator, "verbose", False):
                print(f"EarlyStopping: {self.monitor} did not improve for {state['wait']} "
                      f"epoch(s); stopping at epoch {epoch}.")
            return True
        return False

    def _fit_ends(self, estimator, state):
        if self.restore_best_weights and state["weights"] is not None:
            coefs, intercepts = state["weights"]
            for live, best in zip(estimator.coefs_, coefs):
                live[...] = best
            for live, best in zip(estimator.intercepts_, intercepts):
                live[...] = best
            if getattr(estimator, "verbose", False):
                print(f"EarlyStopping: restored the weights of epoch {state['best_epoch']}.")

    def _close(self, estimator, state):
        self.stopped_epoch_ = state["stopped"]
        self.best_epoch_ = state["best_epoch"]
        self.best_ = None if not math.isfinite(state["best"]) else float(state["best"])


class ModelCheckpoint(_EpochCallback):
    """Save the model every epoch, or whenever it improves (Keras's ModelCheckpoint).

    The file is fusedmlp's portable model file (``est.save``, read back with
    ``fusedmlp.load``), with the optimizer state: training can continue from it.

    Parameters
    ----------
    path : str or path-like
        Where to save. It may hold fields filled per epoch, as Keras's `filepath`:
        ``{epoch}``, any ``history_`` key such as ``{val_loss:.4f}``, and ``{fit}`` (this
        fit's name among fits sharing the callback). When fits share the callback (a grid
        search, cross-validation) and the path has no ``{fit}``, ``-fit<name>`` is inserted
        before the extension, so that fits never overwrite each other's files.

    monitor : str, default='val_loss'
        The ``history_`` key that decides what is best (with ``save_best_only``).

    save_best_only : bool, default=False
        Save only when the monitored value improves (the file then always holds the best
        model so far).

    mode : {'auto', 'min', 'max'}, default='auto'
        Whether smaller or larger values are better; 'auto' takes 'max' for scores.

    Attributes
    ----------
    saved_paths_ : list of str
        The files written, in order (by all fits in this process).
    """

    def __init__(self, path, *, monitor="val_loss", save_best_only=False, mode="auto"):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.mode = mode
        _Monitor(monitor, mode, 0.0)
        self.saved_paths_ = []

    def _start(self, estimator, context):
        rule = _Monitor(self.monitor, self.mode, 0.0)
        return {"rule": rule, "best": rule.initial(), "label": _fit_label(context)}

    def _epoch_ends(self, estimator, state, epoch, logs):
        if self.save_best_only:
            value = state["rule"].value(logs, "ModelCheckpoint")
            if value is None:
                return False
            if not state["rule"].improved(value, state["best"]):
                return False
            state["best"] = value
        path = _per_fit_path(self.path, state["label"], epoch=epoch, **logs)
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        estimator.save(path)
        self.saved_paths_.append(path)
        return False


class CSVLogger(_EpochCallback):
    """Write one CSV row per epoch: the epoch and every ``history_`` value (Keras's
    CSVLogger).

    Parameters
    ----------
    path : str or path-like
        The CSV file. When fits share the callback, each fit writes its own file (see
        `ModelCheckpoint`'s `path`).

    separator : str, default=','
        The field separator.

    append : bool, default=False
        Append to an existing file instead of starting it anew at each fit.
    """

    def __init__(self, path, *, separator=",", append=False):
        super().__init__()
        self.path = path
        self.separator = separator
        self.append = append

    def _start(self, estimator, context):
        path = _per_fit_path(self.path, _fit_label(context))
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        header_needed = not (self.append and os.path.exists(path) and os.path.getsize(path))
        if not self.append:
            open(path, "w").close()
        return {"path": path, "keys": None, "header_needed": header_needed}

    def _epoch_ends(self, estimator, state, epoch, logs):
        if state["keys"] is None:
            state["keys"] = list(logs)
        keys = state["keys"]
        with open(state["path"], "a", newline="") as f:
            writer = csv.writer(f, delimiter=self.separator)
            if state["header_needed"]:
                writer.writerow(["epoch"] + keys)
                state["header_needed"] = False
            writer.writerow([epoch] + [repr(float(logs.get(k, np.nan))) for k in keys])
        return False


class TerminateOnNaN(_EpochCallback):
    """Stop training as soon as the loss is NaN or infinite (Keras's TerminateOnNaN)."""

    def _epoch_ends(self, estimator, state, epoch, logs):
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            if getattr(estimator, "verbose", False):
                print(f"TerminateOnNaN: the loss is {loss} at epoch {epoch}; stopping.")
            return True
        return False


def _summary_writer_class():
    try:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    except ImportError:
        pass
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter
    except ImportError:
        return None


class TensorBoard(_EpochCallback):
    """Log every ``history_`` value per epoch for TensorBoard (Keras's TensorBoard).

    Needs ``tensorboardX`` (``pip install tensorboardX``) or PyTorch's
    ``torch.utils.tensorboard`` (which needs the ``tensorboard`` package).

    Parameters
    ----------
    log_dir : str or path-like, default='logs'
        The directory of the event files. When fits share the callback, each fit logs to
        a subdirectory of its own (``fit<name>``).

    histogram_freq : int, default=0
        Every this many epochs, also log histograms of each layer's weights and biases
        (0: never).
    """

    def __init__(self, log_dir="logs", *, histogram_freq=0):
        super().__init__()
        if _summary_writer_class() is None:
            raise ImportError(
                "TensorBoard needs tensorboardX (pip install tensorboardX) or PyTorch's "
                "torch.utils.tensorboard (pip install torch tensorboard)."
            )
        self.log_dir = log_dir
        self.histogram_freq = histogram_freq

    def _start(self, estimator, context):
        label = _fit_label(context)
        log_dir = os.fspath(self.log_dir)
        if label:
            log_dir = os.path.join(log_dir, f"fit{label}")
        return {"writer": _summary_writer_class()(log_dir)}

    def _epoch_ends(self, estimator, state, epoch, logs):
        writer = state["writer"]
        for key, value in logs.items():
            writer.add_scalar(f"epoch_{key}", float(value), epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for i, (c, b) in enumerate(zip(estimator.coefs_, estimator.intercepts_)):
                writer.add_histogram(f"layer_{i}/weights", np.asarray(c), epoch)
                writer.add_histogram(f"layer_{i}/biases", np.asarray(b), epoch)
        return False

    def _close(self, estimator, state):
        state["writer"].close()


def _epoch_summary(history):
    """'loss 0.1234, val_score 0.9512': the last epoch's values, for a progress bar."""
    parts = []
    for key in ("loss", "val_loss", "val_score"):
        values = history.get(key)
        if values:
            parts.append(f"{key} {values[-1]:.4g}")
    return ", ".join(parts)


try:  # scikit-learn >= 1.9
    from sklearn.callback import ProgressBar as _SklearnProgressBar
    from sklearn.callback import _progressbar as _sk_progressbar
    from sklearn.callback._transport import open_listener as _open_listener
    from sklearn.callback._transport import send as _send
except ImportError:  # pragma: no cover - older scikit-learn
    _SklearnProgressBar = None


if _SklearnProgressBar is not None:

    class _MetricsMonitor(_sk_progressbar.RichProgressMonitor):
        """scikit-learn's progress display, with each fit's bar described by its last
        epoch's metrics."""

        def _on_task_end(self, task_info):
            metrics = task_info.pop("metrics", None)
            path = list(task_info["path"])
            super()._on_task_end(task_info)
            if not metrics or len(path) < 2:
                return
            fit_task = self.root_rich_task.get_descendants(path)[-2]
            if fit_task is None or not hasattr(fit_task, "id"):
                return
            base = self._base.setdefault(
                fit_task.id, self.progress_ctx.tasks[fit_task.id].description
            )
            self.progress_ctx.update(fit_task.id, description=f"{base} ({metrics})")

        def run(self):
            self._base = {}
            super().run()

    class ProgressBar(_SklearnProgressBar):
        """scikit-learn's ``ProgressBar`` (``sklearn.callback``): one bar per fit, nested under
        meta-estimators, with each fusedmlp fit's bar also showing its last epoch's loss and
        validation score. Needs ``rich``.

        Parameters
        ----------
        max_propagation_depth : int or None, default=1
            As scikit-learn's: how many levels of nested estimators get bars.
        """

        def setup(self, estimator, context):
            # scikit-learn's setup, with the monitor that shows metrics
            queue = _sk_progressbar.Queue()
            self._listener_handles[context.root_uuid] = _open_listener(queue.put)
            monitor = _MetricsMonitor(queue=queue)
            monitor.start()
            _sk_progressbar._run_queues[context.root_uuid] = queue
            _sk_progressbar._run_monitors[context.root_uuid] = monitor

        def on_fit_task_end(self, estimator, context):
            history = getattr(estimator, "history_", None)
            if context.task_name not in _EPOCH_TASKS or not history:
                return super().on_fit_task_end(estimator, context)
            _send(
                self._listener_handles[context.root_uuid],
                {"event": "end", "path": [ctx.task_id for ctx in _context_path(context)],
                 "metrics": _epoch_summary(history)},
            )
            return False

else:  # pragma: no cover - older scikit-learn

    class ProgressBar:
        """scikit-learn's ProgressBar needs scikit-learn >= 1.9 (sklearn.callback)."""

        def __init__(self, *args, **kwargs):
            raise ImportError("ProgressBar needs scikit-learn >= 1.9 (sklearn.callback).")
