"""The papers' models, piece by piece, against independent references: modReLU (value and
finite-difference gradient), expRNN as lezcano/expRNN builds it, parameter groups against
torch's RMSprop with two groups (the authors' optimiser), and W_hh kept orthogonal by RMSprop."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from rnnlab import RNN, ElmanCell
from rnnlab.cells import modrelu
from rnnlab.parametrizations import Orthogonal
from rnnlab.train import OptimConfig, init_state, make_optimizer, make_train_step
from rnnlab.zoo import make_layer


def test_modrelu_values_follow_the_definition():
    z = np.array([-2.0, -0.3, -0.05, 0.0, 0.05, 0.3, 2.0])
    b = np.array([0.1, -0.5, -0.01, 0.2, 0.0, -0.1, -3.0])
    # sign(z) * max(|z| + b, 0), written out case by case
    want = [-2.1, 0.0, -0.04, 0.0, 0.05, 0.2, 0.0]
    np.testing.assert_allclose(modrelu(jnp.asarray(z), jnp.asarray(b)), want, atol=1e-7)


def test_modrelu_cell_gradient_matches_finite_differences(assert_close):
    """Every parameter of a modReLU Elman layer, ``b_mod`` included, through the default (fused) backward."""
    with jax.enable_x64(True):
        layer = RNN(ElmanCell(4, activation="modrelu", use_bias=False))
        params = layer.init(jax.random.key(0), 3, jnp.float64)
        # a bias large enough that some units sit at relu's kink would make the FD meaningless: keep |z| + b away from 0
        params["l0"]["fwd"]["b_mod"] = jnp.array([0.05, -0.02, 0.1, 0.0])
        x = jax.random.normal(jax.random.key(1), (2, 6, 3), jnp.float64)
        weights = jax.random.normal(jax.random.key(2), (2, 6, 4), jnp.float64)
        flat, unravel = ravel_pytree(params)
        loss = jax.jit(lambda v: jnp.sum(layer.apply(unravel(v), x)[0] * weights))
        grad = np.asarray(jax.grad(loss)(flat))
        eps = 1e-6
        fd = [
            (float(loss(flat.at[i].add(eps))) - float(loss(flat.at[i].add(-eps)))) / (2 * eps) for i in range(flat.size)
        ]
        assert_close("modReLU layer gradient vs finite differences", grad, fd, atol=1e-7, rtol=1e-6)
        assert np.all(np.asarray(unravel(jnp.asarray(grad))["l0"]["fwd"]["b_mod"]) != 0)


def test_exprnn_is_the_authors_model():
    """lezcano/expRNN orthogonal.py: input kernel without bias (kaiming_normal), no hidden bias,
    modReLU with b ~ U(-0.01, 0.01), the recurrent kernel expm of a Henaff-initialised generator."""
    H, I = 190, 10
    layer = make_layer("exprnn", H)
    assert isinstance(layer, Orthogonal) and layer.cell.activation == "modrelu"
    params = layer.init(jax.random.key(0), I)["l0"]["fwd"]
    assert set(params) == {"w_ih", "a_hh", "b_mod"}
    b = np.asarray(params["b_mod"])
    assert b.min() >= -0.01 and b.max() <= 0.01 and b.std() > 0.004
    w_ih = np.asarray(params["w_ih"])
    assert abs(w_ih.std() - math.sqrt(2 / I)) < 0.05 * math.sqrt(2 / I)  # kaiming_normal, fan_in = I
    w_hh = np.asarray(layer.materialize({"l0": {"fwd": params}})["l0"]["fwd"]["w_hh"])
    np.testing.assert_allclose(w_hh @ w_hh.T, np.eye(H), atol=1e-5)
    # Henaff's init: 2x2 rotations, so |eig| = 1 and the eigen-angles are the U(-pi, pi) draws
    assert np.count_nonzero(np.asarray(params["a_hh"])) == H // 2


def torch_rmsprop_two_groups(params, grads_fn, lr, lr_orth, alpha, steps):
    """The authors' loop: torch.optim.RMSprop on the other params and another on the generator."""
    torch = pytest.importorskip("torch")
    tensors = {k: torch.tensor(np.asarray(v), dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    rest = [t for k, t in tensors.items() if k != "a_hh"]
    optims = [
        torch.optim.RMSprop(rest, lr=lr, alpha=alpha),
        torch.optim.RMSprop([tensors["a_hh"]], lr=lr_orth, alpha=alpha),
    ]
    for _ in range(steps):
        grads = grads_fn({k: jnp.asarray(t.detach().numpy()) for k, t in tensors.items()})
        for k, t in tensors.items():
            t.grad = torch.tensor(np.asarray(grads[k]), dtype=torch.float64)
        for opt in optims:
            opt.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


def test_parameter_groups_give_the_generator_its_own_learning_rate(assert_close):
    with jax.enable_x64(True):
        layer = make_layer("exprnn", 6)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), layer.init(jax.random.key(0), 3, jnp.float64))
        x = jax.random.normal(jax.random.key(1), (4, 7, 3), jnp.float64)
        target = jax.random.normal(jax.random.key(2), (4, 7, 6), jnp.float64)
        loss = lambda p: jnp.mean((layer.apply(p, x)[0] - target) ** 2)
        cfg = OptimConfig("rmsprop", 1e-2, clip_norm=0, rmsprop_decay=0.99, group_learning_rates=(("a_hh", 1e-3),))
        opt = make_optimizer(cfg, 10)
        step = jax.jit(make_train_step(lambda p, b, k: (loss(p), {}), opt))
        state = init_state(opt, params, jax.random.key(0))
        for _ in range(5):
            state, _ = step(state, None)
        grads_fn = lambda flat: jax.grad(lambda q: loss({"l0": {"fwd": q}}))(flat)
        want = torch_rmsprop_two_groups(params["l0"]["fwd"], grads_fn, 1e-2, 1e-3, 0.99, 5)
        for name, value in state.params["l0"]["fwd"].items():
            assert_close(f"RMSprop with groups vs torch: {name}", value, want[name], atol=1e-10, rtol=1e-8)
        # and the group matters: one learning rate for all moves the generator 10x further
        one_lr = make_optimizer(OptimConfig("rmsprop", 1e-2, clip_norm=0, rmsprop_decay=0.99), 10)
        step_one = jax.jit(make_train_step(lambda p, b, k: (loss(p), {}), one_lr))
        state_one = init_state(one_lr, params, jax.random.key(0))
        state_one, _ = step_one(state_one, None)
        moved = lambda s: float(jnp.max(jnp.abs(s.params["l0"]["fwd"]["a_hh"] - params["l0"]["fwd"]["a_hh"])))
        first = init_state(opt, params, jax.random.key(0))
        first, _ = step(first, None)
        assert moved(state_one) == pytest.approx(10 * moved(first), rel=1e-6)


