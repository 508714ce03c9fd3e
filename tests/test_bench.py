"""The benchmark suite's timing rules (not its figures): configurations alternate, the medians
are taken over rounds, and numpy's limits are measured in the rounds of the fits they are
compared with."""

import sys
import types

import numpy as np
import pytest
from sklearn.neural_network import MLPRegressor as SkRegressor

from fusedmlp import MLPRegressor, bench
from fusedmlp import _cpu as bench_cpu


def test_interleaved_alternates_and_takes_self_timed_values():
    log = []
    seconds = iter([0.3, 0.1, 0.2])

    def timed():
        log.append("timed")

    def limit():
        log.append("limit")
        return next(seconds)

    out = bench.interleaved({"timed": timed, "limit": limit}, 3, self_timed={"limit"})
    assert log == ["timed", "limit"] * 3
    assert out["limit"] == pytest.approx(0.2)  # the median of what the callable reported
    assert 0.0 <= out["timed"] < 1.0


def test_interleaved_runs_again_the_rounds_it_is_told_to_drop():
    # a round that `keep` rejects is dropped and run again, at most `extra` times; after that
    # every round counts
    verdicts = iter([False, True, False, False, True])
    seconds = iter([10.0, 1.0, 20.0, 3.0, 5.0])
    kept = {}
    out = bench.interleaved({"a": lambda: next(seconds)}, 2, self_timed={"a"},
                            keep=lambda: next(verdicts), extra=2, rounds=kept)
    assert out == {"a": 2.0}  # rounds 2 and 4 (1.0 and 3.0); round 5 never ran
    assert kept == {"a": [1.0, 3.0]}  # the rounds kept, in order
    assert next(verdicts) is True
    # without `keep` every round counts
    assert bench.interleaved({"a": lambda: 4.0}, 3, self_timed={"a"}) == {"a": 4.0}


def test_interleaved_calls_alternate_call_by_call_in_random_orders(monkeypatch):
    log = []
    clock = iter(np.arange(0.0, 10000.0, 1.0))  # every reading one second after the last
    # (the suite's clock only: pytest's own timing reads the real one)
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: float(next(clock))))
    out = bench.interleaved_calls({k: (lambda k=k: log.append(k)) for k in "abc"}, calls=300, repeats=2)
    assert out == {"a": 1.0, "b": 1.0, "c": 1.0}  # one (fake) second per call, each round and name
    groups = ["".join(log[i:i + 3]) for i in range(0, len(log), 3)]
    assert all(sorted(g) == ["a", "b", "c"] for g in groups)  # each call, every configuration once
    # each configuration follows each other one about equally often
    follows = {}
    for prev, nxt in zip(log, log[1:]):
        if prev != nxt:
            follows[prev + nxt] = follows.get(prev + nxt, 0) + 1
    assert len(follows) == 6
    assert max(follows.values()) < 1.3 * min(follows.values())


def test_interleaved_calls_per_call_takes_the_median_of_the_calls(monkeypatch):
    # per_call: the median of every call's time, not the rounds' means
    readings = iter([0.0, 1.0, 1.0, 2.0, 2.0, 12.0])  # calls of 1 s, 1 s and 10 s
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: next(readings)))
    calls = []
    out = bench.interleaved_calls({"a": lambda: calls.append("a")}, calls=3, repeats=1, per_call=True)
    assert calls == ["a"] * 3
    assert out == {"a": pytest.approx(1.0)}  # the mean would be 4 s


def test_interleaved_calls_in_blocks(monkeypatch):
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: 0.0))
    log = []
    bench.interleaved_calls({k: (lambda k=k: log.append(k)) for k in "ab"}, calls=40, repeats=3,
                            block=20)
    runs = ["".join(log[i:i + 20]) for i in range(0, len(log), 20)]
    assert len(runs) == 12 and all(r in ("a" * 20, "b" * 20) for r in runs)
    rounds = [sorted(runs[i:i + 4]) for i in range(0, 12, 4)]
    assert all(r == ["a" * 20] * 2 + ["b" * 20] * 2 for r in rounds)
    with pytest.raises(ValueError, match="multiple of block"):
        bench.interleaved_calls({"a": lambda: None}, calls=30, repeats=1, block=20)


