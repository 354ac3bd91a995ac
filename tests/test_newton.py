"""The newton and quasi_newton paths (rnnlab.newton) against the sequential scan, finite
differences, and their own promises: the cells' Jacobian structure equals jax.jacfwd's,
ParaRNN's cells make quasi-Newton exact, ELK converges where DEER diverges, convergence is
per sequence and says diverged from slow, and every bad option is one line."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import RNN, ElmanCell, GRUCell, LSTMCell, newton, unroll
from rnnlab.cells import CoRNNCell, IndRNNCell, StepOnly
from rnnlab.newton import NewtonError, NewtonOptions
from rnnlab.pararnn import ParaGRUCell, ParaLSTMCell

NEWTON = ("newton", "quasi_newton")
CELLS = {
    "tanh": lambda: ElmanCell(6),
    "modrelu": lambda: ElmanCell(6, activation="modrelu", use_bias=False),
    "lstm": lambda: LSTMCell(5),
    "gru": lambda: GRUCell(5),
    "indrnn": lambda: IndRNNCell(5, t_max=20),
    "cornn": lambda: CoRNNCell(5),
    "paragru": lambda: ParaGRUCell(4),
    "paralstm": lambda: ParaLSTMCell(4),
}


def scaled_error(actual, expected):
    """``max |a - e|`` over every leaf, relative to the leaf's scale when that exceeds 1."""
    return max(
        float(jnp.max(jnp.abs(a - e)) / max(1.0, float(jnp.max(jnp.abs(e)))))
        for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True)
    )


def outputs_and_gradients(layer, params, x, lengths, carry0, eps=None):
    """Outputs, final carry and the gradient of a loss of both w.r.t. params, inputs, h_0 and the
    hidden perturbation (``dL/dh_t`` for every t: the main job's diagnostic), one compiled program."""

    def loss(params, x, carry0, eps):
        y, final = layer.apply(params, x, lengths, carry0, hidden_perturbation=eps)
        return jnp.sum(jnp.sin(3 * y)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(final)), (y, final)

    grads, outputs = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(params, x, carry0, eps)
    return outputs, grads


@pytest.mark.parametrize("path", NEWTON)
@pytest.mark.parametrize("name", list(CELLS) + ["gru_f32", "paralstm_f32"])
def test_equals_the_sequential_scan_with_gradients(path, name):
    """Outputs, final carry and every gradient (params, x, h_0, the hidden perturbation) as the
    sequential scan's: lengths, a nonzero initial carry, a bidirectional layer (so the
    valid-prefix reverse too); float64 (<= 1e-10) for every cell, float32 (<= 1e-5) for two.
    Stacks: the next test."""
    dtype = "float32" if name.endswith("_f32") else "float64"
    with jax.enable_x64(dtype == "float64"):
        cell = CELLS[name.removesuffix("_f32")]()
        x = jax.random.normal(jax.random.key(1), (3, 16, 2), dtype)
        lengths = jnp.array([16, 5, 1])
        reference = RNN(cell, bidirectional=True, path="autodiff")
        params = reference.init(jax.random.key(0), 2, dtype)
        carry0 = jax.tree.map(lambda c: c + 0.1, reference.initial_carry(3, dtype))
        eps = jnp.zeros((2, 3, 16, cell.hidden_size), dtype)
        expected = outputs_and_gradients(reference, params, x, lengths, carry0, eps)
        actual = outputs_and_gradients(RNN(cell, bidirectional=True, path=path), params, x, lengths, carry0, eps)
        assert scaled_error(actual, expected) <= (1e-10 if dtype == "float64" else 1e-5)
        assert float(jnp.max(jnp.abs(actual[0][0][1, 5:]))) == 0.0  # padding is zero
        assert float(jnp.max(jnp.abs(actual[1][3]))) > 0  # dL/dh_t reached


