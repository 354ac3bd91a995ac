"""Every execution path computes the same thing: the scan against a per-example Python loop
over ``cell.step``, reverse against forward on reversed input, time-major against
batch-major, and the three sequential paths (``path="fused"``, ``"autodiff"``, ``"remat"``,
with any ``scan_unroll``) against JAX's derivative of the plain scan, lengths, initial carry and
hidden perturbation included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import RNN, ElmanCell, GRUCell, LSTMCell, unroll
from rnnlab.cells import SEQUENTIAL_PATHS, CoRNNCell, IndRNNCell

B, T, I, H = 4, 9, 3, 5
LENGTHS = np.array([9, 1, 5, 3])
TOL = dict(atol=1e-5, rtol=1e-5)
CELLS = {
    "elman_tanh": ElmanCell(H),
    "elman_relu": ElmanCell(H, activation="relu"),
    "elman_modrelu": ElmanCell(H, activation="modrelu", use_bias=False),  # an elementwise param, b_mod
    "lstm": LSTMCell(H, forget_bias=1.0),
    "gru": GRUCell(H),
    "lstm_nobias": LSTMCell(H, use_bias=False),
    "gru_nobias": GRUCell(H, use_bias=False),
    # (every path of these two against their authors' PyTorch code: tests/test_new_cells.py)
    "indrnn": IndRNNCell(H, t_max=T),  # a diagonal recurrence
    "cornn": CoRNNCell(H, dt=0.2, gamma=1.5, epsilon=2.0),  # a carry (y, z) that is not the output alone
    "hidden1": LSTMCell(1),
}


def setup(cell, seed=0):
    k_p, k_x, k_c = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(k_x, (B, T, I))
    carry0 = jax.tree.map(lambda z: jax.random.normal(k_c, z.shape), cell.initial_carry((B,)))
    return cell.init(k_p, I), x, carry0


def python_loop(cell, params, x_bti, lengths_b, carry0, reverse=False):
    """Reference: each example separately, its valid steps only, with cell.step."""
    outputs, finals = np.zeros(x_bti.shape[:2] + (cell.hidden_size,)), []
    for b in range(x_bti.shape[0]):
        carry = jax.tree.map(lambda a: a[b], carry0)
        steps = range(lengths_b[b])
        for t in reversed(steps) if reverse else steps:
            carry, y = cell.step(params, carry, x_bti[b, t])
            outputs[b, t] = y
        finals.append(carry)
    return outputs, jax.tree.map(lambda *a: np.stack(a), *finals)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("name", CELLS)
def test_scan_equals_python_loop(name, reverse, assert_close):
    cell = CELLS[name]
    params, x, carry0 = setup(cell)
    out, final = unroll(cell, params, x, lengths=LENGTHS, initial_carry=carry0, reverse=reverse)
    ref_out, ref_final = python_loop(cell, params, x, LENGTHS, carry0, reverse)
    assert_close("scan vs loop: outputs", out, ref_out, **TOL)
    for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(ref_final)):
        assert_close("scan vs loop: final carry", got, want, **TOL)
    # padding is exactly zero, not merely small
    mask_bt = np.arange(T)[None, :] < LENGTHS[:, None]
    assert np.all(np.asarray(out)[~mask_bt] == 0.0)


@pytest.mark.parametrize("layout", ["reverse_vs_flipped", "time_major_vs_batch_major"])
@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru"])
def test_layouts_agree(name, layout, assert_close):
    cell = CELLS[name]
    params, x, _ = setup(cell)
    if layout == "reverse_vs_flipped":
        got, final = unroll(cell, params, x, reverse=True)
        want, want_final = unroll(cell, params, jnp.flip(x, axis=1))
        want = jnp.flip(want, axis=1)
    else:
        got, final = unroll(cell, params, jnp.swapaxes(x, 0, 1), lengths=LENGTHS, time_major=True)
        got = jnp.swapaxes(got, 0, 1)
        want, want_final = unroll(cell, params, x, lengths=LENGTHS)
    assert_close(f"{layout}: outputs", got, want, **TOL)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(want_final)):
        assert_close(f"{layout}: final carry", a, b, **TOL)


@pytest.mark.parametrize(("backward", "unroll_steps"), [("fused", 1), ("remat", 1), ("fused", 3)])
@pytest.mark.parametrize(("bidirectional", "lengths"), [(False, None), (True, LENGTHS)], ids=["uni-full", "bi-lengths"])
@pytest.mark.parametrize(
    "name", ["elman_tanh", "elman_relu", "elman_modrelu", "lstm", "gru", "lstm_nobias", "gru_nobias"]
)
def test_gradient_paths_equal_jax_derivative(name, bidirectional, lengths, backward, unroll_steps, assert_close):
    """Loss, and gradients w.r.t. params, input, initial carry and the hidden perturbation
    (``dL/dh_t``, the diagnostics' quantity) of a two-layer stack, against ``"autodiff"``."""
    cell = CELLS[name]
    layers = {kind: RNN(cell, num_layers=2, bidirectional=bidirectional, path=kind, scan_unroll=unroll_steps)
              for kind in ("autodiff", backward)}  # fmt: skip
    reference = layers["autodiff"]
    params = reference.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    carry0 = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape), reference.initial_carry(B))
    eps = 0.1 * jax.random.normal(jax.random.key(4), (2 * reference.num_directions, B, T, H))
    r_out = jax.random.normal(jax.random.key(3), (B, T, reference.output_size))

    def loss(params, x, carry0, eps, kind):
        out, final = layers[kind].apply(params, x, lengths, carry0, hidden_perturbation=eps)
        return jnp.sum(out * r_out) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(final))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)), static_argnums=4)
    (got, got_grads), (want, want_grads) = (
        grad(params, x, carry0, eps, backward),
        grad(params, x, carry0, eps, "autodiff"),
    )
    assert_close(f"{backward} vs autodiff: loss", got, want, **TOL)
    for what, a, b in zip(("params", "input", "initial carry", "perturbation"), got_grads, want_grads):
        for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            assert_close(f"{backward} vs autodiff: gradient w.r.t. {what}", leaf_a, leaf_b, atol=1e-5, rtol=1e-4)