def test_interleaved_settles_before_each_call(monkeypatch):
    # a pause before every timed call, none without settle; the pauses are outside the timings
    log = []
    now = [0.0]

    def sleep(s):
        log.append(("sleep", s))
        now[0] += 100.0  # a pause counted in a timing would show

    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: now[0], sleep=sleep))

    def call(k):
        log.append(k)
        now[0] += 1.0

    fns = {k: (lambda k=k: call(k)) for k in "ab"}
    assert bench.interleaved(fns, 2, settle=0.2) == {"a": 1.0, "b": 1.0}
    assert log == [("sleep", 0.2), "a", ("sleep", 0.2), "b"] * 2
    log.clear()
    assert bench.interleaved(fns, 2) == {"a": 1.0, "b": 1.0}
    assert log == ["a", "b"] * 2


def test_inference_case_settles_before_each_large_prediction(monkeypatch):
    # the 10,000-row calls after SETTLE_SECONDS of pause each; the one-row runs without
    calls = {}

    def fake_interleaved(fns, repeats, self_timed=(), settle=0.0):
        calls["batch"] = (sorted(fns), settle)
        return dict.fromkeys(fns, 1.0)

    def fake_calls(fns, calls_, repeats, seed=0, per_call=False, block=1):
        calls["single"] = sorted(fns)
        return dict.fromkeys(fns, 1e-5)

    rng = np.random.default_rng(0)
    X = rng.random((300, 784)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    monkeypatch.setattr(bench, "fashion_mnist", lambda d, dt: (X.astype(dt), y, X[:50].astype(dt), y[:50], "small"))
    monkeypatch.setattr(bench, "torch_or_none", lambda: None)
    monkeypatch.setattr(bench, "jax_or_none", lambda threads: None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # (absent: its import fails)
    monkeypatch.setattr(bench, "interleaved", fake_interleaved)
    monkeypatch.setattr(bench, "interleaved_calls", fake_calls)
    # one thread: no round trip measured or told
    monkeypatch.setattr(bench_cpu, "core_round_trip", lambda: pytest.fail("measured"))
    res = bench.case_inference(None, 1, 1)
    assert not [n for n in res["notes"] if "one-row calls:" in n]
    libraries = [("fusedmlp", "float32"), ("fusedmlp", "float64"), ("scikit-learn", "float32"),
                 ("scikit-learn", "float64")]
    assert calls["batch"] == (libraries, bench.SETTLE_SECONDS)
    assert calls["single"] == libraries
    assert res["batch"] == dict.fromkeys(libraries, 1.0)
    assert not [n for n in res["notes"] if "round trip" in n]
    # more threads: before, between and after the measurements
    trips = iter([5.5e-8, 3.3e-7, None])
    monkeypatch.setattr(bench_cpu, "core_round_trip", lambda: next(trips))
    counts = iter([(10, 5), (1210, 2005)])  # (one thread, team) before and after the one-row calls
    monkeypatch.setattr(bench_cpu, "team_predictions", lambda: next(counts))
    res = bench.case_inference(None, 1, 2)
    assert [n for n in res["notes"] if "round trip" in n] == [
        "the cores' round trip (ns) before the 50-row calls, between them and the one-row calls, "
        "after those: 55>330>-"]
    assert next(trips, "all read") == "all read"
    assert [n for n in res["notes"] if "one-row calls:" in n] == [
        "fusedmlp's timed one-row calls: 1,200 on one thread, 2,000 on the team of 2"]
    assert next(counts, "all read") == "all read"


@pytest.mark.parametrize("limit64", [False, True])
def test_training_case_measures_the_limits_in_the_rounds_of_the_fits(monkeypatch, limit64):
    log = []
    values = {"float32": iter([3.0, 1.0, 2.0]), "float64": iter([6.0, 4.0, 5.0])}

    def fake_limit(units, n_samples, batch, dtype, repeats=30, native=True):
        name = np.dtype(dtype).name
        log.append(("limit", name, native))
        return next(values[name])

    class Logged(MLPRegressor):
        def fit(self, X, y):
            log.append(("fit", self.max_iter))
            return super().fit(X, y)

    monkeypatch.setattr(bench, "numpy_limit", fake_limit)
    monkeypatch.setattr(bench, "openblas_coretype", lambda: "")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 3)), rng.standard_normal(60)
    units = [3, 4, 1]
    peers = {"fusedmlp": (lambda: Logged(**bench.mlp_params(units, n_threads=1)), 1)}
    res = bench.training_case("t", X, y, units, peers, 3, np.float32, 1, limit64=limit64)
    one_round = [("fit", 1), ("fit", 2), ("limit", "float32", True)]
    if limit64:
        one_round.append(("limit", "float64", True))
    assert log == one_round * 3
    assert res["limit"] == 2.0
    assert ("limit64" in res) == limit64
    if limit64:
        assert res["limit64"] == 5.0
    assert "limit_coretype" not in res