def test_w_hh_stays_orthogonal_through_rmsprop():
    """200 RMSprop steps at the paper's learning rates move the generator far; expm keeps W_hh
    orthogonal to float32 round-off, where the same steps on W_hh itself leave the manifold."""
    x = jax.random.normal(jax.random.key(0), (8, 20, 10))
    target = jax.random.normal(jax.random.key(1), (8, 20, 16))
    errors, moved = {}, {}
    for name, layer in {"exprnn": make_layer("exprnn", 16), "plain": make_layer("rnn_orthogonal", 16)}.items():
        loss = lambda p, b, k: (jnp.mean((layer.apply(p, x)[0] - target) ** 2), {})
        cfg = OptimConfig("rmsprop", 1e-3, clip_norm=0, rmsprop_decay=0.99, group_learning_rates=(("a_hh", 1e-2),))
        opt = make_optimizer(cfg, 200)
        params0 = layer.init(jax.random.key(2), 10)
        state = init_state(opt, params0, jax.random.key(0))
        step = jax.jit(make_train_step(loss, opt))
        for _ in range(200):
            state, _ = step(state, None)
        w = layer.materialize(state.params)["l0"]["fwd"]["w_hh"]
        errors[name] = float(jnp.max(jnp.abs(w @ w.T - jnp.eye(16))))
        w0 = layer.materialize(params0)["l0"]["fwd"]["w_hh"]
        moved[name] = float(jnp.max(jnp.abs(w - w0)))
    assert moved["exprnn"] > 0.1, moved
    assert errors["exprnn"] < 1e-5 < 1e-2 < errors["plain"], errors