@pytest.mark.parametrize(
    "path, name, options",
    [
        ("quasi_newton", "gru", NewtonOptions(method="elk", max_iter=100)),  # ELK is not exact in T
        ("newton", "lstm", NewtonOptions(method="elk", trust=1e4, max_iter=100)),
        ("quasi_newton", "paralstm", NewtonOptions(method="elk", trust=10.0, damping=0.2, max_iter=200)),
        ("quasi_newton", "tanh", NewtonOptions(clip=True, criterion="merit", tol=1e-24)),
        ("newton", "step_only", NewtonOptions()),
        ("quasi_newton", "step_only_lstm", NewtonOptions()),
    ],
)
def test_every_solver_equals_the_sequential_scan(path, name, options):
    """ELK (full and quasi, the block filter), clipped Jacobians, the merit criterion and a
    three-method cell's jax.jacfwd Jacobians: outputs, final carry and gradients, float64,
    lengths; a bidirectional stack of two (so reverse too) for the first."""
    with jax.enable_x64(True):
        cell = {"step_only": lambda: StepOnly(GRUCell(4)), "step_only_lstm": lambda: StepOnly(LSTMCell(3))}.get(
            name, CELLS.get(name)
        )()
        x = jax.random.normal(jax.random.key(1), (2, 12, 2), jnp.float64)
        lengths = jnp.array([12, 7])
        stack = dict(num_layers=2, bidirectional=True) if name == "gru" else {}
        reference = RNN(cell, path="autodiff", **stack)
        params = reference.init(jax.random.key(0), 2, jnp.float64)
        carry0 = reference.initial_carry(2, jnp.float64)
        expected = outputs_and_gradients(reference, params, x, lengths, carry0)
        layer = RNN(cell, path=path, newton_options=options, **stack)
        assert scaled_error(outputs_and_gradients(layer, params, x, lengths, carry0), expected) <= 1e-10


@pytest.mark.parametrize("name", list(CELLS))
def test_the_jacobian_structure_equals_jacfwd(name):
    """Every cell's structured Jacobian (diagonal, unit blocks, full) equals jax.jacfwd's of the
    scan's step, with padded steps (the identity) and the hidden perturbation."""
    with jax.enable_x64(True):
        cell = CELLS[name]()
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        carry = cell.initial_carry((6,), jnp.float64)
        treedef = jax.tree.structure(carry)
        step = newton._Step(cell, params, treedef)
        D = treedef.num_leaves * cell.hidden_size
        h = jax.random.normal(jax.random.key(1), (6, D), jnp.float64)
        x = jax.random.normal(jax.random.key(2), (6, 2), jnp.float64)
        valid = jnp.array([True, True, False, True, False, True])
        eps = 0.1 * jax.random.normal(jax.random.key(3), (6, cell.hidden_size), jnp.float64)
        for structure in ("diagonal" if treedef.num_leaves == 1 else "blocks", "full"):
            values, a, _ = step.linearise(structure, h, x, valid, eps)
            np.testing.assert_allclose(a, step.jacfwd(structure, h, x, valid, eps), atol=1e-14)
            np.testing.assert_allclose(values, step(h, x, valid, eps)[0], atol=1e-15)
            assert np.all(np.asarray(values)[~np.asarray(valid)] == np.asarray(h)[~np.asarray(valid)])


def authors_paragru(A, B, b, h, x):
    """xaviergonzalez/ml-pararnn gru_diag_mh.py GRUDiagMHImpl.recurrence_step, in NumPy."""
    heads = B.shape[0]
    bxpb = np.einsum("nhi,hivj->nvhj", x.reshape(x.shape[0], heads, -1), B).reshape(x.shape[0], 3, -1) + b
    sig = lambda v: 1 / (1 + np.exp(-v))
    z = sig(A[0] * h + bxpb[:, 0])
    r = sig(A[1] * h + bxpb[:, 1])
    h_new = np.tanh(A[2] * h * r + bxpb[:, 2])
    return z * h_new + (1 - z) * h


def authors_paralstm(A, B, C, b, c, h, x):
    """lstm_cifg_diag_mh.py LSTMCIFGDiagMHImpl.recurrence_step (state [c, h]), in NumPy."""
    heads = B.shape[0]
    pre = A[None] * h[:, None] + np.einsum("hivj,nhi->nvhj", B, x.reshape(x.shape[0], heads, -1)).reshape(
        x.shape[0], 3, -1
    )
    f, o, cc = np.moveaxis(pre + b, 1, 0)
    sig = lambda v: 1 / (1 + np.exp(-v))
    f = sig(f + C[0] * c)
    cc = np.tanh(cc)
    c = f * c + (1 - f) * cc
    o = sig(o + C[1] * c)
    return c, o * np.tanh(c)


