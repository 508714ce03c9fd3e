"""The engine's activations and losses against PyTorch's definitions (torch.nn.functional), on
random networks in float64: the loss and every parameter's gradient, through the full-batch
entry point L-BFGS uses. The lists come from the engine's registries, so a new activation or loss
is checked here as soon as it has a PyTorch counterpart below."""

import numpy as np
import pytest

from fusedmlp import _cpu

from .conftest import engine_problem

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_ACTIVATIONS = {
    "identity": lambda z: z,
    "logistic": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "softplus": F.softplus,
    "selu": F.selu,
    "exp": torch.exp,
    "leaky_relu": lambda z: F.leaky_relu(z, negative_slope=ACTIVATION_PARAMS["negative_slope"]),
    "elu": lambda z: F.elu(z, alpha=ACTIVATION_PARAMS["elu_alpha"]),
    "gelu": F.gelu,
    "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
    "silu": F.silu,
    "heaviside": lambda z: torch.heaviside(z, torch.ones_like(z)),
    "sign": torch.sign,
}
# activations with a parameter, at a value other than PyTorch's default
ACTIVATION_PARAMS = {"negative_slope": 0.23, "elu_alpha": 0.6}
REGISTRY = {a["name"]: a for a in _cpu.activations()}


def torch_loss(loss, a, y, params):
    """The engine's reported loss, in PyTorch: scikit-learn's scale for its losses, PyTorch's
    "mean" (over samples and outputs) for the others."""
    if loss == "squared_error":
        return 0.5 * F.mse_loss(a, y)
    if loss == "poisson":  # half the Poisson deviance, summed over outputs, mean over samples
        dev = torch.xlogy(y, y) - torch.xlogy(y, a) - y + a
        return dev.sum(dim=1).mean()
    if loss == "log_loss":  # a holds the logits here: softmax cross-entropy, mean over samples
        return -(y * F.log_softmax(a, dim=1)).sum(dim=1).mean()
    if loss == "binary_log_loss":  # logits; summed over outputs, mean over samples
        return F.binary_cross_entropy_with_logits(a, y, reduction="none").sum(dim=1).mean()
    if loss == "absolute_error":
        return F.l1_loss(a, y)
    if loss == "huber":
        return F.huber_loss(a, y, delta=params["huber_delta"])
    if loss == "quantile":
        r = y - a
        q = params["quantile"]
        return torch.maximum(q * r, (q - 1) * r).mean()
    raise KeyError(loss)


HIDDEN = [a["name"] for a in _cpu.activations() if a["hidden"] and a["derivative"] != "none"]
STEPS = [a["name"] for a in _cpu.activations() if a["derivative"] == "none"]
HEADS = [(loss["name"], a["name"]) for loss in _cpu.losses() if loss["regression"]
         for a in _cpu.activations() if (a["positive"] or not loss["positive"])
         and a["param"] is None and a["derivative"] != "none"]
HEADS += [(loss["name"], "") for loss in _cpu.losses() if not loss["regression"]]
PARAMS = {"huber": {"huber_delta": 0.35}, "quantile": {"quantile": 0.7}}


def test_every_activation_has_a_reference():
    assert set(a["name"] for a in _cpu.activations()) <= set(TORCH_ACTIVATIONS)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("loss,out_activation", HEADS)
def test_loss_and_gradients_equal_pytorch(hidden, loss, out_activation):
    n_out = 3 if loss == "log_loss" else 2
    X, Y = engine_problem(loss, 37, 5, n_out, seed=3)
    units = [5, 8, 6, n_out]
    params = PARAMS.get(loss, {})
    options = dict(params)
    if REGISTRY[hidden]["param"] is not None:
        options[REGISTRY[hidden]["param"]] = ACTIVATION_PARAMS[REGISTRY[hidden]["param"]]
    engine = _cpu.TrainerF64(units, hidden, loss, 1, out_activation, options)
    flat = np.random.default_rng(7).uniform(-0.7, 0.7, engine.n_params)
    grad = np.empty_like(flat)
    value = engine.loss_grad(X, Y, None, flat, 0.0, grad)

    # the same network in PyTorch, from the same flat buffer (W0, b0, W1, b1, ...)
    tensors, start = [], 0
    for fan_in, fan_out in zip(units[:-1], units[1:]):
        W = torch.tensor(flat[start:start + fan_in * fan_out].reshape(fan_in, fan_out), requires_grad=True)
        start += fan_in * fan_out
        b = torch.tensor(flat[start:start + fan_out], requires_grad=True)
        start += fan_out
        tensors += [W, b]
    h = torch.tensor(X)
    for layer in range(len(units) - 1):
        z = h @ tensors[2 * layer] + tensors[2 * layer + 1]
        last = layer == len(units) - 2
        # (the classification losses take the logits, as PyTorch's do)
        h = z if last and not out_activation else TORCH_ACTIVATIONS[out_activation if last else hidden](z)
    reference = torch_loss(loss, h, torch.tensor(Y), params)
    reference.backward()
    expected = np.concatenate([t.grad.numpy().ravel() for t in tensors])
    if loss == "squared_error":
        # scikit-learn's gradient is that of the sum over outputs (its loss, of their mean)
        expected *= units[-1]
    assert value == pytest.approx(reference.item(), rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("step", STEPS)
def test_step_activations_predict_as_pytorch(step):
    """The threshold units, on inputs that include exact zeros (where heaviside is 1 and sign
    is 0, as torch.heaviside(z, 1) and torch.sign)."""
    units = [4, 6, 2]
    engine = _cpu.TrainerF64(units, step, "squared_error", 1)
    rng = np.random.default_rng(5)
    flat = rng.integers(-2, 3, engine.n_params).astype(np.float64)
    X = rng.integers(-2, 3, (50, 4)).astype(np.float64)
    W0 = torch.tensor(flat[:24].reshape(4, 6))
    b0 = torch.tensor(flat[24:30])
    W1 = torch.tensor(flat[30:42].reshape(6, 2))
    b1 = torch.tensor(flat[42:])
    h = TORCH_ACTIVATIONS[step](torch.tensor(X) @ W0 + b0)
    np.testing.assert_array_equal(engine.predict(X, flat), (h @ W1 + b1).numpy())
