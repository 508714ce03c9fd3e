"""Finite-difference checks of the engines' gradients, for every hidden activation, every loss
and every head (loss with an output activation), through the same entry point L-BFGS uses (the
full-batch loss and gradient). The lists come from the engine's registries."""

import numpy as np
import pytest
import scipy.sparse as sp

from fusedmlp import _cpu

from .conftest import engine_problem

REGISTRY = {a["name"]: a for a in _cpu.activations()}
# every hidden activation gradients can train (the steps, derivative "none", cannot)
ACTIVATIONS = [a["name"] for a in REGISTRY.values() if a["hidden"] and a["derivative"] != "none"]
STEPS = [a["name"] for a in REGISTRY.values() if a["derivative"] == "none"]
LOSSES = [loss["name"] for loss in _cpu.losses()]
OUTPUTS = [a["name"] for a in REGISTRY.values() if a["param"] is None and a["derivative"] != "none"]
# Non-canonical heads: regression losses after another element-wise output activation, whose
# gradient is dL/da * f'(z) instead of the fused (a - y)
HEADS = [(loss["name"], a) for loss in _cpu.losses() if loss["regression"]
         for a in OUTPUTS if a != loss["canonical_output"]
         and (REGISTRY[a]["positive"] or not loss["positive"])]
# activations with a parameter, at a value other than the default
ACTIVATION_PARAMS = {"negative_slope": 0.23, "elu_alpha": 0.6}


def problem(loss, n=23, d=5, n_out=3, seed=0):
    return engine_problem(loss, n, d, n_out, seed=seed)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_matches_finite_differences(activation, loss, sparse, weighted):
    check_gradient(activation, loss, "", sparse, weighted)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss,out_activation", HEADS)
def test_non_canonical_heads_match_finite_differences(loss, out_activation, weighted):
    check_gradient("tanh", loss, out_activation, False, weighted)


@pytest.mark.parametrize("activation", ["gelu", "tanh", "relu"])
def test_one_input_one_output_network_matches_finite_differences(activation):
    # Products of depth one (the GEMM's rank_one_rows): the forward of a one-input first layer,
    # its pre-activations kept for gelu across several write-back tiles (70 units: float64 tiles
    # of 32 columns start at 0, 32 and 64), and the data gradient of the one-unit output layer
    check_gradient(activation, "squared_error", "", False, True, d=1, hidden=(70,), n_out=1)


def test_invalid_heads_and_activations_are_errors():
    units = [3, 4, 2]
    with pytest.raises(ValueError, match="cannot follow"):
        _cpu.TrainerF64(units, "relu", "log_loss", 1, "identity")
    with pytest.raises(ValueError, match="cannot follow the 'softmax'"):
        _cpu.TrainerF64(units, "relu", "squared_error", 1, "softmax")
    # the Poisson deviance needs positive outputs
    for output in ("identity", "tanh", "relu"):
        with pytest.raises(ValueError, match=f"poisson loss cannot follow the '{output}'"):
            _cpu.TrainerF64(units, "relu", "poisson", 1, output)
    with pytest.raises(ValueError, match="'exp' is not a hidden activation"):
        _cpu.TrainerF64(units, "exp", "squared_error", 1)
    with pytest.raises(ValueError, match="unknown activation"):
        _cpu.TrainerF64(units, "swish", "squared_error", 1)
    with pytest.raises(ValueError, match="unknown loss"):
        _cpu.TrainerF64(units, "relu", "hinge", 1)
    with pytest.raises(ValueError, match="huber_delta must be > 0"):
        _cpu.TrainerF64(units, "relu", "huber", 1, "", {"huber_delta": 0.0})
    with pytest.raises(ValueError, match="quantile must be in"):
        _cpu.TrainerF64(units, "relu", "quantile", 1, "", {"quantile": 1.0})
    with pytest.raises(KeyError, match="neither a loss parameter"):
        _cpu.TrainerF64(units, "relu", "huber", 1, "", {"delta": 0.5})
    # a parameter of another activation is not this one's
    with pytest.raises(KeyError, match="neither a loss parameter"):
        _cpu.TrainerF64(units, "relu", "squared_error", 1, "", {"negative_slope": 0.1})
    with pytest.raises(ValueError, match="negative_slope must be >= 0"):
        _cpu.TrainerF64(units, "leaky_relu", "squared_error", 1, "", {"negative_slope": -0.1})
    with pytest.raises(ValueError, match="elu_alpha must be > 0"):
        _cpu.TrainerF64(units, "elu", "squared_error", 1, "", {"elu_alpha": 0.0})
    for rates in ([1.0], [-0.1], [0.1, 0.2, 0.3], [float("nan")]):
        with pytest.raises(ValueError, match="dropout"):
            _cpu.TrainerF64(units, "relu", "squared_error", 1, "", {"dropout": rates})
    # outputs have no parameter, and a gradient
    for output in ("leaky_relu", "elu", "heaviside", "sign"):
        with pytest.raises(ValueError, match="cannot follow"):
            _cpu.TrainerF64(units, "relu", "squared_error", 1, output)
    with pytest.raises(ValueError, match="hidden activation"):
        _cpu.gemm_f64(np.ones((2, 3)), np.ones((3, 4)), epilogue="bias_activation",
                      activation="exp", bias=np.zeros(4))


