"""scikit-learn's callback protocol on fusedmlp's estimators (the real sklearn.callback
ProgressBar and ScoringMonitor, alone, in a Pipeline and in GridSearchCV(n_jobs=2)), and
fusedmlp.callbacks: EarlyStopping, ModelCheckpoint, CSVLogger, TerminateOnNaN, TensorBoard."""

import csv
import os
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fusedmlp
from fusedmlp import MLPClassifier, MLPRegressor, Perceptron, _driver
from fusedmlp.callbacks import (
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    TensorBoard,
    TerminateOnNaN,
)
from tests.recorder import Recorder

sk_callback = pytest.importorskip("sklearn.callback")
pytest.importorskip("rich")  # ProgressBar's display

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = StandardScaler().fit_transform(X_IRIS)


def weights_of(est):
    if hasattr(est, "coefs_"):
        return [c.copy() for c in est.coefs_] + [b.copy() for b in est.intercepts_]
    return [est.coef_.copy(), est.intercept_.copy()]


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


ESTIMATORS = [
    pytest.param(lambda: MLPClassifier((16,), max_iter=8, random_state=0), id="adam"),
    pytest.param(lambda: MLPClassifier((16,), solver="sgd", max_iter=8, random_state=0,
                                       learning_rate="cosine", learning_rate_warmup=3),
                 id="sgd-cosine"),
    pytest.param(lambda: MLPClassifier((16,), max_iter=8, random_state=0, early_stopping=True,
                                       n_iter_no_change=100), id="adam-early-stopping"),
    pytest.param(lambda: MLPClassifier((16,), solver="lbfgs", max_iter=8, random_state=0),
                 id="lbfgs"),
    pytest.param(lambda: MLPRegressor(hidden_layer_sizes=(16,), max_iter=8, random_state=0, dtype="float64"),
                 id="regressor"),
    pytest.param(lambda: Perceptron(max_iter=8, tol=None, random_state=0, penalty="l2",
                                    alpha=1e-3, n_jobs=2), id="perceptron"),
]


def data_for(est):
    if isinstance(est, MLPRegressor):
        X, y = make_regression(n_samples=120, n_features=6, noise=1.0, random_state=0)
        return X, y / 100
    return X_IRIS, Y_IRIS


@pytest.mark.parametrize("make", ESTIMATORS)
def test_callbacks_do_not_change_the_model(make):
    X, y = data_for(make())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = make().fit(X, y)
        monitor = sk_callback.ScoringMonitor(scoring="neg_mean_squared_error" if isinstance(make(), MLPRegressor) else "accuracy")
        recorder = Recorder()
        watched = make().set_callbacks(monitor, recorder, sk_callback.ProgressBar()).fit(X, y)
    assert_same_weights(weights_of(plain), weights_of(watched))
    # one log row per epoch (per L-BFGS iteration), each with a score, and the fit's own row
    n_epochs = watched.n_iter_
    rows = monitor.get_logs().data
    epoch_rows = [r for r in rows if len(r["task_id_path"]) == 2]
    assert len(epoch_rows) == n_epochs == len(recorder.weights)
    scoring = "neg_mean_squared_error" if isinstance(watched, MLPRegressor) else "accuracy"
    assert all(np.isfinite(r[scoring]) for r in epoch_rows)
    assert recorder.tasks[-1] == "fit"
    # the snapshot of the last epoch is the model (unless early stopping restored another)
    if not getattr(watched, "early_stopping", False):
        assert_same_weights(recorder.weights[-1], weights_of(watched))