def test_training_case_puts_another_peers_fit_before_each_fit(monkeypatch):
    # what a switch of library costs the next fit must fall on the short and the long fit alike:
    # all short fits in turn, then all long ones, never one peer's two fits back to back
    log = []

    def logged(name):
        class Logged(MLPRegressor):
            def fit(self, X, y):
                log.append((name, self.max_iter))
                return super().fit(X, y)
        return Logged

    monkeypatch.setattr(bench, "numpy_limit", lambda *a, **k: log.append(("limit", 0)) or 1.0)
    monkeypatch.setattr(bench, "openblas_coretype", lambda: "")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 3)), rng.standard_normal(60)
    units = [3, 4, 1]
    peers = {name: (lambda c=logged(name): c(**bench.mlp_params(units, n_threads=1)), epochs)
             for name, epochs in (("a", 1), ("b", 3), ("c", 2))}
    res = bench.training_case("t", X, y, units, peers, 2, np.float32, 1)
    one_round = [("a", 1), ("b", 3), ("c", 2), ("a", 2), ("b", 6), ("c", 4), ("limit", 0)]
    assert log == one_round * 2
    assert all(prev[0] != nxt[0] for prev, nxt in zip(log, log[1:]))
    assert set(res["seconds"]) == {"a", "b", "c"}


def test_training_case_tells_each_rounds_epochs_and_limit_ratios(monkeypatch):
    # the medians hide how far the rounds lie apart; the notes give each kept round's epoch (its
    # long fit less its short one, over the epochs between them), limits and limit / fusedmlp
    # ratios, with their medians; a round whose long fit ran no slower than its short one has no
    # epoch and no ratio ('-'), but its difference counts in the epoch's median, the table's
    kept = {("fusedmlp", 1): [1.0, 1.2, 1.1, 1.0], ("fusedmlp", 2): [1.4, 1.8, 1.3, 0.9],
            ("fusedmlp dtype=float64", 1): [2.0, 2.0, 2.0, 2.0],
            ("fusedmlp dtype=float64", 2): [3.0, 2.5, 2.8, 2.6],
            "limit": [0.2, 0.15, 0.3, 0.2], "limit64": [0.5, 0.5, 0.4, 0.3],
            "limit_coretype": [0.4, 0.3, 0.2, 0.1]}

    def fake_interleaved(fns, repeats, self_timed=(), settle=0.0, keep=None, extra=0, rounds=None):
        assert set(fns) == set(kept) and repeats == 4
        rounds.update(kept)
        return {name: float(np.median(ts)) for name, ts in kept.items()}

    monkeypatch.setattr(bench, "interleaved", fake_interleaved)
    monkeypatch.setattr(bench, "openblas_coretype", lambda: "Haswell")
    X, y = np.zeros((60, 3)), np.zeros(60)
    units = [3, 4, 1]
    peers = {"fusedmlp": (lambda: None, 2), "fusedmlp dtype=float64": (lambda: None, 1)}
    res = bench.training_case("t", X, y, units, peers, 4, np.float32, 1, limit64=True)
    assert res["seconds"]["fusedmlp"] == pytest.approx(0.3 / 2)  # the rounds' median difference
    assert [n for n in res["notes"] if "kept round" in n] == [
        "seconds per epoch in each kept round (its long fit less its short one), and the limits: "
        "fusedmlp 0.2 0.3 0.1 - (median 0.15); fusedmlp dtype=float64 1 0.5 0.8 0.6 (median 0.7); "
        "numpy limit 0.2 0.15 0.3 0.2 (median 0.2); float64 limit 0.5 0.5 0.4 0.3 (median 0.45); "
        "limit on the Haswell kernel 0.4 0.3 0.2 0.1 (median 0.25)",
        "in each kept round: limit / fusedmlp 1 0.5 3 - (median 1); float64 limit / fusedmlp "
        "dtype=float64 0.5 1 0.5 0.5 (median 0.5); limit on the Haswell kernel / fusedmlp "
        "2 1 2 - (median 2); fusedmlp dtype=float64 / fusedmlp 5 1.667 8 - (median 5)"]


