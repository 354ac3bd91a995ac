"""Sweeps: one program for a grid equals one run per point; 4 devices and 2 processes
give a 1-device run's numbers; the persistent compilation cache is hit."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_script, run_two_processes

from rnnlab import RNN
from rnnlab import sweep as sweeps
from rnnlab.data import synthetic
from rnnlab.linen import SequenceRegressor, regressor_gradient_profile
from rnnlab.train import OptimConfig, init_state, make_optimizer, make_train_step
from rnnlab.zoo import make_cell

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a small main job: 2 lengths x 3 seeds = 6 points per model (padded to 8 on 4 devices)
TINY = [
    "--quick",
    "--quiet",
    "--compile-cache",
    "off",
    "--models",
    "rnn",
    "lstm",
    "--lengths",
    "10",
    "20",
    "--hidden",
    "16",
    "--steps",
    "10",
    "--measure-size",
    "4",
    "--sweep-length",
    "20",
    "--radii",
    "0.5",
    "1.5",
    "--forget-biases",
    "0",
    "3",
    "--clip-length",
    "20",
    "--clip-steps",
    "10",
]


def test_grid_order_and_bad_points():
    points = sweeps.grid(lr=[1, 2], seed=range(3))
    assert points[:4] == [{"lr": 1, "seed": 0}, {"lr": 1, "seed": 1}, {"lr": 1, "seed": 2}, {"lr": 2, "seed": 0}]
    with pytest.raises(ValueError, match="'lr' needs a non-empty list"):
        sweeps.grid(lr=[])
    with pytest.raises(ValueError, match="cell='lstm' is not a number"):
        sweeps.Sweep([{"cell": "lstm"}])
    with pytest.raises(ValueError, match="point 1 has keys"):
        sweeps.Sweep([{"a": 1}, {"b": 2}])
    with pytest.raises(ValueError, match="expected a leading axis of 2 points"):
        sweeps.Sweep([{"a": 1}, {"a": 2}]).put(np.zeros(3))


def test_one_program_equals_one_run_per_point():
    """A grid of learning rates x clip norms x forget biases x seeds, trained as one vmapped
    program, against the single-run API (its own optimizer and init per point)."""
    T, H, steps = 12, 8, 5
    points = sweeps.grid(learning_rate=[0.05, 0.2], clip_norm=[0.1, 0.0], forget_bias=[0.0, 2.0], seed=[0, 1])
    sweep = sweeps.Sweep(points)
    model = SequenceRegressor(RNN(make_cell("lstm", H)))
    init = jax.jit(
        lambda key, fb: SequenceRegressor(RNN(make_cell("lstm", H, forget_bias=fb))).init(key, jnp.zeros((1, T, 2)))
    )
    keys = jax.random.split(jax.random.key(0), 2)[sweep.column("seed")]
    params = sweeps.init_params(sweep, lambda key, p: init(key, p["forget_bias"]), keys)
    # momentum SGD: Adam's division by sqrt(v) would turn float rounding in near-zero gradients
    # into steps of size lr, and the comparison into a test of rounding
    base = make_optimizer(OptimConfig("momentum", 1.0, clip_norm=1.0), steps)
    state = sweeps.init_states(sweep, base, params, keys, hyperparameters=("learning_rate", "clip_norm"))
    loss = lambda p, b, key: (jnp.mean((model.apply(p, b["x"])[:, 0] - b["y"]) ** 2), {})
    batches = synthetic.seeded_batches(synthetic.adding_problem, 7, sweep.column("seed"), 4, T)
    final = sweeps.train(sweep, state, loss, base, batches, num_steps=steps, progress="none")
    assert final.params["params"]["head"]["kernel"].shape[0] == len(points)

    for i, p in enumerate(points):
        ref_model = SequenceRegressor(RNN(make_cell("lstm", H, forget_bias=p["forget_bias"])))
        opt = make_optimizer(OptimConfig("momentum", p["learning_rate"], clip_norm=p["clip_norm"]), steps)
        ref = init_state(opt, ref_model.init(keys[i], jnp.zeros((1, T, 2))), keys[i])
        step = jax.jit(make_train_step(loss, opt))
        for k in range(steps):
            ref, _ = step(ref, jax.tree.map(lambda a: a[i], batches(k)))
        for got, want in zip(jax.tree.leaves(jax.tree.map(lambda a: a[i], final.params)), jax.tree.leaves(ref.params)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(p))


def test_padded_lengths_measure_what_unpadded_sequences_do(assert_close):
    """The main job pads shorter sequences to share a program: the gradient profile over the
    valid steps must equal the unpadded measurement, and be zero past the length."""
    T, pad = 15, 25
    model = SequenceRegressor(RNN(make_cell("gru", 8)))
    params = model.init(jax.random.key(3), jnp.zeros((1, T, 2)))
    b = synthetic.adding_problem(5, 4, T)
    x_pad = np.concatenate([b["x"], np.ones((4, pad - T, 2), np.float32)], axis=1)  # garbage padding
    grad, jac = regressor_gradient_profile(model, params, b["x"], b["y"])
    grad_p, jac_p = regressor_gradient_profile(model, params, x_pad, b["y"], jnp.full(4, T))
    assert_close("padded gradient profile", grad_p[:T], grad, atol=1e-7, rtol=1e-5)
    assert_close("padded jacobian profile", jac_p[:T], jac, atol=1e-7, rtol=1e-5)
    assert np.all(np.asarray(grad_p[T:]) == 0) and np.all(np.asarray(jac_p[T:]) == 0)


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_device")
    load_script("vanishing_gradients").main(TINY + ["--out", str(out)])
    return json.loads((out / "results.json").read_text())


def assert_same_numbers(results, reference):
    for model in ("rnn", "lstm"):
        for T in ("10", "20"):
            for phase in ("init", "trained"):
                got = np.array(results["gradient_norms"][model][T][phase]["median"])
                want = np.array(reference["gradient_norms"][model][T][phase]["median"])
                np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=f"{model} T={T} {phase}")
                np.testing.assert_allclose(
                    results["ratios"][model][T][phase]["per_seed"],
                    reference["ratios"][model][T][phase]["per_seed"],
                    rtol=1e-4,
                )
    for sweep in ("spectral_radius", "forget_bias"):
        for value, s in reference["sweeps"][sweep].items():
            np.testing.assert_allclose(results["sweeps"][sweep][value]["median"], s["median"], rtol=1e-4)


def test_four_devices_give_one_devices_numbers(one_device_run, tmp_path):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="4", JAX_PLATFORMS="cpu")
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "vanishing_gradients.py"), *TINY, "--out", str(tmp_path)],
        check=True,
        env=env,
        timeout=300,
        capture_output=True,
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["devices"] == 4 and one_device_run["devices"] == 1
    assert_same_numbers(results, one_device_run)


def test_two_processes_give_one_process_numbers(one_device_run, tmp_path):
    """2 processes: the sweep's rows are split between them, process 0 gathers and writes,
    process 1 writes nothing into its --out."""
    outs = [tmp_path / f"p{i}" for i in range(2)]
    run_two_processes("vanishing_gradients.py", TINY, outs)
    results = json.loads((outs[0] / "results.json").read_text())
    assert results["devices"] == 2 and results["processes"] == 2
    assert not outs[1].exists() or not any(outs[1].iterdir())
    assert_same_numbers(results, one_device_run)


def test_sweep_checkpointed_by_two_processes_resumes_in_one(tmp_path):
    """A 2 learning rates x 2 seeds adding sweep: 20 steps as 2 processes (process 0 alone writes
    the checkpoints), resumed to 30 as 2 processes (process 0 reads, both get the arrays), then
    to 40 as 1 process == 40 uninterrupted steps in 1 process."""
    small = [
        "--quick",
        "--quiet",
        "--compile-cache",
        "off",
        "--seq-len",
        "8",
        "--hidden",
        "8",
        "--seeds",
        "2",
        "--learning-rate",
        "1e-2",
        "3e-3",
        "--models",
        "rnn",
        "lstm",
        "--checkpoint-every",
        "10",
        "--test-size",
        "64",
    ]
    script = os.path.join(ROOT, "experiments", "adding_problem.py")
    run_two_processes("adding_problem.py", small + ["--steps", "20"], [tmp_path / "run", tmp_path / "other"])
    assert (tmp_path / "run" / "checkpoints" / "lstm" / "20").exists() and not (tmp_path / "other").exists()
    # both processes given the same --out: process 0 holds its lock, process 1 must not be locked out
    run_two_processes("adding_problem.py", small + ["--steps", "30", "--resume"], [tmp_path / "run"] * 2)
    assert (tmp_path / "run" / "checkpoints" / "lstm" / "30").exists()
    subprocess.run(
        [sys.executable, script, *small, "--steps", "40", "--resume", "--out", str(tmp_path / "run")],
        check=True,
        timeout=300,
        capture_output=True,
    )
    subprocess.run(
        [sys.executable, script, *small, "--steps", "40", "--out", str(tmp_path / "ref")],
        check=True,
        timeout=300,
        capture_output=True,
    )
    got, want = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("run", "ref"))
    for model in ("rnn", "lstm"):
        for p, q in zip(got["models"][model]["points"], want["models"][model]["points"]):
            np.testing.assert_allclose(p["test_mse"]["per_seed"], q["test_mse"]["per_seed"], rtol=1e-5)


def test_compilation_cache_is_hit_by_a_second_process(tmp_path):
    """JAX's persistent cache on this machine: the second process loads what the first compiled
    (jax-ml/jax#38445 reports silent misses on some x86 CPUs)."""
    code = textwrap.dedent(f"""
        import json, jax, jax.numpy as jnp
        from rnnlab import RNN, LSTMCell, parallel
        parallel.enable_compile_cache({str(tmp_path)!r})
        with parallel.CompileStats() as stats:
            layer = RNN(LSTMCell(8))
            grad = jax.jit(jax.grad(lambda p, x: layer.apply(p, x)[0].sum()))
            grad(layer.init(jax.random.key(0), 3), jnp.ones((2, 5, 3)))
        print(json.dumps(stats.as_dict()))
    """)
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
            ).stdout.splitlines()[-1]
        )
        for _ in range(2)
    ]
    assert runs[0]["programs"] > 0 and runs[0]["cache_hits"] == 0
    assert runs[1]["cache_hits"] == runs[1]["programs"] == runs[0]["programs"]
    assert runs[1]["seconds"] < runs[0]["seconds"]