def test_every_epoch_option_is_required():
    engine = _cpu.TrainerF64([3, 4, 1], "relu", "squared_error", 1)
    X = np.ones((5, 3))
    Y = np.ones((5, 1))
    p = np.zeros(engine.n_params)
    opt = {"m": np.zeros_like(p), "v": np.zeros_like(p), "t": np.zeros(1, np.int64)}
    hyper = dict(solver="adam", batch_size=2, learning_rate=0.01, alpha=0.0, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, momentum=0.9, nesterov=True, dropout_seed=0,
                 epoch=0)
    engine.run_epoch(X, Y, None, np.arange(5, dtype=np.int64), p, opt, hyper)
    for missing in hyper:
        partial = {k: v for k, v in hyper.items() if k != missing}
        with pytest.raises(KeyError, match=missing):
            engine.run_epoch(X, Y, None, np.arange(5, dtype=np.int64), p, opt, partial)


# parameters that put both sides of the kinks in play (residuals are mostly below 1)
LOSS_PARAMS = {"huber": {"huber_delta": 0.3}, "quantile": {"quantile": 0.3}}


def engine_options(activation, loss):
    options = dict(LOSS_PARAMS.get(loss, {}))
    param = REGISTRY[activation]["param"]
    if param is not None:
        options[param] = ACTIVATION_PARAMS[param]
    return options


def check_gradient(activation, loss, out_activation, sparse, weighted, d=5, hidden=(7, 4), n_out=3):
    X, Y = problem(loss, d=d, n_out=n_out)
    units = [X.shape[1], *hidden, Y.shape[1]]
    engine = _cpu.TrainerF64(units, activation, loss, 1, out_activation,
                             engine_options(activation, loss))
    rng = np.random.default_rng(1)
    params = rng.uniform(-0.6, 0.6, engine.n_params)
    sw = rng.uniform(0.2, 2.0, X.shape[0]) if weighted else None
    if sparse:
        X[np.abs(X) < 0.5] = 0
        X = sp.csr_matrix(X)
        from fusedmlp._engine import as_engine_input

        Xe = as_engine_input(X)
    else:
        Xe = X
    alpha = 0.3
    grad = np.empty_like(params)
    engine.loss_grad(Xe, Y, sw, params, alpha, grad)

    def f(p):
        return engine.loss_grad(Xe, Y, sw, p, alpha, np.empty_like(p))

    h = 1e-6
    numeric = np.empty_like(params)
    for i in range(params.size):
        e = np.zeros_like(params)
        e[i] = h
        numeric[i] = (f(params + e) - f(params - e)) / (2 * h)
    if loss == "squared_error":
        # scikit-learn's squared-error loss averages over the outputs while its gradient
        # (delta = output - y) sums over them; kept for parity, see the estimator docs. The
        # L2 term is consistent, so only the data term is scaled.
        l2 = np.zeros_like(params)
        start = 0
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            l2[start:start + fan_in * fan_out] = params[start:start + fan_in * fan_out]
            start += fan_in * fan_out + fan_out
        l2 *= alpha / (sw.sum() if weighted else X.shape[0])
        numeric = Y.shape[1] * (numeric - l2) + l2
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss", LOSSES)
def test_float32_gradient_matches_float64(loss):
    X, Y = problem(loss, n=40)
    units = [X.shape[1], 9, Y.shape[1]]
    p64 = np.random.default_rng(2).uniform(-0.5, 0.5, _cpu.TrainerF64(units, "tanh", loss, 1).n_params)
    g64 = np.empty_like(p64)
    g32 = np.empty(p64.size, np.float32)
    l64 = _cpu.TrainerF64(units, "tanh", loss, 1).loss_grad(X, Y, None, p64, 0.1, g64)
    l32 = _cpu.TrainerF32(units, "tanh", loss, 1).loss_grad(
        X.astype(np.float32), Y.astype(np.float32), None, p64.astype(np.float32), 0.1, g32)
    assert l32 == pytest.approx(l64, rel=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("step", STEPS)
def test_step_activations_predict_but_do_not_train(step):
    """heaviside and sign run in prediction only: the training entry points refuse them."""
    units = [2, 3, 1]
    engine = _cpu.TrainerF64(units, step, "squared_error", 1)
    params = np.random.default_rng(0).uniform(-1, 1, engine.n_params)
    X = np.random.default_rng(1).normal(size=(6, 2))
    W0, b0 = params[:6].reshape(2, 3), params[6:9]
    W1, b1 = params[9:12].reshape(3, 1), params[12:]
    f = {"heaviside": lambda z: np.heaviside(z, 1.0), "sign": np.sign}[step]
    np.testing.assert_allclose(engine.predict(X, params), f(X @ W0 + b0) @ W1 + b1, rtol=1e-14)
    with pytest.raises(ValueError, match="no useful gradient"):
        engine.loss_grad(X, np.zeros((6, 1)), None, params, 0.0, np.empty_like(params))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_activations_match_float64(activation):
    """float32 runs its own arithmetic for some activations (gelu's erf and exp in plain,
    vectorised arithmetic, math.h): the loss and gradient stay within float32's rounding of
    float64's, pre-activations from -6 to 6 included."""
    X, Y = problem("squared_error", n=60)
    units = [X.shape[1], 16, Y.shape[1]]
    options = engine_options(activation, "squared_error")
    p64 = np.random.default_rng(3).uniform(-1.5, 1.5, _cpu.TrainerF64(units, activation, "squared_error", 1, "", options).n_params)
    g64 = np.empty_like(p64)
    g32 = np.empty(p64.size, np.float32)
    l64 = _cpu.TrainerF64(units, activation, "squared_error", 1, "", options).loss_grad(X, Y, None, p64, 0.1, g64)
    l32 = _cpu.TrainerF32(units, activation, "squared_error", 1, "", options).loss_grad(
        X.astype(np.float32), Y.astype(np.float32), None, p64.astype(np.float32), 0.1, g32)
    assert l32 == pytest.approx(l64, rel=2e-5)
    np.testing.assert_allclose(g32, g64, rtol=2e-4, atol=2e-5)