def test_training_case_takes_the_median_of_the_rounds_own_epochs(monkeypatch):
    # a round's epoch is its long fit less its own short fit; the median of those, not the
    # difference of the long and the short fits' medians, which pairs fits of different rounds
    # (here 2.4 of round 1 less 1.5 of round 3: 0.9, an epoch no round had); a configuration
    # whose long fits ran no slower than its short ones in at least half the rounds has no epoch
    # (b: the medians' difference 2.5 - 2.0 would give it one), one whose long fits ran slower in
    # most rounds has one (c: the medians' difference 1.5 - 2.0 would give it none); without a
    # configuration named fusedmlp the notes give no ratios
    kept = {("a", 1): [1.0, 2.0, 1.5], ("a", 2): [2.4, 2.5, 1.6],
            ("b", 1): [1.0, 2.0, 3.0], ("b", 2): [2.5, 1.9, 2.9],
            ("c", 1): [1.0, 2.0, 3.0], ("c", 2): [1.1, 2.1, 1.5], "limit": [0.2, 0.2, 0.2]}

    def fake_interleaved(fns, repeats, self_timed=(), settle=0.0, keep=None, extra=0, rounds=None):
        rounds.update(kept)
        return {name: float(np.median(ts)) for name, ts in kept.items()}

    monkeypatch.setattr(bench, "interleaved", fake_interleaved)
    monkeypatch.setattr(bench, "openblas_coretype", lambda: "")
    X, y = np.zeros((60, 3)), np.zeros(60)
    peers = {"a": (lambda: None, 1), "b": (lambda: None, 2), "c": (lambda: None, 2)}
    res = bench.training_case("t", X, y, [3, 4, 1], peers, 3, np.float32, 1)
    assert res["seconds"]["a"] == pytest.approx(0.5)
    # once per fit: each round's short fit less its own epoch (-0.4, 1.5, 1.4), their median
    assert res["fixed"]["a"] == pytest.approx(1.4)
    assert res["unmeasured"] == ["b"]
    assert res["seconds"]["c"] == pytest.approx(0.1 / 2)
    assert [n for n in res["notes"] if "kept round" in n] == [
        "seconds per epoch in each kept round (its long fit less its short one), and the limits: "
        "a 1.4 0.5 0.1 (median 0.5); b 0.75 - - (median -); c 0.05 0.05 - (median 0.05); "
        "numpy limit 0.2 0.2 0.2 (median 0.2)"]


def test_training_case_measures_the_coretype_limit_when_set(monkeypatch):
    natives = []

    def fake_limit(units, n_samples, batch, dtype, repeats=30, native=True):
        natives.append(native)
        return 1.0 if native else 2.0

    monkeypatch.setattr(bench, "numpy_limit", fake_limit)
    monkeypatch.setattr(bench, "openblas_coretype", lambda: "Haswell")  # (the environment untouched)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 3)), rng.standard_normal(60)
    units = [3, 4, 1]
    peers = {"fusedmlp": (lambda: MLPRegressor(**bench.mlp_params(units, n_threads=1)), 1)}
    res = bench.training_case("t", X, y, units, peers, 2, np.float32, 1)
    assert natives == [True, False] * 2
    assert res["limit"] == 1.0
    assert res["limit_coretype"] == ("Haswell", 2.0)