def test_one_value_for_every_point_is_a_view():
    sweep = sweeps.Sweep(sweeps.grid(seed=range(3)))
    batch = {"x": np.arange(6.0).reshape(2, 3), "y": np.array([1, 2])}
    rows = sweep.broadcast(batch)
    assert rows["x"].shape == (3, 2, 3) and rows["y"].shape == (3, 2)
    assert np.shares_memory(rows["x"], batch["x"]) and all(np.array_equal(r, batch["x"]) for r in rows["x"])


def test_named_keys_are_the_names_own_stream():
    """fold_in(key(seed), crc32(name)), split: the same on every process, another for another name or seed."""
    import zlib

    keys = sweeps.named_keys(7, "gru", 3)
    expected = jax.random.split(jax.random.fold_in(jax.random.key(7), zlib.crc32(b"gru")), 3)
    np.testing.assert_array_equal(jax.random.key_data(keys), jax.random.key_data(expected))
    for other in (sweeps.named_keys(7, "lstm", 3), sweeps.named_keys(8, "gru", 3)):
        assert not np.array_equal(jax.random.key_data(keys), jax.random.key_data(other))


def test_dataset_sums_count_every_example_once_in_wrapped_chunks():
    """7 examples in chunks of 3: the last chunk wraps around to the first examples with weight 0."""
    sweep = sweeps.Sweep(sweeps.grid(scale=[1.0, 2.0]))
    data = {"x": np.arange(1.0, 8.0, dtype=np.float32)[:, None], "y": np.arange(7)}

    def sums(scale, batch, weight_c):
        return {"total": jnp.sum(scale * batch["x"][:, 0] * weight_c), "count": jnp.sum(weight_c)}

    out = sweeps.dataset_sums(sweep, sums, sweep.put(sweep.column("scale", np.float32)), data, chunk=3)
    np.testing.assert_array_equal(out["total"], [28.0, 56.0])
    np.testing.assert_array_equal(out["count"], [7.0, 7.0])
