"""IndRNN and coRNN against their authors' PyTorch code (values and gradients, every path),
their inits and IndRNN's constraint, and both by name through the zoo and the scripts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import RNN
from rnnlab.cells import CoRNNCell, IndRNNCell
from rnnlab.linen import SequenceRegressor, constrain_recurrent
from rnnlab.train import OptimConfig, init_state, make_optimizer, make_train_step
from rnnlab.zoo import make_layer

torch = pytest.importorskip("torch")

B, T, I, H = 3, 11, 2, 6
LENGTHS = np.array([11, 4, 7])


def torch_indrnn(w_ih, b_ih, u, x_bti):
    """Sunnydreamrain/IndRNN_pytorch: ``Linear_overtime`` then ``IndRNNCell_onlyrecurrent``,
    ``F.relu(input + hx * weight_hh)``, step by step."""
    inputs = x_bti @ w_ih.T + b_ih
    h, outputs = torch.zeros(x_bti.shape[0], len(u), dtype=x_bti.dtype), []
    for t in range(x_bti.shape[1]):
        h = torch.nn.functional.relu(inputs[:, t] + h * u.unsqueeze(0).expand(h.size(0), len(u)))
        outputs.append(h)
    return torch.stack(outputs, 1)


def torch_cornn(weight, bias, x_bti, dt, gamma, epsilon):
    """tk-rusch/coRNN ``coRNNCell.forward``: one Linear over ``cat((x, hz, hy))``."""
    hy = hz = torch.zeros(x_bti.shape[0], weight.shape[0], dtype=x_bti.dtype)
    outputs = []
    for t in range(x_bti.shape[1]):
        pre = torch.cat((x_bti[:, t], hz, hy), 1) @ weight.T + bias
        hz = hz + dt * (torch.tanh(pre) - gamma * hy - epsilon * hz)
        hy = hy + dt * hz
        outputs.append(hy)
    return torch.stack(outputs, 1)


def torch_reference(cell, params, x_bti, r_bth):
    """``(outputs, gradients of sum(outputs * r) w.r.t. params)`` of the authors' code, float64."""
    t = {k: torch.tensor(np.asarray(v, np.float64), requires_grad=True) for k, v in params.items()}
    x = torch.tensor(np.asarray(x_bti, np.float64))
    if isinstance(cell, IndRNNCell):
        out = torch_indrnn(t["w_ih"], t["b_ih"], t["u"], x)
    else:  # the authors' one weight [H, I + 2H] is rnnlab's [w_ih | w_hh] (w_hh's columns: z, then y)
        weight = torch.cat([t["w_ih"], t["w_hh"]], 1)
        out = torch_cornn(weight, t["b_ih"], x, cell.dt, cell.gamma, cell.epsilon)
    (out * torch.tensor(np.asarray(r_bth, np.float64))).sum().backward()
    return out.detach().numpy(), {k: v.grad.numpy() for k, v in t.items()}


@pytest.mark.parametrize("path", ["fused", "autodiff", "remat"])
@pytest.mark.parametrize(
    "cell",
    [IndRNNCell(H, t_max=T, input_std=0.5), CoRNNCell(H, dt=0.1, gamma=2.0, epsilon=1.5)],
    ids=["indrnn", "cornn"],
)
def test_matches_the_authors_pytorch_code(cell, path, assert_close):
    layer = RNN(cell, path=path)
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    r = jax.random.normal(jax.random.key(2), (B, T, H))
    want_out, want_grads = torch_reference(cell, params["l0"]["fwd"], x, r)
    loss = lambda p: jnp.sum(layer.apply(p, x)[0] * r)
    got_out = layer.apply(params, x)[0]
    got_grads = jax.grad(loss)(params)["l0"]["fwd"]
    name = type(cell).__name__
    assert_close(f"{name} vs the authors' torch: outputs", got_out, want_out, atol=2e-5, rtol=2e-5)
    for k, g in want_grads.items():
        assert_close(f"{name} vs the authors' torch: d{k}", got_grads[k], g, atol=2e-4, rtol=2e-4)