def test_training_case_reports_the_teams_of_each_fusedmlp_fit(monkeypatch):
    # each fusedmlp fit's epoch segments on one thread and on the team, round by round: a round
    # run mostly on one thread moves the medians, and the suite's output has to show it
    monkeypatch.setattr(bench, "numpy_limit", lambda *a, **k: 1.0)
    monkeypatch.setattr(bench, "openblas_coretype", lambda: "")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((400, 3)), rng.standard_normal(400)
    units = [3, 4, 1]
    calls = []
    segments = iter([(0, 0), (1, 4), (1, 4), (1, 12), (1, 12), (6, 12), (6, 12), (6, 20),
                     (6, 20), (9, 22), (9, 22), (13, 26)])

    def counted():
        calls.append(1)
        return next(segments)

    monkeypatch.setattr(bench_cpu, "team_segments", counted)
    # and the cores' round trip before and after every fit, each library's ('-': its threads
    # never ran at once); the first round saw the CPUs move (85 -> 350 ns) and is run again
    trips = iter([8.5e-8, 3.504e-7, 3.4e-7, 3.45e-7, 3.3e-7, 3.4e-7, 3.35e-7, 3.4e-7,
                  None, 6e-8, 7e-8, 7.5e-8, 9e-8, 9e-8, 8e-8, 8.5e-8,
                  3.3e-7, 3.35e-7, 3.3e-7, 3.3e-7, 3.4e-7, 3.45e-7, 3.3e-7, 3.3e-7])
    monkeypatch.setattr(bench_cpu, "core_round_trip", lambda: next(trips))
    peers = {"fusedmlp": (lambda: MLPRegressor(**bench.mlp_params(units, n_threads=2)), 2),
             "other": (lambda: SkRegressor(**bench.mlp_params(units)), 1)}
    res = bench.training_case("t", X, y, units, peers, 2, np.float32, 2)
    assert len(calls) == 12  # before and after each of fusedmlp's 6 fits, none for the other's
    assert next(trips, "all read") == "all read"
    notes = [n for n in res["notes"] if "segments" in n]
    assert notes == ["fusedmlp: epoch segments on one thread / on the team, round by round "
                     "(short fit, long fit): 1/4 0/8; 5/0 0/8; 3/2 4/4"]
    notes = [n for n in res["notes"] if "round trip" in n]
    assert notes == ["fusedmlp: the cores' round trip (ns) before>after each fit, round by round "
                     "(short fit, long fit; '-': the two threads did not run at once): 85>350 "
                     "330>340; ->60 90>90; 330>335 340>345",
                     "the cores' round trip (ns) around every fit, lowest-highest, round by round: "
                     "85-350 (run again); 60-90; 330-345; 1 round(s) where it moved more than 2.5x "
                     "run again"]
    # one thread: no round trip measured or told
    monkeypatch.setattr(bench_cpu, "core_round_trip", lambda: pytest.fail("measured"))
    monkeypatch.setattr(bench_cpu, "team_segments", lambda: (0, 0))
    peers = {"fusedmlp": (lambda: MLPRegressor(**bench.mlp_params(units, n_threads=1)), 2)}
    res = bench.training_case("t", X, y, units, peers, 1, np.float32, 1)
    assert not [n for n in res["notes"] if "round trip" in n]


def test_core_round_trip():
    # seconds per round trip of a line between two threads: more than nothing and less than a
    # time slice while both run (a second is far beyond either); None when they could not both
    # run within max_seconds; a clear error for bad arguments
    trip = bench_cpu.core_round_trip(2000)
    assert trip is None or 0.0 < trip < 1.0
    assert bench_cpu.core_round_trip(10**8, 1e-6) is None
    for args in [(4,), (10**8 + 1,), (100, 0.0), (100, -1.0), (100, float("nan")), (100, 61.0)]:
        with pytest.raises(ValueError, match="core_round_trip"):
            bench_cpu.core_round_trip(*args)


