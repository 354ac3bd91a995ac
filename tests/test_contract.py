"""The smallest cell contract: a cell of three methods (``init``, ``initial_carry``, ``step``)
runs every path but ``fused`` with a Python loop over its own ``step``'s numbers, stacked,
bidirectional and with lengths, through the diagnostics; and the contract's edges (class-level
switches, a step of the wrong width, the diagnostics' arguments) are one line each."""

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import RNN, cells, diagnostics, unroll
from rnnlab.cells import DenseCell
from rnnlab.experiment.models import parse_option
from rnnlab.newton import NewtonOptions


class JanetState(NamedTuple):
    h: jax.Array
    c: jax.Array


@dataclasses.dataclass(frozen=True)
class JanetCell:
    """JANET (van der Westhuizen & Lasenby 2018), a forget-gate-only LSTM, in three methods:
    ``f = σ(U_f h + W_f x + b_f)``, ``c = f c + (1 - f) tanh(U_c h + W_c x + b_c)``, ``h = c``;
    the carry a NamedTuple with a field ``h`` (no carry_hidden needed)."""

    hidden_size: int

    def init(self, key, input_size):
        k_u, k_w = jax.random.split(key)
        H = self.hidden_size
        return {
            "u": jax.random.normal(k_u, (2 * H, H)) / jnp.sqrt(H),
            "w": jax.random.normal(k_w, (2 * H, input_size)),
            "b": jnp.concatenate([jnp.ones(H), jnp.zeros(H)]),
        }

    def initial_carry(self, batch_shape):
        zeros = jnp.zeros((*batch_shape, self.hidden_size))
        return JanetState(zeros, zeros)

    def step(self, params, carry, x):
        z_f, z_c = jnp.split(carry.h @ params["u"].T + x @ params["w"].T + params["b"], 2, axis=-1)
        f = jax.nn.sigmoid(z_f)
        c = f * carry.c + (1 - f) * jnp.tanh(z_c)
        return JanetState(c, c), c


B, T, I, H = 3, 7, 2, 4
LENGTHS = np.array([7, 2, 5])
STEP_PATHS = ("autodiff", "remat", "newton", "quasi_newton")


def loop(cell, params, x_bti, lengths=None, reverse=False):
    """The reference: a Python loop over ``cell.step``, each sequence alone, its valid prefix only."""
    outputs, finals = [], []
    for b in range(x_bti.shape[0]):
        n = T if lengths is None else int(lengths[b])
        carry, ys = cell.initial_carry((1,)), []
        steps = range(n - 1, -1, -1) if reverse else range(n)
        for t in steps:
            carry, y = cell.step(params, carry, x_bti[b : b + 1, t])
            ys.append(y[0])
        ys = ys[::-1] if reverse else ys
        outputs.append(jnp.concatenate([jnp.stack(ys), jnp.zeros((T - n, H))]))
        finals.append(carry)
    return jnp.stack(outputs), jax.tree.map(lambda *c: jnp.concatenate(c), *finals)


@pytest.fixture(scope="module")
def janet():
    with jax.enable_x64():
        cell = JanetCell(H)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), I))
        x = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
        yield cell, params, x