@pytest.mark.parametrize("make", ESTIMATORS)
def test_a_stop_request_ends_the_fit_at_that_epoch(make):
    X, y = data_for(make())
    recorder = Recorder(stop_at=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a requested stop is not a failure
        est = make().set_callbacks(recorder).fit(X, y)
    assert est.n_iter_ == 3
    if hasattr(est, "history_"):
        assert len(est.history_["loss"]) == 3
    if not getattr(est, "early_stopping", False):
        assert_same_weights(recorder.weights[-1], weights_of(est))


def test_partial_fit_is_one_subtask():
    monitor = sk_callback.ScoringMonitor(scoring="accuracy")
    est = MLPClassifier((8,), random_state=0).set_callbacks(monitor)
    for _ in range(3):
        est.partial_fit(X_IRIS, Y_IRIS, classes=np.unique(Y_IRIS))
    logs = monitor.get_logs(select="all")
    assert len(logs) == 3
    assert all(len([r for r in log.data if len(r["task_id_path"]) == 2]) == 1 for log in logs)
    assert len(est.history_["loss"]) == 3


def test_progress_bar_alone_in_a_pipeline_and_in_a_grid_search(capsys):
    est = MLPClassifier((8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_callbacks(sk_callback.ProgressBar()).fit(X_IRIS, Y_IRIS)
        pipe = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=5, random_state=0))
        with warnings.catch_warnings():
            # a meta-estimator warns when a step does not support callbacks: not ours
            warnings.filterwarnings("error", message=".*does not support callbacks.*")
            pipe.set_callbacks(sk_callback.ProgressBar()).fit(X_IRIS, Y_IRIS)
        search = GridSearchCV(MLPClassifier((8,), max_iter=5, random_state=0),
                              {"alpha": [1e-4, 1e-2]}, cv=2, n_jobs=2)
        search.set_callbacks(sk_callback.ProgressBar()).fit(X_IRIS, Y_IRIS)
    out = capsys.readouterr().out
    assert "MLPClassifier - fit" in out
    assert "Pipeline - fit-final-estimator | MLPClassifier - fit" in out
    assert "candidate-split-evaluation | MLPClassifier - fit" in out
    assert search.best_estimator_.n_iter_ == 5


def test_scoring_monitor_in_a_grid_search_logs_every_epoch_of_every_fit():
    # set on the estimator: every clone shares it, worker processes report to this process
    monitor = sk_callback.ScoringMonitor(scoring="accuracy")
    search = GridSearchCV(MLPClassifier((8,), max_iter=4, random_state=0).set_callbacks(monitor),
                          {"alpha": [1e-4, 1e-2]}, cv=2, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X_IRIS, Y_IRIS)
    rows = [r for log in monitor.get_logs(select="all") for r in log.data]
    epoch_rows = [r for r in rows if r["task_name"] == "epoch"]
    assert len(epoch_rows) == (2 * 2 + 1) * 4  # 2 candidates x 2 splits + the refit, 4 epochs
    assert all(0 <= r["accuracy"] <= 1 for r in epoch_rows)


def test_set_callbacks_without_the_protocol_is_a_clear_error():
    with pytest.raises(RuntimeError, match="scikit-learn 1.9"):
        _driver.CallbackSupportUnavailable().set_callbacks(Recorder())


def test_fit_without_the_protocol_still_trains(monkeypatch):
    reference = MLPClassifier((8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X_IRIS, Y_IRIS)
        monkeypatch.setattr(_driver, "CallbackSupportMixin", None)
        est = MLPClassifier((8,), max_iter=5, random_state=0).fit(X_IRIS, Y_IRIS)
    assert_same_weights(weights_of(reference), weights_of(est))


def validation_run(*callbacks, max_iter=40, **params):
    """A classifier trained with a validation split that scikit-learn's own rule never stops,
    recording every epoch's weights."""
    recorder = Recorder()
    est = MLPClassifier((32,), max_iter=max_iter, random_state=1, early_stopping=True,
                        n_iter_no_change=1000, learning_rate_init=0.05, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_callbacks(recorder, *callbacks).fit(X_IRIS, Y_IRIS)
    return est, recorder


def test_early_stopping_restores_the_best_epoch():
    stopper = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    est, recorder = validation_run(stopper)
    val_loss = np.array(est.history_["val_loss"])
    best = int(np.argmin(val_loss))
    assert stopper.best_epoch_ == best + 1
    assert stopper.best_ == pytest.approx(val_loss[best])
    if stopper.stopped_epoch_:  # stopped: patience epochs after the best
        assert est.n_iter_ == stopper.stopped_epoch_ == best + 1 + 3
    assert_same_weights(recorder.weights[best], weights_of(est))


def test_early_stopping_patience_and_mode():
    # on a score: 'auto' is 'max'; patience 0 stops at the first epoch without improvement
    stopper = EarlyStopping(monitor="val_score", patience=0, min_delta=1.0)
    est, _ = validation_run(stopper)
    assert est.n_iter_ == 2 and stopper.stopped_epoch_ == 2
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")


def test_early_stopping_without_its_value_warns_and_trains_on():
    stopper = EarlyStopping(monitor="val_loss", patience=0)
    est = MLPClassifier((8,), max_iter=6, random_state=0).set_callbacks(stopper)
    with pytest.warns(UserWarning, match="val_loss"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X_IRIS, Y_IRIS)
    assert est.n_iter_ == 6


def test_model_checkpoint_keeps_the_best_model_on_disk(tmp_path):
    path = tmp_path / "best.fmlp"
    est, recorder = validation_run(ModelCheckpoint(path, save_best_only=True), max_iter=15)
    best = int(np.argmin(est.history_["val_loss"]))
    saved = fusedmlp.load(path)
    assert_same_weights(recorder.weights[best], weights_of(saved))
    assert saved.n_iter_ == best + 1
    # the checkpoint continues training exactly as the model did from that epoch on
    assert len(saved.history_["loss"]) == best + 1


def test_model_checkpoint_every_epoch_with_fields(tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "m-{epoch:02d}-{loss:.3f}.fmlp", monitor="loss")
    est = MLPClassifier((8,), max_iter=3, random_state=0).set_callbacks(checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X_IRIS, Y_IRIS)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n[:5] for n in names] == ["m-01-", "m-02-", "m-03-"]
    last = fusedmlp.load(tmp_path / names[-1])
    np.testing.assert_array_equal(last.predict_proba(X_IRIS), est.predict_proba(X_IRIS))


def test_csv_logger_writes_the_history(tmp_path):
    path = tmp_path / "log.csv"
    est, _ = validation_run(CSVLogger(path), max_iter=5)
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch"] + list(est.history_)
    assert len(rows) == 1 + est.n_iter_
    for key, column in zip(est.history_, zip(*[r[1:] for r in rows[1:]])):
        np.testing.assert_array_equal(np.array(column, dtype=float), est.history_[key])
    # append=True continues the file across fits
    est.set_callbacks(CSVLogger(path, append=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X_IRIS, Y_IRIS)
    with open(path) as f:
        assert len(list(csv.reader(f))) == 1 + 2 * est.n_iter_


def test_terminate_on_nan():
    X, y = make_regression(n_samples=100, n_features=5, random_state=0)
    est = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=10.0, max_iter=50,
                       early_stopping=True, n_iter_no_change=1000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.set_callbacks(TerminateOnNaN()).fit(X, y * 1e3)
    losses = np.array(est.history_["loss"])
    assert not np.isfinite(losses[-1]) and np.isfinite(losses[:-1]).all()
    assert est.n_iter_ == len(losses) < 50


def test_tensorboard_writes_event_files(tmp_path):
    pytest.importorskip("tensorboardX")
    est = MLPClassifier((8,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_callbacks(TensorBoard(tmp_path / "logs", histogram_freq=1)).fit(X_IRIS, Y_IRIS)
    events = [f for _, _, files in os.walk(tmp_path / "logs") for f in files]
    assert events and all(f.startswith("events.out.tfevents") for f in events)
    assert sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp_path / "logs")
               for f in fs) > 1000


def test_tensorboard_without_a_writer_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(fusedmlp.callbacks, "_summary_writer_class", lambda: None)
    with pytest.raises(ImportError, match="tensorboardX"):
        TensorBoard()


def test_fusedmlp_callbacks_in_a_grid_search_write_one_file_per_fit(tmp_path):
    est = MLPClassifier((8,), max_iter=3, random_state=0, early_stopping=True,
                        n_iter_no_change=100)
    est.set_callbacks(
        CSVLogger(tmp_path / "log.csv"),
        ModelCheckpoint(tmp_path / "model.fmlp", save_best_only=True),
        EarlyStopping(patience=1),
    )
    search = GridSearchCV(est, {"alpha": [1e-4, 1e-2]}, cv=2, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X_IRIS, Y_IRIS)
    logs = sorted(p.name for p in tmp_path.glob("log-fit*.csv"))
    models = sorted(p.name for p in tmp_path.glob("model-fit*.fmlp"))
    assert len(logs) == len(models) == 2 * 2 + 1  # every split of every candidate, the refit
    for name in models:
        fusedmlp.load(tmp_path / name).predict(X_IRIS)


def test_callbacks_in_a_pipeline_step():
    stopper = EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    pipe = make_pipeline(StandardScaler(),
                         MLPClassifier((8,), max_iter=20, random_state=0).set_callbacks(stopper))
    pipe.fit(X_IRIS, Y_IRIS)
    assert pipe[-1].n_iter_ == 2 and stopper.stopped_epoch_ == 2


def test_callbacks_pickle_without_their_fit_state(tmp_path):
    import pickle

    checkpoint = ModelCheckpoint(tmp_path / "m.fmlp")
    checkpoint._runs[1] = {"not": "picklable", "f": lambda: None}
    clone = pickle.loads(pickle.dumps(checkpoint))
    assert clone._runs == {} and clone.path == checkpoint.path


def test_fusedmlp_progress_bar_shows_loss_and_validation_score(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    est = MLPClassifier((8,), max_iter=3, random_state=0, early_stopping=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_callbacks(fusedmlp.callbacks.ProgressBar()).fit(X_IRIS, Y_IRIS)
    out = capsys.readouterr().out
    last = est.history_
    assert f"loss {last['loss'][-1]:.4g}" in out
    assert f"val_score {last['val_score'][-1]:.4g}" in out
    # in a grid search, on the search: every fit's bar, nested
    search = GridSearchCV(MLPClassifier((8,), max_iter=3, random_state=0),
                          {"alpha": [1e-4, 1e-2]}, cv=2, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.set_callbacks(fusedmlp.callbacks.ProgressBar()).fit(X_IRIS, Y_IRIS)
    out = capsys.readouterr().out
    assert out.count("| MLPClassifier - fit #") == 5 and out.count("(loss ") == 5
