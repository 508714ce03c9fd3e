"""Every CUDA kernel, on the simulator (and on a real device when one exists), against a
float64 numpy reference and the CPU engine, at sizes around every tile edge (GEMM tiles of
64 x 64 x 16, fused-forward blocks of 32 or 16 rows, 256-thread element-wise blocks)."""

import numpy as np
import pytest

from fusedmlp import _cpu

from ..conftest import engine_problem

EDGE = [1, 15, 63, 64, 65, 129]
KS = [1, 15, 16, 17, 33, 70]
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}
CPU_GEMM = {np.float32: _cpu.gemm_f32, np.float64: _cpu.gemm_f64}


def gemm_of(engine, dtype):
    return engine.gemm_f32 if dtype == np.float32 else engine.gemm_f64


def close(got, ref, k, dtype):
    return np.all(np.abs(got - ref) <= EPS[dtype] * 4 * max(k, 1) * (1 + np.abs(ref)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_every_edge_and_layout(cuda_engine, dtype):
    rng = np.random.default_rng(0)
    gemm = gemm_of(cuda_engine, dtype)
    for m in EDGE:
        for n in EDGE:
            k = KS[(m + 3 * n) % len(KS)]
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            ref = a.astype(np.float64) @ b
            for A in (a, np.asfortranarray(a)):
                for B in (b, np.asfortranarray(b)):
                    got = gemm(A, B)
                    assert close(got, ref, k, dtype), (m, n, k, A.strides, B.strides)
            np.testing.assert_allclose(gemm(a, b), CPU_GEMM[dtype](a, b), rtol=EPS[dtype] * 4 * k, atol=EPS[dtype] * 4 * k)


ACTS = {"identity": lambda z: z, "logistic": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh,
        "relu": lambda z: np.maximum(z, 0)}
DERIV = {"identity": lambda a: np.ones_like(a), "logistic": lambda a: a * (1 - a), "tanh": lambda a: 1 - a * a,
         "relu": lambda a: (a != 0).astype(a.dtype)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", list(ACTS))
def test_gemm_epilogues(cuda_engine, dtype, act):
    rng = np.random.default_rng(1)
    gemm = gemm_of(cuda_engine, dtype)
    m, n, k = 70, 65, 33
    a = rng.standard_normal((m, k)).astype(dtype)
    b = (rng.standard_normal((k, n)) / 4).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    z = a.astype(np.float64) @ b + bias
    got = gemm(a, b, epilogue="bias_activation", activation=act, bias=bias)
    assert close(got, ACTS[act](z), k, dtype)
    np.testing.assert_allclose(got, CPU_GEMM[dtype](a, b, epilogue="bias_activation", activation=act, bias=bias),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6 if dtype == np.float32 else 1e-13)
    # the data gradient: (dZ W^T) * f'(a_prev), W^T read through strides
    a_prev = ACTS[act](rng.standard_normal((m, k))).astype(dtype)
    dz = rng.standard_normal((m, n)).astype(dtype)
    w = rng.standard_normal((k, n)).astype(dtype)
    got = gemm(dz, w.T, epilogue="activation_grad", activation=act, aux=a_prev)
    ref = (dz.astype(np.float64) @ w.T) * DERIV[act](a_prev.astype(np.float64))
    assert close(got, ref, n, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_weight_grad_colsum_and_accumulate(cuda_engine, dtype):
    rng = np.random.default_rng(2)
    gemm = gemm_of(cuda_engine, dtype)
    batch, fan_in, fan_out = 77, 65, 130
    act = rng.standard_normal((batch, fan_in)).astype(dtype)
    dz = rng.standard_normal((batch, fan_out)).astype(dtype)
    w = rng.standard_normal((fan_in, fan_out)).astype(dtype)
    got, colsum = gemm(act.T, dz, epilogue="weight_grad", aux=w, alpha=0.3, scale=1 / batch, colsum=True)
    assert close(got, (act.astype(np.float64).T @ dz + 0.3 * w) / batch, batch, dtype)
    assert close(colsum, dz.astype(np.float64).sum(0) / batch, batch, dtype)
    c0 = rng.standard_normal((fan_in, fan_out)).astype(dtype)
    got = gemm(act.T, dz, c=c0)
    assert close(got, c0 + act.astype(np.float64).T @ dz, batch, dtype)


# Split-k: k shared among up to 16 blocks per tile, the parts summed by a second kernel that
# applies the epilogue. More splits than 16-deep slices leave some blocks an empty share.
SPLITS = [2, 3, 5, 16]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_k_gemm_every_edge_layout_and_epilogue(cuda_engine, dtype):
    rng = np.random.default_rng(6)
    gemm = gemm_of(cuda_engine, dtype)
    for i, (m, n) in enumerate([(1, 1), (15, 65), (63, 64), (65, 129), (129, 15)]):
        for k in (1, 17, 33, 70, 200):
            splits = SPLITS[(i + k) % len(SPLITS)]
            a = rng.standard_normal((m, k)).astype(dtype)
            b = (rng.standard_normal((k, n)) / 4).astype(dtype)
            ref = a.astype(np.float64) @ b
            for A in (a, np.asfortranarray(a)):
                for B in (b, np.asfortranarray(b)):
                    assert close(gemm(A, B, splits=splits), ref, k, dtype), (m, n, k, splits)
            bias = rng.standard_normal(n).astype(dtype)
            for act in ACTS:
                got = gemm(a, b, epilogue="bias_activation", activation=act, bias=bias, splits=splits)
                assert close(got, ACTS[act](ref + bias), k, dtype), (m, n, k, splits, act)
                a_prev = ACTS[act](rng.standard_normal((m, n))).astype(dtype)
                got = gemm(a, b, epilogue="activation_grad", activation=act, aux=a_prev, splits=splits)
                assert close(got, ref * DERIV[act](a_prev.astype(np.float64)), k, dtype)
            # the weight gradient with its column sum, and accumulation into C
            w = rng.standard_normal((m, n)).astype(dtype)
            got, colsum = gemm(a, b, epilogue="weight_grad", aux=w, alpha=0.3, scale=1 / k, colsum=True,
                               splits=splits)
            assert close(got, (ref + 0.3 * w) / k, k, dtype)
            assert close(colsum, b.astype(np.float64).sum(0) / k, k, dtype)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            got, colsum = gemm(a, b, c=c0, colsum=True, splits=splits)
            assert close(got, c0 + ref, k, dtype)
            assert close(colsum, b.astype(np.float64).sum(0), k, dtype)
    with pytest.raises(ValueError, match="splits"):
        gemm(a, b, splits=17)
    with pytest.raises(ValueError, match="splits"):
        gemm(a, b, splits=0)


@pytest.mark.parametrize("units, loss", [([300, 40, 3], "squared_error"), ([300, 100, 3], "log_loss")])
def test_split_k_in_training_matches_cpu_engine(simulator, monkeypatch, units, loss):
    """The per-batch GEMMs split k when a batch's tiles cannot fill the device: with 108
    multiprocessors (the simulator's default, an A100's) a batch of 200 rows through a
    300-40-3 network splits 3 of its 5 products (the first layer's forward 9 ways, both weight
    gradients 6 ways; the others are too shallow), 300-100-3 also its output layer's forward
    (3 ways), whose parts the output loss then sums (softmax, log-loss); the last batch of 50
    rows reads a shorter k from the batch state. With one multiprocessor, or with
    FUSEDMLP_CUDA_SPLIT_K=0, they split none. All train as the CPU engine does; the sums' order
    differs, so split and unsplit results differ in their last bits, which shows the split
    path ran."""
    dtype = np.float64
    X, Y = engine_problem(loss, 450, units[0], units[-1], dtype)
    rng = np.random.default_rng(7)
    order = rng.permutation(450).astype(np.int64)
    results = {}
    for sms in ("1", "108", "off"):
        if sms == "off":  # 108 multiprocessors, split-k turned off
            monkeypatch.setenv("FUSEDMLP_CUDA_SPLIT_K", "0")
        else:
            monkeypatch.setenv("FUSEDMLP_CUDA_SIM_SMS", sms)
        gpu, cpu = trainers(simulator, dtype, units, "tanh", loss)
        p0 = np.random.default_rng(8).uniform(-0.1, 0.1, cpu.n_params).astype(dtype)
        for name, engine in (("sms=" + sms, gpu), ("cpu", cpu)):
            p = p0.copy()
            opt = {"m": np.zeros_like(p), "v": np.zeros_like(p), "t": np.zeros(1, np.int64)}
            hyper = dict(solver="adam", batch_size=200, learning_rate=0.01, alpha=1e-3, beta_1=0.9,
                         beta_2=0.999, epsilon=1e-8, momentum=0.9, nesterov=True, dropout_seed=0, epoch=0)
            losses = [engine.run_epoch(X, Y, None, order, p, opt, hyper)["accumulated_loss"] for _ in range(2)]
            results[name] = (p, losses)
    for name in ("sms=1", "sms=108", "sms=off"):
        np.testing.assert_allclose(results[name][1], results["cpu"][1], rtol=1e-12)
        np.testing.assert_allclose(results[name][0], results["cpu"][0], rtol=1e-10, atol=1e-12)
    assert not np.array_equal(results["sms=1"][0], results["sms=108"][0])
    np.testing.assert_array_equal(results["sms=off"][0], results["sms=1"][0])


@pytest.mark.parametrize("split_k", ["on", "off"])
def test_kernels_per_batch(simulator, monkeypatch, split_k):
    """What one batch launches (counted by the simulator, the captured graph's replays
    included): the gather with the batch's set-up, a GEMM per layer forward, the output loss,
    the weight gradient of every layer and the data gradient of all but the first, the
    optimizer, the batch's finish; with split-k a reduction after each split GEMM except the
    output layer's forward, whose parts the output loss sums. For 300-100-3 at batch 200 on 108
    multiprocessors: the first layer's forward (9 ways) and both weight gradients (6 ways) split
    with a reduction; the output layer's forward splits 3 ways into the loss."""
    if split_k == "off":
        monkeypatch.setenv("FUSEDMLP_CUDA_SPLIT_K", "0")
    units = [300, 100, 3]
    X, Y = engine_problem("log_loss", 600, units[0], units[-1], np.float32)
    gpu = simulator.TrainerF32(units, "relu", "log_loss", "", {})
    p = np.random.default_rng(8).uniform(-0.1, 0.1, gpu.n_params).astype(np.float32)
    opt = {"m": np.zeros_like(p), "v": np.zeros_like(p), "t": np.zeros(1, np.int64)}
    hyper = dict(solver="adam", batch_size=200, learning_rate=0.01, alpha=1e-3, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, momentum=0.9, nesterov=True, dropout_seed=0, epoch=0)
    kernels = []
    for n in (200, 600, 600):  # one batch, then three (the first epoch of three captures the graph)
        before = simulator.runtime_counts()["kernels"]
        gpu.run_epoch(X, Y, None, np.arange(n, dtype=np.int64), p, opt, hyper)
        kernels.append(simulator.runtime_counts()["kernels"] - before)
    assert kernels[1] == kernels[2]  # (the replayed graph runs what the captured batch ran)
    per_batch = (kernels[2] - kernels[0]) // 2
    n_layers = len(units) - 1
    unsplit = 1 + n_layers + 1 + (2 * n_layers - 1) + 1 + 1
    assert per_batch == (unsplit + 3 if split_k == "on" else unsplit)


# ---- the trainer's kernels, against the CPU engine ----------------------------------------------

LOSSES = {loss["name"]: loss["canonical_output"] for loss in _cpu.losses()}


def trainers(engine, dtype, units, act, loss, out_activation="", params=None):
    suffix = "F32" if dtype == np.float32 else "F64"
    params = params or {}
    return (getattr(engine, "Trainer" + suffix)(units, act, loss, out_activation, params),
            getattr(_cpu, "Trainer" + suffix)(units, act, loss, 1, out_activation, params))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss,out_activation,hidden", [
    ("squared_error", "tanh", "relu"), ("squared_error", "relu", "relu"), ("poisson", "logistic", "relu"),
    ("absolute_error", "softplus", "softplus"), ("huber", "", "tanh"), ("quantile", "identity", "relu"),
    ("huber", "selu", "selu")])
def test_non_canonical_heads_match_cpu_engine(cuda_engine, dtype, loss, out_activation, hidden):
    # dL/da * f'(z) on the device, for the narrow fused forward and the GEMM path
    params = {"huber": {"huber_delta": 0.4}, "quantile": {"quantile": 0.8}}.get(loss)
    for units in ([6, 9, 2], [40, 150, 3]):
        X, Y = engine_problem(loss, 90, units[0], units[-1], dtype)
        gpu, cpu = trainers(cuda_engine, dtype, units, hidden, loss, out_activation, params)
        p0 = np.random.default_rng(4).uniform(-0.3, 0.3, cpu.n_params).astype(dtype)
        assert_loss_grad_and_predict_agree(gpu, cpu, X, Y, None, p0)


def assert_loss_grad_and_predict_agree(gpu, cpu, X, Y, sw, p0):
    # whole-data loss and gradient (L-BFGS): gather, forward, loss, backward, finish kernels
    tol = TOL[p0.dtype.type]
    g_gpu, g_cpu = np.empty_like(p0), np.empty_like(p0)
    l_gpu = gpu.loss_grad(X, Y, sw, p0, 0.01, g_gpu)
    l_cpu = cpu.loss_grad(X, Y, sw, p0, 0.01, g_cpu)
    assert l_gpu == pytest.approx(l_cpu, rel=tol["rtol"])
    np.testing.assert_allclose(g_gpu, g_cpu, **tol)
    # prediction: forward and the float64 output activation
    np.testing.assert_allclose(gpu.predict(X, p0), cpu.predict(X, p0), **tol)


TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}

# (units, batch size): narrow networks take the fused forward kernel, wider ones the GEMMs;
# the sizes sit on and around the tile and block edges
SHAPES = [
    ([5, 7, 3], 16),
    ([1, 64, 1], 33),
    ([63, 65, 2], 64),
    ([33, 128, 17, 4], 65),
    ([20, 129, 3], 7),
    ([70, 65, 130, 5], 100),
]


# every shape with two losses, every loss with three shapes
CASES = [(shape, loss) for shape in range(len(SHAPES)) for loss in
         (list(LOSSES)[shape % 4], list(LOSSES)[(shape + 2) % 4])]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, loss", CASES)
def test_trainer_matches_cpu_engine(cuda_engine, dtype, loss, shape):
    units, batch = SHAPES[shape]
    act = ["relu", "tanh", "logistic", "identity"][shape % 4]
    n_out = units[-1] if loss != "binary_log_loss" or units[-1] > 0 else 1
    X, Y = engine_problem(loss, 110, units[0], n_out, dtype)
    sw = np.random.default_rng(3).uniform(0.5, 2, 110).astype(dtype) if shape % 2 else None
    gpu, cpu = trainers(cuda_engine, dtype, units, act, loss)
    rng = np.random.default_rng(4)
    p0 = (rng.uniform(-0.3, 0.3, cpu.n_params)).astype(dtype)
    assert_loss_grad_and_predict_agree(gpu, cpu, X, Y, sw, p0)

    # two epochs of each solver: the captured per-batch graph, replayed
    for solver in ("adam", "sgd"):
        order = np.random.default_rng(5).permutation(110).astype(np.int64)
        results = []
        for engine in (gpu, cpu):
            p = p0.copy()
            opt = ({"m": np.zeros_like(p), "v": np.zeros_like(p), "t": np.zeros(1, np.int64)} if solver == "adam"
                   else {"velocity": np.zeros_like(p)})
            hyper = dict(solver=solver, batch_size=batch, learning_rate=0.01, alpha=1e-3, beta_1=0.9,
                         beta_2=0.999, epsilon=1e-8, momentum=0.9, nesterov=True, dropout_seed=0, epoch=0)
            losses = [engine.run_epoch(X, Y, sw, order, p, opt, hyper)["accumulated_loss"] for _ in range(2)]
            results.append((p, losses, opt))
        (p_g, l_g, o_g), (p_c, l_c, o_c) = results
        np.testing.assert_allclose(l_g, l_c, rtol=TOL[dtype]["rtol"] * 10)
        np.testing.assert_allclose(p_g, p_c, rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * 10)
        if solver == "adam":
            assert int(o_g["t"][0]) == int(o_c["t"][0]) == 2 * -(-110 // batch)


def test_simulator_runs_blocks(simulator):
    # the simulated build identifies itself and reports its one simulated device
    from fusedmlp import _cuda_sim

    assert _cuda_sim.simulated is True and _cuda_sim.device_count() == 1


REGISTRY = {a["name"]: a for a in _cpu.activations()}
TRAINABLE = [name for name, a in REGISTRY.items() if a["hidden"] and a["derivative"] != "none"]
ACTIVATION_PARAMS = {"negative_slope": 0.2, "elu_alpha": 0.7}


@pytest.mark.parametrize("hidden", TRAINABLE)
def test_activations_and_dropout_match_cpu_engine(cuda_engine, hidden):
    """Every hidden activation (with a non-default parameter where it has one; stored
    pre-activations where its derivative needs them) and dropout, on the fused narrow forward
    kernel and on the GEMMs: the device's epochs equal the CPU engine's, masks included."""
    dtype = np.float64
    param = REGISTRY[hidden]["param"]
    options = {param: ACTIVATION_PARAMS[param]} if param else {}
    for units, dropout in (([6, 9, 7, 2], [0.3, 0.5]), ([40, 150, 3], [0.25])):
        X, Y = engine_problem("squared_error", 70, units[0], units[-1], dtype)
        gpu, cpu = trainers(cuda_engine, dtype, units, hidden, "squared_error", "",
                            {**options, "dropout": dropout})
        p0 = np.random.default_rng(4).uniform(-0.4, 0.4, cpu.n_params).astype(dtype)
        assert_loss_grad_and_predict_agree(gpu, cpu, X, Y, None, p0)  # (no dropout there)
        order = np.random.default_rng(5).permutation(70).astype(np.int64)
        results = []
        for engine in (gpu, cpu):
            p = p0.copy()
            opt = {"m": np.zeros_like(p), "v": np.zeros_like(p), "t": np.zeros(1, np.int64)}
            losses = []
            for epoch in range(2):
                hyper = dict(solver="adam", batch_size=32, learning_rate=0.01, alpha=1e-3,
                             beta_1=0.9, beta_2=0.999, epsilon=1e-8, momentum=0.9,
                             nesterov=True, dropout_seed=123, epoch=epoch)
                losses.append(engine.run_epoch(X, Y, None, order, p, opt, hyper)["accumulated_loss"])
            results.append((p, losses))
        (p_g, l_g), (p_c, l_c) = results
        np.testing.assert_allclose(l_g, l_c, rtol=1e-9)
        np.testing.assert_allclose(p_g, p_c, rtol=1e-9, atol=1e-11)
        assert not np.allclose(p_c, p0)