def test_pararnn_cells_are_the_authors_equations_and_init():
    with jax.enable_x64(True):
        x = np.random.default_rng(0).normal(size=(5, 6))
        gru, lstm = ParaGRUCell(4, num_heads=2), ParaLSTMCell(4, num_heads=2)
        p = gru.init(jax.random.key(0), 6, jnp.float64)
        h = np.random.default_rng(1).normal(size=(5, 4))
        expected = authors_paragru(*(np.asarray(p[k]) for k in ("A", "B", "b")), h, x)
        np.testing.assert_allclose(gru.step(p, jnp.asarray(h), jnp.asarray(x))[0], expected, atol=1e-14)
        q = lstm.init(jax.random.key(0), 6, jnp.float64)
        c = np.random.default_rng(2).normal(size=(5, 4))
        c_new, h_new = authors_paralstm(*(np.asarray(q[k]) for k in ("A", "B", "C", "b")), c, h, x)
        carry, y = lstm.step(q, lstm.initial_carry((5,), jnp.float64)._replace(h=jnp.asarray(h), c=jnp.asarray(c)), x)
        np.testing.assert_allclose(carry.c, c_new, atol=1e-14)
        np.testing.assert_allclose(carry.h, h_new, atol=1e-14)
        np.testing.assert_array_equal(y, carry.h)
        # their init (pararnn/utils/init.py): bias_minus_linspace, xlstm A (and C), xavier_uniform B
        big = ParaGRUCell(512, num_heads=4).init(jax.random.key(1), 64, jnp.float64)
        np.testing.assert_allclose(big["b"][0], -np.linspace(0, 1, 512))
        assert float(jnp.max(jnp.abs(big["b"][1:]))) == 0.0
        assert abs(float(jnp.std(big["A"])) / (2 / np.sqrt(5 * 512)) - 1) < 0.05
        bound = np.sqrt(6 / (16 + 512))  # fan_in = I/heads, fan_out = H (GRU)
        assert big["B"].shape == (4, 16, 3, 128) and bound * 0.98 < float(jnp.max(jnp.abs(big["B"]))) <= bound
        lstm_b = ParaLSTMCell(512, num_heads=4).init(jax.random.key(1), 64, jnp.float64)["B"]
        assert float(jnp.max(jnp.abs(lstm_b))) <= np.sqrt(6 / (16 + 128))  # fan_out = H/heads (LSTM)
        with pytest.raises(ValueError, match="num_heads=2 must divide the input size 3"):
            gru.init(jax.random.key(0), 3)


@pytest.mark.parametrize("name", ["paragru", "paralstm", "indrnn"])
def test_quasi_newton_is_exact_newton_for_diagonal_recurrences(name):
    """ParaRNN's cells and IndRNN: the unit blocks ARE the Jacobian, so quasi-Newton's iterates
    are Newton's: the same iteration counts, sequence by sequence (for a dense GRU it is an
    approximation that takes more)."""
    with jax.enable_x64(True):
        cells = [CELLS[name]()] + ([GRUCell(8)] if name == "paragru" else [])
        x = 2 * jax.random.normal(jax.random.key(1), (3, 50, 2), jnp.float64)
        for cell in cells:
            params = cell.init(jax.random.key(0), 2, jnp.float64)
            (y_n, _, full), (y_q, _, quasi) = (unroll(cell, params, x, path=path, return_info=True) for path in NEWTON)
            if isinstance(cell, GRUCell):
                assert np.all(quasi.iterations > full.iterations)
            else:
                np.testing.assert_array_equal(full.iterations, quasi.iterations)
                np.testing.assert_allclose(y_q, y_n, atol=1e-12)


def test_elk_converges_where_deer_diverges():
    """A predictable RNN (lambda_1 < 0) whose Jacobians have a diagonal entry 1.5: quasi-DEER's
    diagonal recurrence expands 1.5^T and ends at the ±1e8 clip ("diverged"), quasi-ELK's trust
    region converges in fewer than T iterations, and so does clipping the Jacobians to [-1, 1]
    (the predictability code's clip), in T."""
    with jax.enable_x64(True):
        cell = ElmanCell(2, activation="linear")
        params = cell.init(jax.random.key(0), 1, jnp.float64) | {"w_hh": jnp.array([[1.5, -1.0], [1.2, -1.0]])}
        x = jax.random.normal(jax.random.key(1), (1, 400, 1), jnp.float64)
        assert np.max(np.abs(np.linalg.eigvals(np.asarray(params["w_hh"])))) < 0.86  # lambda_1 = log 0.852
        reference = unroll(cell, params, x, path="autodiff")[0]
        run = lambda **o: unroll(cell, params, x, path="quasi_newton", return_info=True,
                                 newton_options=NewtonOptions(fallback=True, **o))  # fmt: skip
        _, _, deer = run()
        assert bool(deer.diverged[0]) and int(deer.iterations[0]) == 400
        y, _, elk = run(method="elk", trust=1.0)
        assert bool(elk.converged[0]) and int(elk.iterations[0]) < 400
        np.testing.assert_allclose(y, reference, atol=1e-10)
        y, _, clipped = run(clip=True)
        assert bool(clipped.converged[0]) and int(clipped.iterations[0]) <= 400
        np.testing.assert_allclose(y, reference, atol=1e-10)