def _inference_peak_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "inference_peak.py"
    if not path.exists():
        pytest.skip("bench/ is not beside the tests (an installed package's tests)")
    spec = importlib.util.spec_from_file_location("inference_peak", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def test_inference_peak_products_are_the_networks_outputs():
    # bench/inference_peak.py's "three products" compute the fitted network's logits: their
    # argmax is the estimator's prediction (the softmax it leaves out keeps the order)
    from fusedmlp import MLPClassifier

    _, script = _inference_peak_script()
    rng = np.random.default_rng(0)
    X = rng.random((300, 20)).astype(np.float32)
    y = rng.integers(0, 4, 300)
    est = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=5, random_state=0).fit(X, y)
    products, hidden = script.network_products(est, X, 2)
    products()
    assert [h.shape for h in hidden] == [(300, 16), (300, 8), (300, 4)]
    assert np.all(hidden[0] >= 0) and np.all(hidden[1] >= 0)
    np.testing.assert_array_equal(est.classes_[hidden[-1].argmax(axis=1)], est.predict(X))
    np.testing.assert_allclose(np.exp(hidden[-1]) / np.exp(hidden[-1]).sum(1, keepdims=True),
                               est.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_inference_peak_summary():
    # the summary's arithmetic on made-up rounds: GFLOP/s at the median time, the median of the
    # rounds' fractions of their peak, the ratio to ONNX Runtime and what 1.2x over it needs
    _, script = _inference_peak_script()
    rounds = [{"peak": 100.0, "fusedmlp predict": 0.010, "ONNX Runtime": 0.012},
              {"peak": 200.0, "fusedmlp predict": 0.008, "ONNX Runtime": 0.010},
              {"peak": 100.0, "fusedmlp predict": 0.020, "ONNX Runtime": 0.021}]
    lines = script.summary(rounds, 1e9, ["fusedmlp predict", "ONNX Runtime"])
    assert lines == [
        "median peak 100.0 GFLOP/s",
        # 1 GFLOP: 100, 125 and 50 GFLOP/s, of peaks 100, 200, 100: 1.0, 0.625, 0.5
        "fusedmlp predict: 10.00 ms, 100.0 GFLOP/s, 0.625 of the round's peak (median of rounds)",
        "ONNX Runtime: 12.00 ms, 83.3 GFLOP/s, 0.500 of the round's peak (median of rounds)",
        "ONNX Runtime / fusedmlp predict: median 1.200x (rounds 1.050-1.250)",
        # 1.2 GFLOP in ONNX Runtime's time: 100, 120, 57.1 GFLOP/s of 100, 200, 100
        "1.2x ONNX Runtime needs the call at 0.600 of the round's peak (rounds 0.571-1.000)",
    ]
    # the calls after a pause: their own ratio
    for r in rounds:
        r["fusedmlp predict, after a pause"] = 2 * r["fusedmlp predict"]
        r["ONNX Runtime, after a pause"] = 3 * r["ONNX Runtime"]
    lines = script.summary(rounds, 1e9, ["fusedmlp predict", "ONNX Runtime", "fusedmlp predict, after a pause",
                                         "ONNX Runtime, after a pause"])
    assert lines[-2] == ("ONNX Runtime, after a pause / fusedmlp predict, after a pause: median 1.800x "
                         "(rounds 1.575-1.875)")


def test_inference_peak_script_runs(tmp_path):
    # one short round on a small stand-in for the data: the report's lines, the peak program
    # built and run
    import shutil
    import subprocess

    if shutil.which("gcc") is None or bench_cpu.active_isa() not in ("avx2", "avx512"):
        pytest.skip("needs gcc and fusedmlp's AVX2 or AVX-512 kernels")
    probe = tmp_path / "omp.c"
    probe.write_text("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
    if subprocess.run(["gcc", "-fopenmp", str(probe), "-o", str(tmp_path / "omp")],
                      capture_output=True).returncode != 0:
        pytest.skip("gcc cannot build OpenMP programs here")
    path, _ = _inference_peak_script()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "fashion_mnist.npz",
             X_train=rng.integers(0, 256, (600, 784), dtype=np.uint8),
             y_train=rng.integers(0, 10, 600), X_test=rng.integers(0, 256, (300, 784), dtype=np.uint8),
             y_test=rng.integers(0, 10, 300))
    out = subprocess.run([sys.executable, str(path), "--data", str(tmp_path), "--rounds", "1",
                          "--calls", "1", "--peak-iters", "200000", "--settle", "0.01"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "Fashion-MNIST, 300 rows" in out.stdout
    lines = out.stdout.splitlines()
    peak = [x for x in lines if x.startswith("median peak ")]
    assert len(peak) == 1 and float(peak[0].split()[2]) > 0
    assert [x for x in lines if x.startswith("fusedmlp predict: ")]
    assert [x for x in lines if x.startswith("fusedmlp's three products: ")]
    assert [x for x in lines if x.startswith("fusedmlp predict, after a pause: ")]