def test_each_path_name_is_one_path_and_others_are_refused():
    assert LSTMCell(H).paths[0] == "fused" and set(SEQUENTIAL_PATHS) == {
        "fused",
        "autodiff",
        "remat",
        "newton",
        "quasi_newton",
    }
    with pytest.raises(
        ValueError,
        match="path must be one of 'fused', 'autodiff', 'remat', 'newton', 'quasi_newton', 'sequential', 'associative'",
    ):
        RNN(GRUCell(H), path="manual")
    params, x, _ = setup(CELLS["gru"])
    with pytest.raises(ValueError, match="path must be one of"):
        unroll(CELLS["gru"], params, x, path="checkpoint")
    with pytest.raises(
        ValueError,
        match="path='associative' does not apply to GRUCell: it runs 'fused', 'autodiff', 'remat', 'newton', 'quasi_newton'",
    ):
        RNN(GRUCell(H), path="associative")
    # the default layer runs the fused custom VJP; "remat" runs a checkpointed step instead
    program = lambda path: str(jax.make_jaxpr(lambda p: unroll(CELLS["gru"], p, x, path=path))(params))
    assert "custom_vjp_call" in program("fused")
    assert "custom_vjp_call" not in program("remat") and "remat" in program("remat")


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_forward_mode_needs_autodiff_and_agrees(name, assert_close):
    """jax.jacfwd cannot see through a custom VJP; the autodiff path gives it, equal to jacrev of the default."""
    params = RNN(CELLS[name]).init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    apply = lambda kind: lambda x: RNN(CELLS[name], path=kind).apply(params, x)[0][:, -1].sum()
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jacfwd(apply("fused"))(x)
    assert_close(
        "jacfwd(autodiff) vs jacrev(fused)",
        jax.jacfwd(apply("autodiff"))(x),
        jax.jacrev(apply("fused"))(x),
        atol=1e-6,
        rtol=1e-5,
    )