def test_convergence_is_per_sequence_and_tells_diverged_from_slow():
    with jax.enable_x64(True):
        cell = ElmanCell(8)
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (3, 60, 2), jnp.float64) * jnp.array([0.0, 1.0, 5.0])[:, None, None]
        _, _, info = unroll(cell, params, x, path="quasi_newton", return_info=True)
        assert info.iterations.shape == (3,) and len(set(np.asarray(info.iterations).tolist())) > 1
        assert np.all(info.converged)
        # not converged yet: a cap below what it needs
        _, _, slow = unroll(cell, params, x, path="quasi_newton", return_info=True,
                            newton_options=NewtonOptions(max_iter=3, fallback=True))  # fmt: skip
        assert np.all(np.asarray(slow.status)[1:] == newton.NOT_CONVERGED) and not np.any(slow.diverged)
        with pytest.raises(NewtonError, match=r"did not reach the tolerance on \d of 3 sequences.*raise max_iter"):
            unroll(cell, params, x, path="quasi_newton", newton_options=NewtonOptions(max_iter=3))
        # already on ELK: the message offers ELK's own knob, not ELK
        with pytest.raises(NewtonError, match=r"or a smaller trust or damping=\.\.\., or") as elk:
            unroll(cell, params, x, path="quasi_newton", newton_options=NewtonOptions(method="elk", max_iter=3))
        assert "method='elk'" not in str(elk.value)


def test_the_default_cap_is_t():
    """Exact Newton fixes step k at iteration k: T iterations reproduce the scan, whatever the
    dynamics (here chaotic, lambda_1 > 0, at T = 40)."""
    with jax.enable_x64(True):
        cell = ElmanCell(6, spectral_radius=3.0)
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (1, 40, 2), jnp.float64)
        y, _, info = unroll(cell, params, x, path="quasi_newton", return_info=True)
        assert int(info.iterations[0]) <= 40 and bool(info.converged[0])
        np.testing.assert_allclose(y, unroll(cell, params, x, path="autodiff")[0], atol=1e-9)


@pytest.mark.parametrize("path", ["quasi_newton"])  # Newton's gradients: against autodiff above
def test_gradients_match_finite_differences(path):
    with jax.enable_x64(True):
        cell = GRUCell(4)
        params = cell.init(jax.random.key(0), 3, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 12, 3), jnp.float64)
        loss = jax.jit(lambda p: jnp.sum(jnp.tanh(unroll(cell, p, x, lengths=jnp.array([12, 7]), path=path)[0]) ** 2))
        grads = jax.jit(jax.grad(loss))(params)
        direction = jax.tree.map(lambda p: jax.random.normal(jax.random.key(2), p.shape, p.dtype), params)
        step = 1e-6
        shifted = lambda s: loss(jax.tree.map(lambda p, d: p + s * d, params, direction))
        finite_difference = (shifted(step) - shifted(-step)) / (2 * step)
        analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
        np.testing.assert_allclose(float(analytic), float(finite_difference), rtol=1e-7)


def test_a_linear_cell_takes_one_iteration():
    with jax.enable_x64(True):
        cell = ElmanCell(8, activation="linear")
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 200, 2), jnp.float64)
        y, _, info = unroll(cell, params, x, path="newton", return_info=True)
        assert np.all(info.iterations == 1) and np.all(info.converged)
        np.testing.assert_allclose(y, unroll(cell, params, x, path="autodiff")[0], atol=1e-12)


