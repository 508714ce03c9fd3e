"""Epochs run in segments, each on the full team or on one thread, whichever the timing of
earlier segments says is faster (csrc/cpu/threads.h, TeamChooser). Which team ran a segment must
never change the model; these tests make sure both ran, idle and with every core busy, and compare
with one thread. (How fast each choice is belongs to bench/, not here.)"""
import os
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits

import fusedmlp as fm
from fusedmlp import _cpu, _engine
from tests.conftest import CPU_ISAS

X, y = load_digits(return_X_y=True)
X = X / 16.0


@contextmanager
def busy_cores():
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def fit(n_threads, hidden, **kw):
    params = dict(hidden_layer_sizes=hidden, random_state=0, max_iter=12, batch_size=200, tol=0,
                  n_iter_no_change=10**9, n_threads=n_threads, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fm.MLPClassifier(**params).fit(X, y, sample_weight=np.linspace(0.5, 1.5, len(y)))


@pytest.mark.skipif(_cpu.max_threads() < 2, reason="needs two threads")
@pytest.mark.parametrize("load", ["idle", "busy"])
@pytest.mark.parametrize("hidden, extra", [((64, 32), {}),  # row blocks
                                           ((300, 200), {"dropout": 0.2})])  # layer by layer
def test_segments_on_either_team_give_the_one_thread_model(load, hidden, extra):
    one = fit(1, hidden, **extra)
    _cpu._forget_team_choice()  # a busy run before may have told new trainers to start alone
    # (FUSEDMLP_CHECK_LOAD=0, set by conftest.py: under load a new trainer would otherwise
    # start alone and might not time the team within this short fit; see the next test)
    solo0, full0 = _cpu.team_segments()
    try:
        if load == "busy":
            with busy_cores():
                two = fit(2, hidden, **extra)
        else:
            two = fit(2, hidden, **extra)
    finally:
        _cpu._forget_team_choice()  # later tests start on their full team
    solo1, full1 = _cpu.team_segments()
    # the chooser always tries one thread after timing the team: both ran
    assert solo1 > solo0 and full1 > full0
    for a, b in zip(one.coefs_ + one.intercepts_, two.coefs_ + two.intercepts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(one.loss_curve_, two.loss_curve_, rtol=1e-6)


@pytest.mark.skipif(_cpu.max_threads() < 2, reason="needs two threads")
@pytest.mark.parametrize("load", ["idle", "busy"])
@pytest.mark.parametrize("rows", [1, 3, 40])
def test_prediction_calls_on_either_team_give_the_one_thread_outputs(load, rows):
    # The calls of a kept engine learn their team as an epoch's segments do (one call, one
    # segment; each size class its own choice); 64-300-200-10 has weights enough for a team
    # even for one row. Both teams must run, and every output be the one-thread output.
    model = fit(2, (300, 200))
    alone = clone(model).set_params(n_threads=1)
    alone.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    Xr = X[:rows]
    expected = alone.predict_proba(Xr)
    _cpu._forget_team_choice()
    solo0, full0 = _cpu.team_predictions()
    try:
        with busy_cores() if load == "busy" else nullcontext():
            outputs = [model.predict_proba(Xr) for _ in range(20)]
    finally:
        _cpu._forget_team_choice()
    solo1, full1 = _cpu.team_predictions()
    # the team first (a warm-up call, a timed one), then one thread (the same): both ran
    assert solo1 > solo0 and full1 > full0
    for out in outputs:
        np.testing.assert_array_equal(out, expected)


# Seconds per row of a segment of 1,000 rows: the team, one thread, a slowed team (retries fall
# due 50 x a try later: 0.1 s or more, far from the few microseconds between the steps below).
GOOD, SOLO, SLOW = 1e-6, 2e-6, 1e-5


def segment(chooser, team, per_row, rows=1000):
    """One segment: the chooser must pick `team`; it then runs at per_row seconds per row."""
    assert chooser.pick(2) == team
    chooser.record(team, per_row * rows, rows)


def wait_for_pick(chooser, team, seconds=2.0):
    """Seconds until the chooser picks `team` (a retry falls due), no segment run meanwhile."""
    t0 = time.monotonic()
    while chooser.pick(2) != team:
        assert time.monotonic() - t0 < seconds, f"the chooser never picked {team} thread(s)"
        time.sleep(2e-4)
    return time.monotonic() - t0


def team_wins_then_one_thread_is_tried(chooser):
    segment(chooser, 2, GOOD)  # warm-up (untimed)
    segment(chooser, 2, GOOD)
    segment(chooser, 1, SOLO)  # warm-up
    segment(chooser, 1, SOLO)  # slower: tried again after 50 x (this try) = 0.2 s
    segment(chooser, 2, GOOD)  # warm-up
    segment(chooser, 2, GOOD)
    segment(chooser, 2, GOOD)  # the team's last three: GOOD, GOOD, GOOD


@pytest.mark.parametrize("kind", ["epoch", "prediction"])
def test_a_team_back_from_a_transient_loss_wins_at_its_first_good_try(kind):
    # The team loses to one thread while something slows it, then runs a try at its usual
    # speed: an epoch's chooser takes the team back at once (the slow segments no longer tell);
    # a prediction's keeps the median of its calls, which one fast call (a member that
    # happened to be running on a loaded machine) does not move.
    _cpu._forget_team_choice()
    try:
        chooser = _cpu._TeamChooser(kind)
        team_wins_then_one_thread_is_tried(chooser)
        segment(chooser, 2, SLOW)  # median GOOD: still the team
        segment(chooser, 2, SLOW)  # median SLOW: one thread wins
        segment(chooser, 1, SOLO)  # warm-up
        segment(chooser, 1, SOLO)
        wait_for_pick(chooser, 2)  # the team's retry falls due
        segment(chooser, 2, GOOD)  # its warm-up
        segment(chooser, 2, GOOD)  # the try, timed, at the usual speed
        on_team = 0  # of the next four segments (an epoch's may first try one thread again)
        for _ in range(4):
            team = chooser.pick(2)
            on_team += team == 2
            chooser.record(team, (GOOD if team == 2 else SOLO) * 1000, 1000)
        assert on_team >= 2 if kind == "epoch" else on_team == 0
    finally:
        _cpu._forget_team_choice()


@pytest.mark.parametrize("load", ["free", "oversubscribed", "unknown"])
def test_a_prediction_does_not_retry_its_team_on_an_oversubscribed_machine(load):
    # A prediction's team lost to one thread; when its retry falls due, a machine whose other
    # processes leave too few CPUs for the team keeps the calls on one thread (a try would wait
    # for time slices, and one lucky call would bring the team back for calls that pay them);
    # with CPUs free, or a load that cannot be read, the team is tried as before.
    _cpu._forget_team_choice()
    try:
        chooser = _cpu._TeamChooser("prediction")
        team_wins_then_one_thread_is_tried(chooser)
        segment(chooser, 2, SLOW)
        segment(chooser, 2, SLOW)  # median SLOW: one thread wins, the team's retry due 0.5 s later
        segment(chooser, 1, SOLO)  # warm-up
        segment(chooser, 1, SOLO)
        chooser.set_conditions(load=load)
        if load == "oversubscribed":
            t0 = time.monotonic()
            while time.monotonic() - t0 < 1.5:  # three times the retry's delay
                segment(chooser, 1, SOLO)
                time.sleep(2e-3)
            chooser.set_conditions(load="free")  # the load has gone: the team's next retry runs
        assert wait_for_pick(chooser, 2) < 2.0
    finally:
        _cpu._forget_team_choice()


def test_a_prediction_reads_the_load_again_before_its_team_first_runs():
    # A prediction's chooser that started alone on an oversubscribed machine reads the load
    # again when its delay (one second) is over: still loaded, its calls stay on one thread
    # instead of trying the team (a try on loaded cores cost tens of milliseconds); once the
    # load has gone, the team's first try runs within the next delay.
    _cpu._forget_team_choice()
    try:
        chooser = _cpu._TeamChooser("prediction")
        chooser.set_conditions(load="oversubscribed")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:  # two and a half delays
            segment(chooser, 1, SOLO)
            time.sleep(2e-3)
        chooser.set_conditions(load="free")
        assert wait_for_pick(chooser, 2) < 1.5
    finally:
        _cpu._forget_team_choice()


def test_each_choice_has_its_own_backoff():
    # One thread lost its tries again and again (its backoff doubled each time, to 400); then
    # the team loses once: its retry comes after 50 times its own try (0.55 s here), not after
    # the backoff one thread's losses grew (4.4 s).
    _cpu._forget_team_choice()
    try:
        chooser = _cpu._TeamChooser("epoch")
        team_wins_then_one_thread_is_tried(chooser)
        for _ in range(3):  # one thread tried again three times, losing each time
            wait_for_pick(chooser, 1)
            segment(chooser, 1, SOLO)  # warm-up
            segment(chooser, 1, SOLO)
            segment(chooser, 2, GOOD)  # warm-up
            segment(chooser, 2, GOOD)
        segment(chooser, 2, SLOW)
        segment(chooser, 2, SLOW)  # one thread wins
        segment(chooser, 1, SOLO)  # warm-up
        segment(chooser, 1, SOLO)
        assert wait_for_pick(chooser, 2, seconds=8.0) < 2.0
    finally:
        _cpu._forget_team_choice()


# A team slowed a hundredfold: the retry after its loss falls due 50 x its try (5 s) later, or
# after 0.1 s when the loss counts as a transient of this process.
SLOWER = 1e-4


@pytest.mark.parametrize("load, other_threads, transient", [
    ("free", 0, True),             # CPUs enough, no other fit running: a transient, retried soon
    ("free", 10**6, False),         # other fits of this process need more CPUs than there are
    ("oversubscribed", 0, False),  # other processes' load
    ("unknown", 0, False),         # a load that cannot be read (pinned, no /proc, check off)
])
def test_a_team_lost_to_a_transient_of_this_process_is_tried_again_soon(load, other_threads, transient):
    _cpu._forget_team_choice()
    try:
        chooser = _cpu._TeamChooser("epoch")
        team_wins_then_one_thread_is_tried(chooser)
        chooser.set_conditions(load=load, other_threads=other_threads)
        segment(chooser, 2, SLOWER)
        segment(chooser, 2, SLOWER)  # median SLOWER: one thread wins
        if transient:
            assert wait_for_pick(chooser, 2) < 1.0
        else:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 0.5:
                assert chooser.pick(2) == 1, "the team was tried again within 0.5 s"
                time.sleep(2e-3)
        # the process's verdict: a new trainer starts on the team unless this loss set it
        fresh = _cpu._TeamChooser("epoch")
        fresh.set_conditions(load="unknown")
        assert fresh.pick(2) == (2 if transient else 1)
    finally:
        _cpu._forget_team_choice()


def test_test_conditions_are_checked():
    chooser = _cpu._TeamChooser("epoch")
    with pytest.raises(ValueError, match="load"):
        chooser.set_conditions(load="busy")
    with pytest.raises(ValueError, match="other_threads"):
        chooser.set_conditions(other_threads=-1)
    with pytest.raises(ValueError, match="kind"):
        _cpu._TeamChooser("batch")


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_running_fits_are_counted_while_they_run(solver):
    # Fits in two Python threads at once (the engine releases the GIL): each training pass
    # counts its team while it runs, so that neither takes the other's threads for a transient
    # of its own.
    import threading

    assert _cpu._training_threads_running() == 0
    seen, errors = [], []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(_cpu._training_threads_running())
            time.sleep(1e-4)

    def fit_alone():  # (catch_warnings below changes the process's filters, these threads' too)
        try:
            fm.MLPClassifier((256, 128), solver=solver, random_state=0, max_iter=12, tol=0,
                             n_threads=1).fit(X, y)
        except Exception as exc:  # (a thread's exception would otherwise pass unnoticed)
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    fits = [threading.Thread(target=fit_alone) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        watcher.start()
        for t in fits:
            t.start()
        for t in fits:
            t.join()
    stop.set()
    watcher.join()
    assert not errors, errors
    assert max(seen) == 2
    assert _cpu._training_threads_running() == 0


def wait_for_load(busy, seconds=10.0):
    """Until /proc/loadavg's runnable count says the machine is (busy=True) or is not
    oversubscribed; False if it never did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runnable, own, cpus = _cpu.machine_load()
        if (runnable - max(own, 1) + 2 > cpus) == busy:  # (as a team of two would see it)
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def load_check(monkeypatch):
    """The machine-load check on (conftest.py turns it off), where it can see the load."""
    if _cpu.max_threads() < 2:
        pytest.skip("needs two threads")
    if _cpu.machine_load()[2] == 0:
        pytest.skip("no /proc/loadavg")
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) < os.cpu_count():
        pytest.skip("pinned to some CPUs: the machine's load says nothing about them")
    monkeypatch.delenv("FUSEDMLP_CHECK_LOAD")


def test_a_new_trainer_on_an_oversubscribed_machine_starts_alone(load_check):
    # More runnable tasks than CPUs: the first segments run on one thread, without first paying
    # the team's warm-up and try on the loaded cores; the model is the one-thread model.
    one = fit(1, (64, 32))
    _cpu._forget_team_choice()
    try:
        with busy_cores():
            assert wait_for_load(busy=True), "the busy processes never showed in /proc/loadavg"
            solo0, full0 = _cpu.team_segments()
            two = fit(2, (64, 32))
            solo1, full1 = _cpu.team_segments()
    finally:
        _cpu._forget_team_choice()
    assert solo1 > solo0
    assert full1 == full0, "a team segment ran although the machine was oversubscribed"
    for a, b in zip(one.coefs_ + one.intercepts_, two.coefs_ + two.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_a_long_prediction_on_an_oversubscribed_machine_runs_alone(load_check):
    # Calls longer than a kept engine's (more than 256 rows) each build an engine, so nothing
    # learnt carries over: they read the machine's load instead.
    # Both kinds: layer by layer (1,000 rows) and in slices (dense calls of 2 to 4 slices per
    # thread), the slices then all on the one thread.
    model = fit(2, (300, 200))
    for rows in (X[:1000], np.tile(X, (2, 1))[: slice_rows() // 2 + 100]):
        idle = model.predict_proba(rows)
        with busy_cores():
            assert wait_for_load(busy=True), "the busy processes never showed in /proc/loadavg"
            solo0, full0 = _cpu.team_predictions()
            busy = model.predict_proba(rows)
            solo1, full1 = _cpu.team_predictions()
        assert (solo1, full1) == (solo0 + 1, full0), f"{len(rows)} rows ran on the team of a loaded machine"
        np.testing.assert_array_equal(busy, idle)


def slice_rows():
    """The fewest rows a prediction of a two-thread model always runs on the team (4 slices per
    thread, each 4 times the rows whose products read the weights in place: 3,072 on AVX2 and
    AVX-512; trainer.cpp, Trainer::predict). Calls of at least half as many rows run in slices
    too, from dense input, on the team or alone as the machine's load says."""
    return 4 * 2 * 4 * {"generic": 32, "avx2": 96, "avx512": 96}[_cpu.active_isa()]


def one_thread_copy(model):
    alone = clone(model).set_params(n_threads=1)
    alone.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    return alone


@pytest.mark.skipif(_cpu.max_threads() < 2, reason="needs two threads")
def test_predictions_in_slices_give_the_one_thread_outputs():
    # Long calls run each slice of rows through the whole network on one thread: every row's
    # outputs must be the one-thread outputs, layer by layer below the shortest call in slices
    # and at it, below and at the threshold of calls always on the team, with a short last
    # slice, from float32 (read in place), float64, Fortran-ordered and strided (gathered by each
    # thread into its own rows) and sparse input (in 4,096-row chunks); a NaN in a late slice is
    # still found (scikit-learn's error, as on one thread), in every layout.
    import scipy.sparse as sp
    model = fit(2, (300, 200))
    alone = one_thread_copy(model)
    big = np.tile(X, (4, 1))
    first = slice_rows()
    for rows in (257, first // 2 - 1, first // 2, first - 1, first, 4097, 6001, len(big)):
        for Xr in (big[:rows], big[:rows].astype(np.float32), np.asfortranarray(big[:rows]),
                   np.repeat(big[:rows].astype(np.float32), 2, axis=1)[:, ::2], sp.csr_matrix(big[:rows])):
            np.testing.assert_array_equal(model.predict_proba(Xr), alone.predict_proba(Xr),
                                          err_msg=f"rows={rows} {type(Xr).__name__} {Xr.dtype}")
    bad = big[:6001].copy()
    bad[5000, 3] = np.nan
    for Xb in (bad, bad.astype(np.float32), np.asfortranarray(bad)):
        for est in (model, alone):
            with pytest.raises(ValueError, match="NaN"):
                est.predict(Xb)


@pytest.mark.skipif(_cpu.max_threads() < 2, reason="needs two threads")
@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_slices_read_the_weights_packed_once_per_call(isa, dtype, kind):
    # The slices' products read every layer's weights packed once per call by the team (every
    # depth block of a 701-wide input, the last one shorter, edge panels of 37 and 10 columns, a
    # one-column output): the one-thread outputs bit for bit on every instruction set and
    # dtype, and numpy's float64 forward pass to rounding.
    rng = np.random.default_rng(3)
    Xw = rng.standard_normal((400, 701))
    yw = rng.integers(0, 10, 400) if kind == "classifier" else rng.standard_normal(400)
    Est = fm.MLPClassifier if kind == "classifier" else fm.MLPRegressor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Est(hidden_layer_sizes=(300, 37), max_iter=3, random_state=0, n_threads=2,
                    dtype=dtype).fit(Xw, yw)
    rows = rng.standard_normal((slice_rows() + 77, 701)).astype(dtype)
    two, one, _ = outputs_on_two_threads_and_one(model, rows, isa)
    np.testing.assert_array_equal(two, one)
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(two, numpy_outputs(model, rows), rtol=tol, atol=tol)


def outputs_on_two_threads_and_one(model, rows, isa, skipped_by_one=False):
    """A two-thread model's outputs for rows on an instruction set (predict_proba for a
    classifier), its one-thread copy's, and the row panels' steps the first left out (with
    skipped_by_one, those of each: a pair)."""
    alone = one_thread_copy(model)
    predict = "predict_proba" if isinstance(model, fm.MLPClassifier) else "predict"
    before = _cpu.active_isa()
    _cpu.set_isa(isa)
    try:
        counts = [_cpu._skipped_zero_steps()[1]]
        two = getattr(model, predict)(rows)
        counts.append(_cpu._skipped_zero_steps()[1])
        one = getattr(alone, predict)(rows)
        counts.append(_cpu._skipped_zero_steps()[1])
    finally:
        _cpu.set_isa(before)
    skipped = np.diff(counts)
    return two, one, tuple(skipped) if skipped_by_one else skipped[0]


def numpy_outputs(model, rows):
    """The model's forward pass in float64 by numpy (relu or tanh hidden units)."""
    a = rows.astype(np.float64)
    for i, (W, b) in enumerate(zip(model.coefs_, model.intercepts_)):
        a = a @ W.astype(np.float64) + b
        if i + 1 < len(model.coefs_):
            a = np.maximum(a, 0) if model.activation == "relu" else np.tanh(a)
    if isinstance(model, fm.MLPClassifier):
        a = np.exp(a - a.max(axis=1, keepdims=True))
        return a / a.sum(axis=1, keepdims=True)
    return a.ravel() if a.shape[1] == 1 else a


@pytest.mark.skipif(_cpu.max_threads() < 2, reason="needs two threads")
@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind, activation", [("classifier", "relu"), ("regressor", "relu"),
                                              ("classifier", "tanh")])
@pytest.mark.parametrize("call", ["slices", "layers"])
def test_predictions_leave_out_the_zero_steps_of_their_rows(isa, dtype, kind, activation, call):
    # Rows zero outside a run of features (an image's background), 40 features zero in every row,
    # and hidden units dead for every row (80 of the first layer's 300, 30 of the second's 150): a
    # prediction's products leave out the all-zero steps of their row panels (row_panel_kept_steps,
    # on AVX2 and AVX-512), with the bias and relu applied by the kernel (the hidden relu layers),
    # the bias alone (the 40 outputs) or through the tile (tanh; edge panels), over every depth
    # block of a 701-wide input (depths of at least 128: kRowSkipMinDepth): in slices (a call long
    # enough, the weights packed once per call) or layer by layer (a shorter call, each product
    # packing its weights, on the team or, on a loaded machine, one thread), and on one thread: the
    # one-thread outputs bit for bit and numpy's float64 forward pass to rounding (the bits of
    # products reading every step: test_gemm.py's
    # test_bias_activation_products_leave_out_zero_steps_where_b_is_finite). A NaN weight on a step
    # that is zero in every row (a feature, or a dead unit of each hidden layer) is then no step
    # left out: its NaN reaches the outputs, as in the full product (Operand::packed_finite, each
    # layer's weights' report when packed once; the report of each thread's own panels when a
    # product packs them).
    rng = np.random.default_rng(6)
    rows = rng.random((slice_rows() + 77 if call == "slices" else 700, 701))
    for row in rows:
        lo, hi = np.sort(rng.integers(40, 702, 2))
        row[:lo] = 0.0
        row[hi:] = 0.0
    rows = rows.astype(dtype)
    coefs = [rng.standard_normal((701, 300)) * 0.05, rng.standard_normal((300, 150)) * 0.1,
             rng.standard_normal((150, 40)) * 0.2]
    intercepts = [rng.standard_normal(300) * 0.1, rng.standard_normal(150) * 0.1,
                  rng.standard_normal(40) * 0.1]
    intercepts[0][:80] = -50.0  # (dead relu units: all-zero steps of the next layer's rows)
    intercepts[1][:30] = -50.0

    def outputs(nan_weight=None):
        kw = dict(hidden_layer_sizes=(300, 150), activation=activation, dtype=dtype, n_threads=2)
        if kind == "classifier":
            model = fm.MLPClassifier(**kw).set_weights(coefs, intercepts, classes=np.arange(40))
        else:
            model = fm.MLPRegressor(**kw).set_weights(coefs, intercepts)
        if nan_weight is not None:  # (set_weights refuses it; coefs_ is the model's own)
            layer, i, j = nan_weight
            model.coefs_[layer][i, j] = np.nan
        two, one, skipped = outputs_on_two_threads_and_one(model, rows, isa, skipped_by_one=True)
        np.testing.assert_array_equal(two, one)
        tol = 1e-4 if dtype == "float32" else 1e-10
        np.testing.assert_allclose(two, numpy_outputs(model, rows), rtol=tol, atol=tol)
        return two, skipped

    two, skipped = outputs()
    assert np.isfinite(two).all()
    if isa in ("avx2", "avx512"):
        assert min(skipped) > 0, skipped
    else:
        assert skipped == (0, 0)
    # (feature 5, unit 3 of the first hidden layer, unit 2 of the second: zero in every row)
    for nan_weight in ((0, 5, 17), (1, 3, 5), (2, 2, 7)):
        two, _ = outputs(nan_weight)
        assert np.isnan(two[:, 7]).all(), nan_weight


@pytest.mark.skipif(_cpu.max_threads() < 2, reason="needs two threads")
def test_a_wide_network_predicts_in_shorter_slices():
    # A layer of 6,000 units bounds a call's buffers to 655 rows (a chunk): the slices are
    # shorter than 384 rows so that two threads' buffers stay within it; the one-thread bits.
    rng = np.random.default_rng(5)
    coefs = [rng.standard_normal((784, 6000)) * 0.03, rng.standard_normal((6000, 10)) * 0.03]
    intercepts = [rng.standard_normal(6000) * 0.1, rng.standard_normal(10) * 0.1]
    model = fm.MLPClassifier(hidden_layer_sizes=(6000,), n_threads=2).set_weights(
        coefs, intercepts, classes=np.arange(10))
    alone = fm.MLPClassifier(hidden_layer_sizes=(6000,), n_threads=1).set_weights(
        coefs, intercepts, classes=np.arange(10))
    rows = rng.random((slice_rows() // 2 + 37, 784)).astype(np.float32)
    np.testing.assert_array_equal(model.predict_proba(rows), alone.predict_proba(rows))


@pytest.mark.skipif(_cpu.max_threads() < 2, reason="needs two threads")
def test_chunks_of_an_input_read_in_place_give_the_one_thread_outputs():
    # Below the calls in slices, a wide network's call runs in chunks (655 rows here) on the
    # team; an input read in place is viewed by each thread itself, the first chunk starting
    # without a barrier: every chunk's rows must give the one-thread bits, in place (float32)
    # or gathered (float64), and a NaN in the second chunk must still be found.
    rng = np.random.default_rng(6)
    coefs = [rng.standard_normal((784, 6000)) * 0.03, rng.standard_normal((6000, 10)) * 0.03]
    intercepts = [rng.standard_normal(6000) * 0.1, rng.standard_normal(10) * 0.1]
    model, alone = (fm.MLPClassifier(hidden_layer_sizes=(6000,), n_threads=threads).set_weights(
        coefs, intercepts, classes=np.arange(10)) for threads in (2, 1))
    rows = rng.random((slice_rows() // 2 - 100, 784))  # (chunks of 655, 655, 126 rows)
    for Xr in (rows.astype(np.float32), rows):
        full0 = _cpu.team_predictions()[1]
        got = model.predict_proba(Xr)
        assert _cpu.team_predictions()[1] > full0  # (on the team)
        np.testing.assert_array_equal(got, alone.predict_proba(Xr), err_msg=str(Xr.dtype))
    bad = rows.copy()
    bad[900, 3] = np.nan
    for Xb in (bad.astype(np.float32), bad):
        with pytest.raises(ValueError, match="NaN"):
            model.predict(Xb)


def test_a_long_prediction_in_slices_runs_on_the_team_of_a_loaded_machine(load_check):
    # A call long enough for slices runs on the team whatever the load: a descheduled thread
    # holds up the other for one slice at most, and two threads have twice the CPU time of one
    # beside busy processes. (Shorter long calls still run alone there:
    # test_a_long_prediction_on_an_oversubscribed_machine_runs_alone.)
    model = fit(2, (300, 200))
    rows = np.tile(X, (3, 1))[: slice_rows() + 500]
    expected = one_thread_copy(model).predict_proba(rows)
    with busy_cores():
        assert wait_for_load(busy=True), "the busy processes never showed in /proc/loadavg"
        solo0, full0 = _cpu.team_predictions()
        busy = model.predict_proba(rows)
        solo1, full1 = _cpu.team_predictions()
    assert (solo1, full1) == (solo0, full0 + 1), "the call ran alone"
    np.testing.assert_array_equal(busy, expected)


def test_machine_load_reads_proc():
    runnable, own, cpus = _cpu.machine_load()
    if cpus == 0:
        pytest.skip("no /proc/loadavg")
    assert runnable >= 0 and own >= 1  # (this thread is running; some kernels report 0/N)
    assert cpus == os.sysconf("SC_NPROCESSORS_ONLN")


def test_default_threads_follow_openmp_and_the_cpus_this_process_may_use(monkeypatch):
    from joblib import cpu_count

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _engine.default_threads() == max(1, min(_cpu.max_threads(), cpu_count(), 64))
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert _engine.default_threads() == 1
    # OMP_NUM_THREADS set: OpenMP's own limit, as scikit-learn reads it
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _engine.default_threads() == min(_cpu.max_threads(), 64)