def test_indrnn_init_and_constraint_are_the_authors():
    """``u ~ U(2^(-1/T), 2^(1/T))`` (their last layer), ``U(0, 2^(1/T))`` (their first), W ~ N(0, 0.001^2),
    b = 0; ``constrain`` clips u to ``±2^(1/T)``, nothing else."""
    bound = 2 ** (1 / 500)
    p = IndRNNCell(4000, t_max=500).init(jax.random.key(0), 50)
    assert 1 / bound <= float(p["u"].min()) < 1 / bound + 1e-4 and bound - 1e-4 < float(p["u"].max()) <= bound
    assert abs(float(jnp.std(p["w_ih"])) - 0.001) < 2e-5 and not np.any(np.asarray(p["b_ih"]))
    first = IndRNNCell(4000, t_max=500, u_init="uniform").init(jax.random.key(0), 2)["u"]
    assert float(first.min()) < 1e-3 and float(first.max()) <= bound
    wild = p | {"u": jnp.array([-3.0, 0.5, 3.0] + [0.0] * 3997)}
    clipped = IndRNNCell(4000, t_max=500).constrain(wild)
    np.testing.assert_array_equal(clipped["u"][:3], np.array([-bound, 0.5, bound], np.float32))
    assert clipped["w_ih"] is wild["w_ih"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: IndRNNCell(4, mag=5.0), "IndRNN mag needs t_max"),
        (lambda: IndRNNCell(4, u_init="last_layer"), "IndRNN u_init='last_layer' needs t_max"),
        (lambda: IndRNNCell(4, t_max=10, mag=1.0), "IndRNN mag must be > 1"),
        (lambda: IndRNNCell(4, t_max=10, u_init="ones"), "unknown u_init 'ones'"),
        (lambda: CoRNNCell(4, dt=0.0), "coRNN dt must be > 0"),
    ],
)
def test_an_option_that_cannot_apply_is_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_training_step_keeps_indrnn_inside_its_bound():
    """The constraint is applied after the optimiser's update, as the authors' loop clips before
    every step: a learning rate that pushes u past the bound leaves it on the bound."""
    layer = make_layer("indrnn", 4, t_max=10)
    model = SequenceRegressor(layer)
    x = jax.random.normal(jax.random.key(1), (8, 10, 2))
    y = jnp.full((8,), 100.0)
    params = model.init(jax.random.key(0), x)
    loss = lambda p, batch, key: (jnp.mean((model.apply(p, batch[0])[:, 0] - batch[1]) ** 2), {})
    opt = make_optimizer(OptimConfig("sgd", 10.0, clip_norm=0.0), 10)
    step = jax.jit(make_train_step(loss, opt, lambda p: constrain_recurrent(layer, p)))
    free = jax.jit(make_train_step(loss, opt))
    state = init_state(opt, params, jax.random.key(2))
    u = lambda s: np.abs(np.asarray(s.params["params"]["recurrent"]["rnn"]["l0"]["fwd"]["u"]))
    assert u(free(state, (x, y))[0]).max() > layer.cell.u_bound  # without it, u leaves the bound
    assert u(step(state, (x, y))[0]).max() <= layer.cell.u_bound + 1e-7


@pytest.mark.parametrize("name", ["indrnn", "cornn"])
def test_by_name_with_lengths_bidirectional_and_stacks(name, assert_close):
    """Padding is the identity and zero output, and the backward direction reverses the valid prefix:
    a padded batch equals each sequence run alone."""
    layer = make_layer(name, H, t_max=T, num_layers=2, bidirectional=True)
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    out, final = layer.apply(params, x, LENGTHS)
    for b, n in enumerate(LENGTHS):
        alone, final_b = layer.apply(params, x[b : b + 1, :n])
        assert_close(f"{name}: padded vs alone", out[b, :n], alone[0], atol=1e-6, rtol=1e-6)
        assert not np.any(np.asarray(out[b, n:]))
        assert_close(
            f"{name}: final padded vs alone",
            jax.tree.map(lambda a: a[:, b], final),
            jax.tree.map(lambda a: a[:, 0], final_b),
            atol=1e-6,
            rtol=1e-6,
        )


def test_the_research_scripts_train_them_by_name(tmp_path):
    """`--models indrnn cornn` in the adding problem and the copy task: trained (IndRNN's bound
    kept by the scripts' constraint), evaluated, the copy task's gradient profile finite."""
    from conftest import load_script

    names = ["indrnn", "cornn"]
    common = ["--quick", "--quiet", "--compile-cache", "off", "--steps", "20", "--seeds", "2", "--models", *names]
    copy = load_script("copy_memory").main([*common, "--lengths", "6", "--hidden", "8", "--out", str(tmp_path / "c")])
    adding = load_script("adding_problem").main(
        [*common, "--seq-len", "12", "--hidden", "8", "--learning-rate", "0.5", "--out", str(tmp_path / "a")]
    )
    for name in names:
        assert len(copy["final_loss"][name]["6"]["per_seed"]) == 2
        assert np.all(np.isfinite(copy["gradient_norms"][name]["6"]["init"]))
        assert np.isfinite(adding["models"][name]["points"][0]["test_mse"]["median"])


def test_orthogonal_refuses_a_cell_without_a_dense_recurrent_matrix():
    from rnnlab.linear import LRUBlock
    from rnnlab.parametrizations import Orthogonal

    for cell in (LRUBlock(8), IndRNNCell(8), CoRNNCell(8)):
        with pytest.raises(ValueError, match=f"Orthogonal wraps .* {type(cell).__name__} has none"):
            Orthogonal(RNN(cell))