def test_a_warm_start_at_the_solution_takes_no_iteration():
    with jax.enable_x64(True):
        cell = LSTMCell(4)
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 30, 2), jnp.float64)
        # the trajectory of carries, as the outputs are laid out: c_t from the scan's own steps
        carries = jax.lax.scan(
            lambda c, x_t: (cell.step(params, c, x_t)[0],) * 2, cell.initial_carry((2,), x.dtype), jnp.swapaxes(x, 0, 1)
        )[1]
        guess = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), carries)
        _, _, cold = unroll(cell, params, x, path="newton", return_info=True)
        _, _, warm = unroll(cell, params, x, path="newton", initial_guess=guess, return_info=True)
        assert np.all(warm.iterations == 0) and np.all(cold.iterations > 0)
        with pytest.raises(ValueError, match="initial_guess"):
            unroll(cell, params, x, path="newton", initial_guess=jax.tree.map(lambda a: a[:, :5], guess))
        with pytest.raises(ValueError, match=r"initial_guess must be real floating point .* got complex128"):
            unroll(cell, params, x, path="newton", initial_guess=jax.tree.map(lambda a: a * (1 + 1j), guess))
        with pytest.raises(ValueError, match="initial_guess must be finite") as raised:
            unroll(cell, params, x, path="newton", initial_guess=jax.tree.map(lambda a: a.at[0, 3].set(jnp.nan), guess))
        assert "chaotic" not in str(raised.value)


def test_chaotic_dynamics_raise_one_line_inside_jit_too(capfd):
    with jax.enable_x64(True):
        cell = ElmanCell(8, spectral_radius=3.0)  # lambda_1 > 0
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 100, 2), jnp.float64)
        options = NewtonOptions(max_iter=10)
        with pytest.raises(NewtonError, match=r"residual .* after 10 iterations .*fallback=True") as raised:
            unroll(cell, params, x, path="newton", newton_options=options)
        line = str(raised.value)
        assert "\n" not in line and isinstance(raised.value, ValueError)
        capfd.readouterr()
        with pytest.raises(jax.errors.JaxRuntimeError) as inside:  # under jit: from the runtime
            jax.jit(lambda p: unroll(cell, p, x, path="newton", newton_options=options)[0])(params).block_until_ready()
        assert newton.failure_line(inside.value) == line  # the same words
        assert "Traceback" not in capfd.readouterr().err  # JAX logged nothing
        # asked for explicitly: the sequential result instead
        fallback = unroll(cell, params, x, path="newton", newton_options=NewtonOptions(max_iter=10, fallback=True))[0]
        np.testing.assert_array_equal(fallback, unroll(cell, params, x, path="fused")[0])
        # a non-finite guess under jit is named as such, not blamed on chaos
        guess = jnp.full((2, 100, 8), jnp.nan)
        with pytest.raises(jax.errors.JaxRuntimeError) as bad:
            jax.jit(lambda g: unroll(cell, params, x, path="newton", initial_guess=g)[0])(guess).block_until_ready()
        assert "initial_guess is not finite" in newton.failure_line(bad.value)


def test_a_length_beyond_t_under_jit_is_not_a_newton_failure():
    """Lengths are only checkable outside jit; inside, a length > T runs as T on every path."""
    cell = GRUCell(4)
    params = cell.init(jax.random.key(0), 2)
    x = jax.random.normal(jax.random.key(1), (2, 5, 2))
    run = lambda path: jax.jit(lambda lengths: unroll(cell, params, x, lengths=lengths, path=path)[0])
    np.testing.assert_allclose(run("quasi_newton")(jnp.array([9, 3])), run("fused")(jnp.array([5, 3])), atol=1e-5)


def test_damping_reaches_the_same_trajectory():
    with jax.enable_x64(True):
        cell = GRUCell(6)
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 50, 2), jnp.float64)
        y, _, info = unroll(cell, params, x, path="newton", newton_options=NewtonOptions(damping=0.5), return_info=True)
        _, _, plain = unroll(cell, params, x, path="newton", return_info=True)
        assert np.all(info.iterations > plain.iterations)
        np.testing.assert_allclose(y, unroll(cell, params, x, path="autodiff")[0], atol=1e-10)