@pytest.mark.parametrize("path", STEP_PATHS)
@pytest.mark.parametrize("reverse", [False, True])
def test_a_three_method_cell_equals_a_python_loop_on_every_step_path(janet, path, reverse, assert_close):
    cell, params, x = janet
    with jax.enable_x64():
        want_y, want_final = loop(cell, params, x, LENGTHS, reverse)
        y, final = unroll(cell, params, x, lengths=LENGTHS, reverse=reverse, path=path)
        assert_close(f"three-method cell {path} vs loop: outputs", y, want_y, atol=1e-10, rtol=1e-10)
        assert_close(f"three-method cell {path} vs loop: final carry", final.h, want_final.h, atol=1e-10, rtol=1e-10)

        # gradients with respect to the params and the inputs, against the loop's
        def loss(run):
            return lambda p, x: jnp.sum(jnp.sin(run(p, x)[0])) + jnp.sum(run(p, x)[1].c ** 2)

        got = jax.grad(loss(lambda p, x: unroll(cell, p, x, lengths=LENGTHS, reverse=reverse, path=path)), (0, 1))
        want = jax.grad(loss(lambda p, x: loop(cell, p, x, LENGTHS, reverse)), (0, 1))
        for g, w in zip(jax.tree.leaves(got(params, x)), jax.tree.leaves(want(params, x))):
            assert_close(f"three-method cell {path} vs loop: gradients", g, w, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("path", ["autodiff", "newton"])
def test_a_three_method_cell_stacks_bidirectionally(janet, path, assert_close):
    cell, params, x = janet
    with jax.enable_x64():
        options = NewtonOptions(max_iter=T) if path == "newton" else None
        layer = RNN(cell, num_layers=2, bidirectional=True, path=path, newton_options=options)
        stack = layer.init(jax.random.key(2), I, jnp.float64)
        y, h_n = layer.apply(stack, x, lengths=LENGTHS)
        # layer by layer, direction by direction, with the loop
        fwd, f_fwd = loop(cell, stack["l0"]["fwd"], x, LENGTHS)
        bwd, f_bwd = loop(cell, stack["l0"]["bwd"], x, LENGTHS, reverse=True)
        x1 = jnp.concatenate([fwd, bwd], axis=-1)
        top = jnp.concatenate(
            [loop(cell, stack["l1"]["fwd"], x1, LENGTHS)[0], loop(cell, stack["l1"]["bwd"], x1, LENGTHS, True)[0]], -1
        )
        assert_close(f"three-method stack {path}: outputs", y, top, atol=1e-10, rtol=1e-10)
        assert_close(f"three-method stack {path}: h_n[0]", h_n.h[0], f_fwd.h, atol=1e-10, rtol=1e-10)
        assert_close(f"three-method stack {path}: h_n[1]", h_n.h[1], f_bwd.h, atol=1e-10, rtol=1e-10)


def test_a_three_method_cell_runs_the_diagnostics(janet):
    cell, params, x = janet
    with jax.enable_x64():
        layer = RNN(cell)
        stack = {"l0": {"fwd": params}}
        grad_t, jac_t = diagnostics.gradient_profile(layer, stack, lambda out: jnp.sum(out[:, -1] ** 2), x)
        assert grad_t.shape == jac_t.shape == (T,) and bool(jnp.all(grad_t > 0))
        exponents = diagnostics.layer_lyapunov_exponents(layer, stack, x, count=2)
        assert exponents.shape == (2,) and bool(jnp.all(jnp.isfinite(exponents)))
        radii, _ = diagnostics.gate_spectra(layer, jax.tree.map(lambda a: a[None], stack))
        assert np.isnan(radii).all()  # no recurrent_blocks: NaN, not a guess


def test_the_fused_path_names_what_a_three_method_cell_lacks():
    with pytest.raises(
        ValueError, match=r"path='fused' needs the cell's projections .* JanetCell lacks project_inputs"
    ):
        RNN(JanetCell(H), path="fused")


def test_a_step_of_the_wrong_width_is_one_line_naming_the_cell():
    @dataclasses.dataclass(frozen=True)
    class Wide(JanetCell):
        def step(self, params, carry, x):
            carry, y = super().step(params, carry, x)
            return JanetState(jnp.concatenate([carry.h, carry.h], -1), carry.c), y

    cell = Wide(H)
    with pytest.raises(ValueError, match=r"Wide.step must return a carry shaped like the one it took: took "):
        unroll(cell, cell.init(jax.random.key(0), I), jnp.zeros((B, T, I)), path="autodiff")


def test_class_switches_are_classvars_of_the_right_type():
    with pytest.raises(TypeError, match=r"Gated.num_gates is a class-level constant, not an option"):

        @dataclasses.dataclass(frozen=True)
        class Gated(DenseCell):
            num_gates: int = 2

    with pytest.raises(TypeError, match=r"Summed.sums_projections must be a bool, got 1"):

        @dataclasses.dataclass(frozen=True)
        class Summed(DenseCell):
            sums_projections: ClassVar[bool] = 1

    @dataclasses.dataclass(frozen=True)
    class TwoGates(DenseCell):
        num_gates: ClassVar[int] = 2

    assert TwoGates(3).init(jax.random.key(0), 2)["w_hh"].shape == (6, 3)


def test_options_are_parsed_by_their_declared_type():
    assert parse_option("num_layers", "3", "int") == 3 and isinstance(parse_option("n", "3", "int"), int)
    assert parse_option("use_bias", "false", "bool") is False
    assert parse_option("activation", "relu", "str") == "relu"
    assert parse_option("t_max", "none", "float | None") is None
    assert parse_option("alpha", "0.5", "float") == 0.5 and parse_option("alpha", "2", float) == 2.0
    with pytest.raises(ValueError, match=r"num_layers takes int \(declared int\), got '2.5'"):
        parse_option("num_layers", "2.5", "int")


def test_the_diagnostics_say_what_they_take():
    cell = JanetCell(H)
    params = cell.init(jax.random.key(0), I)
    with pytest.raises(TypeError, match=r"gate_spectra takes a layer .* got a JanetCell: wrap it, rnnlab.RNN"):
        diagnostics.gate_spectra(cell, params)
    with pytest.raises(ValueError, match=r"gradient_profile takes a one-layer forward layer .* bidirectional=True"):
        diagnostics.gradient_profile(RNN(cell, bidirectional=True), {}, jnp.sum, jnp.zeros((B, T, I)))


def test_the_contract_defaults():
    cell = JanetCell(H)
    carry = cells.initial_carry(cell, (2,), jnp.float16)
    assert carry.h.dtype == jnp.float16 and cells.carry_hidden(cell, carry) is carry.h
    assert cells.paths(cell) == cells.STEP_PATHS and cells.recurrent_blocks(cell, {}) is None
    specs = cells.param_specs(cell, I)
    assert specs["w"].shape == (2 * H, I) and cells.input_size_of(cell, {}) is None


def test_step_only_hides_the_fused_pieces_and_the_jacobian_structure():
    """``cells.StepOnly``: a built-in cell seen as a user's three-method cell (no fused path, the
    Newton paths' jax.jacfwd), with the same numbers on the paths both take."""
    gru = cells.GRUCell(3)
    assert cells.is_fused(gru) and cells.has_jacobian(gru)
    plain = cells.StepOnly(gru)
    assert not cells.is_fused(plain) and not cells.has_jacobian(plain) and plain == cells.StepOnly(cells.GRUCell(3))
    params = plain.init(jax.random.key(0), 2)
    x = jax.random.normal(jax.random.key(1), (2, 5, 2))
    ours, _ = unroll(plain, params, x, path="autodiff")
    theirs, _ = unroll(gru, params, x, path="autodiff")
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-6, atol=1e-6)  # the same step, other order
