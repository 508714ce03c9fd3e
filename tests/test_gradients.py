"""Finite-difference checks of the engines' gradients, for every hidden activation and every
loss, through the same entry point L-BFGS uses (the full-batch loss and gradient)."""

import numpy as np
import pytest
import scipy.sparse as sp

from fusedmlp import _cpu

from .conftest import engine_problem

ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]
LOSSES = ["squared_error", "poisson", "log_loss", "binary_log_loss"]


def problem(loss, n=23, d=5, n_out=3, seed=0):
    return engine_problem(loss, n, d, n_out, seed=seed)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_matches_finite_differences(activation, loss, sparse, weighted):
    X, Y = problem(loss)
    units = [X.shape[1], 7, 4, Y.shape[1]]
    engine = _cpu.TrainerF64(units, activation, loss, 1)
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