def test_options_are_checked_where_they_enter():
    cell = GRUCell(4)
    params = cell.init(jax.random.key(0), 2)
    x = jnp.ones((1, 3, 2))
    assert NewtonOptions(tol=np.float32(1e-4), max_iter=np.int64(5), damping=np.float64(0.5)).tol == pytest.approx(1e-4)
    hash(NewtonOptions(tol=np.float32(1e-4)))  # static: a jit argument
    bad = {
        "tol must be": dict(tol=-1e-3),
        "tol must be a": dict(tol=float("nan")),
        "tol must": dict(tol=float("inf")),
        r"max_iter must be an int in 1\.\.2147483647": dict(max_iter=10**12),
        "max_iter must be an": dict(max_iter=2.5),
        "damping must": dict(damping=1.0),
        "method must be one of 'deer', 'elk'": dict(method="lm"),
        "criterion must be one of": dict(criterion="change"),
        "trust is ELK's sigmasq: it applies to method='elk'": dict(trust=1.0),
        "trust must be": dict(method="elk", trust=0.0),
        "fallback must be a bool": dict(fallback=1),
    }
    for message, kwargs in bad.items():
        with pytest.raises(ValueError, match=message) as raised:
            NewtonOptions(**kwargs)
        assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match="newton_options apply to paths"):
        RNN(cell, path="fused", newton_options=NewtonOptions(method="elk"))
    with pytest.raises(ValueError, match="clip applies to path='quasi_newton'"):
        unroll(cell, params, x, path="newton", newton_options=NewtonOptions(clip=True))
    with pytest.raises(ValueError, match="scan_unroll=2 does not apply to path='quasi_newton'"):
        RNN(cell, path="quasi_newton", scan_unroll=2)
    with pytest.raises(ValueError, match="return_info applies to paths"):
        unroll(cell, params, x, return_info=True)


def test_jax_logs_only_other_callback_failures(caplog):
    """The filter on JAX's callback loggers drops our one-line errors only."""
    record = logging.LogRecord("jax._src.debugging", logging.ERROR, "", 0, "failed", None, None)
    keep = all(f.filter(record) for f in logging.getLogger("jax._src.debugging").filters)
    record.exc_info = (NewtonError, NewtonError("x"), None)
    drop = not all(f.filter(record) for f in logging.getLogger("jax._src.debugging").filters)
    assert keep and drop


@pytest.mark.parametrize("path, name", [("newton", "gru"), ("quasi_newton", "paragru")])
def test_two_training_steps_equal_the_sequential_ones(path, name):
    """Two SGD steps on the parallel path: the same losses and params as the sequential scan's,
    in float32 (and the iterations each step took are returned)."""
    cell = CELLS[name]()
    x = jax.random.normal(jax.random.key(1), (4, 30, 2))
    target = jax.random.normal(jax.random.key(2), (4,))
    optimizer = optax.sgd(0.1)

    def train(path):
        layer = RNN(cell, path=path)
        params = layer.init(jax.random.key(0), 2)
        readout = jnp.ones((cell.hidden_size,)) / cell.hidden_size
        info = path != "autodiff"

        def loss(p):
            y, _, *rest = layer.apply(p, x, return_info=info)
            return jnp.mean((y[:, -1] @ readout - target) ** 2), rest

        @jax.jit
        def step(p, s):
            (value, rest), g = jax.value_and_grad(loss, has_aux=True)(p)
            updates, s = optimizer.update(g, s)
            return optax.apply_updates(p, updates), s, value, rest

        state, losses, iterations = optimizer.init(params), [], []
        for _ in range(2):
            params, state, value, rest = step(params, state)
            losses.append(float(value))
            iterations += [int(jnp.max(i.iterations)) for i in (rest[0] if rest else [])]
        return losses, params, iterations

    losses, params, iterations = train(path)
    expected_losses, expected_params, _ = train("autodiff")
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5)
    assert scaled_error(params, expected_params) <= 1e-5
    assert len(iterations) == 2 and all(0 < k <= 30 for k in iterations)


def test_a_solves_outcome_is_recorded_in_words_and_its_memory_estimated():
    """``newton.outcome``: one sequence's iterations, status in words and residual as plain Python
    numbers (a results file's record); ``solve_bytes``: T B (I + D + D^2) numbers of the itemsize."""
    assert newton.STATUS_NAMES == {
        newton.CONVERGED: "converged",
        newton.NOT_CONVERGED: "not converged",
        newton.DIVERGED: "diverged",
        newton.BAD_GUESS: "bad guess",
    }
    cell = ElmanCell(3)
    params = cell.init(jax.random.key(0), 2)
    x = jax.random.normal(jax.random.key(1), (2, 20, 2))
    _, _, info = unroll(cell, params, x, path="newton", return_info=True, newton_options=NewtonOptions(tol=1e-5))
    first = newton.outcome(info)
    assert first["status"] == "converged" and type(first["iterations"]) is int and type(first["residual"]) is float
    assert 0 < first["iterations"] <= 20 and first["residual"] <= 1e-5
    options = NewtonOptions(max_iter=1, fallback=True)
    _, _, info = unroll(cell, params, x, path="newton", return_info=True, newton_options=options)
    assert newton.outcome(info, 1) == {"iterations": 1, "status": "not converged", "residual": float(info.residual[1])}
    assert newton.solve_bytes(100, 2, 8, 3) == 100 * 2 * (3 + 8 + 64) * 4
    assert newton.solve_bytes(100, 2, 8, 3, itemsize=8) == 2 * newton.solve_bytes(100, 2, 8, 3)


def test_the_experiment_records_iterations_against_lambda_1(tmp_path):
    """experiments/parallel_newton.py --quick: the flat records the docs quote, and the claims'
    direction: contracting dynamics converge to the scan's trajectory, ParaGRU's quasi-Newton is
    its Newton, training on the parallel paths follows the sequential loss, ELK converges where
    DEER diverges."""
    from conftest import load_script

    results = load_script("parallel_newton").main(["--quick", "--quiet", "--out", str(tmp_path)])
    runs = results["runs"]
    keys = {"model", "seed", "T", "phase", "lambda_1", "method", "iterations", "status", "max_error_vs_sequential"}
    assert all(keys <= set(r) for r in runs) and (tmp_path / "iterations_vs_lambda.png").is_file()
    assert {r["model"] for r in runs} == {"gru", "paragru"}
    assert {r["phase"] for r in runs if r["model"] == "gru"} == {"init", "trained"}
    contracting = [r for r in runs if r["lambda_1"] < -0.1 and r["method"] != "quasi_elk"]
    assert contracting and all(r["status"] == "converged" and r["max_error_vs_sequential"] <= 1e-6 for r in contracting)
    para = {(r["phase"], r["method"]): r["iterations"] for r in runs if r["model"] == "paragru"}
    assert para[("init", "newton")] == para[("init", "quasi_newton")]  # quasi-Newton is exact Newton
    assert all(r["max_loss_difference"] <= 1e-4 for r in results["training"])
    assert all(len(r["iterations"]) == 3 for r in results["training"] if r["path"] != "autodiff")
    deer, *_, elk = results["elk"]
    assert deer["status"] == "diverged" and elk["status"] == "converged" and elk["iterations"] < elk["T"]


def test_the_figure2_exponent_sums_as_many_log_growths_as_it_divides_by(tmp_path):
    """experiments/newton_figure2.py: lambda_1 at T is the predictability code's step_logs[T] / (T + 1)
    at every T, the longest included: it does not depend on how far past T + 2 the trajectory runs,
    and a trajectory too short for it is refused (JAX would clamp the index: too few log-growths
    divided by T + 1).  --resume keeps the DEER solves and recomputes every record's lambda_1."""
    import json

    from conftest import load_script

    fig2 = load_script("newton_figure2")
    with jax.enable_x64(True):
        w_unit, inputs, s0, _, key = fig2.setting(0, 8, 40)
        lam = lambda n: np.asarray(fig2.lyapunov(1.5 * w_unit, inputs[:n], s0, key, (5, 20)))
        np.testing.assert_allclose(lam(22), lam(42), rtol=1e-12)
        with pytest.raises(ValueError, match="needs 22 inputs"):
            lam(21)
    argv = ["--quick", "--quiet", "--gains", "0.5", "--out", str(tmp_path)]
    first = fig2.main(argv)["runs"]
    saved = json.loads((tmp_path / "results.json").read_text())
    for record in saved["runs"]:
        record["lambda_1"], record["iterations"] = 0.0, -1  # a stale exponent; a solve that must be kept
    (tmp_path / "results.json").write_text(json.dumps(saved))
    again = fig2.main(argv + ["--resume"])["runs"]
    assert [r["lambda_1"] for r in again] == [r["lambda_1"] for r in first]
    assert all(r["iterations"] == -1 for r in again)


def test_newton_options_are_importable_from_the_package_as_the_docs_write():
    import rnnlab

    assert rnnlab.NewtonOptions is NewtonOptions and "NewtonOptions" in rnnlab.__all__
