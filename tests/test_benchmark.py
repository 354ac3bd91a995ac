"""The benchmark: tasks as data (``rnnlab.tasks``), the protocol (``rnnlab.protocol``) and
``experiments/benchmark.py`` with a cell registered outside rnnlab, resumed after SIGKILL,
refusing bad input in one line; and docs/benchmark.md rendered from its committed results."""

import hashlib
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import optax
import pytest

from rnnlab import protocol, tasks, zoo
from rnnlab.data import synthetic
from rnnlab.validation import InputError

ROOT = pathlib.Path(__file__).parents[1]
SCRIPT = ROOT / "experiments" / "benchmark.py"
SMALL = "validation_size=32,test_size=32"
TINY = [
    *("--tasks", f"copy:T=5,{SMALL}", f"adding:T=5,{SMALL}"),
    *("--models", "gru", "mingru", "tiny"),
    *("--params", "400", "--budget", "160", "--batch-size", "16", "--lr-points", "2", "--lr-grow", "0"),
    *("--eval-every", "5", "--checkpoint-every", "5", "--quiet"),
]
# a cell written outside rnnlab, registered by name before the script reads the zoo
TINY_CELL = '''
import dataclasses

import jax.numpy as jnp

from rnnlab import zoo
from rnnlab.cells import DenseCell


@dataclasses.dataclass(frozen=True)
class TinyCell(DenseCell):
    r"""h_t = (h_{t-1} + tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)) / 2"""

    def gates(self, h, proj, elementwise):
        (z,) = proj
        h = 0.5 * (h + jnp.tanh(z))
        return h, h


zoo.register("tiny", zoo.NamedModel(label="tiny", description="half-leaky tanh RNN", cell=lambda H, **o: TinyCell(H, **o)))
'''


# -- tasks ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_npz(tmp_path_factory):
    """A stand-in for MNIST's local files: 60 training and 20 test digits of random pixels."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("mnist") / "mnist.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 60),
        x_test=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 20),
    )
    return path


def rows(x) -> set[bytes]:
    x = np.asarray(x)
    return {r.tobytes() for r in x.reshape(len(x), -1)}


@pytest.mark.parametrize(
    "spec", ["copy:T=20", "selective_copy:T=20", "mqar:T=32,pairs=4,keys=8,values=8", "adding:T=20", "psmnist"]
)
def test_the_train_validation_and_test_streams_are_disjoint(spec, mnist_npz):
    if spec == "psmnist":
        spec = f"psmnist:data_dir={mnist_npz},validation_size=10"
    task = tasks.parse(spec)
    batch = 8 if "mnist" in spec else 32
    train = set().union(*(rows(task.train_batch(run, step, batch)["x"]) for run in range(3) for step in range(20)))
    validation, test = rows(task.held_out("validation")["x"]), rows(task.held_out("test")["x"])
    assert not train & validation and not train & test and not validation & test
    assert len(validation) > 1 and len(test) > 1
    # a stream is a pure function of (seed, run, step): drawn again, the same batch
    again = task.train_batch(2, 7, batch)
    assert all(np.array_equal(again[k], task.train_batch(2, 7, batch)[k]) for k in again)


def cross_entropy(probs_lv, y_bl, weight_bl) -> float:
    """The mean over examples of the weighted cross-entropy of per-position probabilities."""
    p_bl = probs_lv[np.arange(y_bl.shape[1])[None, :], y_bl]
    return float(np.mean(np.sum(-np.log(p_bl) * weight_bl, 1) / np.sum(weight_bl, 1)))


def test_the_memoryless_reference_is_an_explicit_memoryless_predictor_fitted_on_training_data(mnist_npz):
    # copy: a memoryless model knows the position; its guess is each position's frequencies in
    # training sequences (the training stream, never the scored set), scored on the validation set
    copy = tasks.parse("copy:T=20")
    fit, data = copy.train_batch(0, 0, copy.reference_size), copy.held_out("validation")
    V, (B, L) = copy.vocab_size, data["y"].shape
    probs_lv = np.stack([np.bincount(fit["y"][:, t], minlength=V) / len(fit["y"]) for t in range(L)])
    explicit = cross_entropy(probs_lv, data["y"], np.ones((B, L)))
    reference = copy.memoryless("validation")
    assert reference["loss"] == pytest.approx(explicit, rel=1e-5)
    hits_bl = probs_lv.argmax(1)[None, :] == data["y"]
    assert reference["accuracy"] == pytest.approx(hits_bl[:, -synthetic.COPY_LENGTH :].mean(), rel=1e-5)
    # the predictor fitted on the validation set itself scores lower: it would be the in-sample reference
    in_sample_lv = np.stack([np.bincount(data["y"][:, t], minlength=V) / B for t in range(L)])
    assert cross_entropy(in_sample_lv, data["y"], np.ones((B, L))) < explicit
    # and the copy paper's baseline, 10 ln 8 / (T + 20), is that predictor's expected loss
    assert explicit == pytest.approx(synthetic.copy_memory_baseline(20), rel=0.01)
    # MQAR: a query's value is one of `values`, whatever the key: the training answers' frequencies
    mqar = tasks.parse("mqar:T=32,pairs=4,keys=8,values=8")
    fit, data = mqar.reference_sample(), mqar.held_out("test")
    freq = np.bincount(fit["y"][fit["answer"]], minlength=mqar.vocab_size) / fit["answer"].sum()
    answers = data["y"][data["answer"]]
    assert mqar.memoryless("test")["loss"] == pytest.approx(float(-np.mean(np.log(freq[answers]))), rel=1e-5)
    assert mqar.memoryless("test")["accuracy"] == pytest.approx(np.mean(answers == freq.argmax()), rel=1e-5)
    # adding: the best constant is the training targets' mean; its MSE the variance, plus the means' gap
    adding = tasks.parse("adding:T=20,validation_size=2000")
    mean = float(np.mean(adding.reference_sample()["y"].astype(np.float64)))
    y = adding.held_out("validation")["y"].astype(np.float64)
    assert adding.memoryless("validation")["mse"] == pytest.approx(np.mean((y - np.float32(mean)) ** 2), rel=1e-5)
    assert np.var(y) == pytest.approx(synthetic.ADDING_BASELINE_MSE, rel=0.1)
    # a classifier: the training split's class frequencies, scored on the test set
    mnist = tasks.parse(f"pixel_mnist:data_dir={mnist_npz},validation_size=10")
    freq = np.bincount(mnist.reference_sample()["y"], minlength=10) / 50
    y = mnist.held_out("test")["y"]
    logp = np.log(np.maximum(freq, 1e-30))
    assert mnist.memoryless("test")["loss"] == pytest.approx(float(-np.mean(logp[y])), rel=1e-5)
    assert mnist.memoryless("test")["accuracy"] == pytest.approx(np.mean(y == freq.argmax()), rel=1e-5)
    # the task's own loss scores the explicit predictor: a probability-1 guess costs nothing
    logits = np.log(np.maximum(probs_lv, 1e-30))[None].repeat(B, 0)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, copy.held_out("validation")["y"])
    assert float(np.mean(ce)) == pytest.approx(explicit, rel=1e-5)
    # the reference is scored on a held-out set only
    with pytest.raises(ValueError, match="held-out split"):
        copy.memoryless("train")


def test_on_unseen_data_the_memoryless_reference_scores_what_no_memory_can():
    """Fitted on training data, the copy task's memoryless predictor recalls a fixed guess per
    answer step: on a held-out set of 256 sequences its accuracy is 1/8 within sampling error, and
    its recall cross-entropy at least ln 8 but for rounding.  Fitted on the scored set (the
    in-sample reference) it would recall about 0.157 and score about ln 8 - 0.014."""
    draws = [tasks.parse(f"copy:T=5,seed={seed}").memoryless("test") for seed in range(8)]
    answers = 8 * 256 * synthetic.COPY_LENGTH
    error = math.sqrt(1 / 8 * 7 / 8 / answers)  # 0.0023
    assert abs(np.mean([d["accuracy"] for d in draws]) - 1 / 8) < 4 * error
    assert np.mean([d["recall_loss"] for d in draws]) > math.log(8) - 0.003
    # selective copy: the position says nothing about the symbol, the reference is a uniform guess
    selective = tasks.parse("selective_copy:T=20").memoryless("validation")
    assert selective["loss"] == pytest.approx(math.log(8), rel=2e-3)


def test_task_specs_round_trip_and_bad_ones_are_one_line():
    for spec in ("copy:T=200", "selective_copy:T=50,tokens=4", "mnist1d:shuffled=1", "adding:T=200", "mqar:T=64"):
        task = tasks.parse(spec)
        assert tasks.parse(task.spec) == task and task.spec == spec
        assert task.metric in task.metric_label.lower()  # the tables name what they show
    for bad, words in (
        ("nope:T=1", "unknown task 'nope'"),
        ("copy:delay=3", "copy has no parameter 'delay'"),
        ("copy:T=ten", "T must be a whole number"),
        ("selective_copy:T=3,tokens=8", "T must be a whole number >= 8"),
    ):
        with pytest.raises(InputError, match=words) as e:
            tasks.parse(bad)
        assert "\n" not in str(e.value)


def test_a_dataset_task_walked_in_order_held_out_and_described(mnist_npz):
    """``in_order``: batch i is examples (i B + k) mod N; ``hold_out``: the last n apart; MNIST-1D's ``length``
    (its generator's final_seq_length) and what its authors published; pixel MNIST's source and pixels in words."""
    split = {"x": np.arange(5)[:, None], "y": np.arange(5)}
    assert [tasks.in_order(split, step, 3)["y"].tolist() for step in range(3)] == [[0, 1, 2], [3, 4, 0], [1, 2, 3]]
    kept, held = tasks.hold_out(split, 2)
    assert kept["y"].tolist() == [0, 1, 2] and held["y"].tolist() == [3, 4] and held["x"].shape == (2, 1)
    stretched = tasks.parse("mnist1d:length=60")
    assert stretched.spec == "mnist1d:length=60" and tasks.parse("mnist1d").spec == "mnist1d"
    assert stretched.arrays()["x_train"].shape == (4000, 60, 1) and stretched.published() == {}
    shuffled = tasks.MNIST1D(shuffled=True).published()
    assert shuffled["readme"]["GRU (bidirectional, 6 units, flattened readout)"] == 0.57
    assert (
        shuffled["runs"]["2020 (d18aed1)"]["1000"] == 0.572 and list(shuffled["runs"]["2020 (d18aed1)"])[-1] == "6000"
    )
    assert tasks.MNIST1D(data_seed=7).published() == {} and tasks.MNIST1D().describe()["order"] == "sequential"
    psmnist = tasks.PermutedPixelMNIST(data_dir=str(mnist_npz), permutation_seed=3)
    assert psmnist.describe() == {
        "name": "MNIST, pixel by pixel",
        "source": str(mnist_npz),
        "order": "permuted (seed 3)",
        "pixels": {"train": "uint8 0-255, divided by 255", "test": "uint8 0-255, divided by 255"},
    }
    assert psmnist.published() == {} and tasks.PixelMNIST(data_dir=str(mnist_npz)).describe()["order"] == (
        "sequential (row by row)"
    )


# -- the protocol -----------------------------------------------------------------


def test_the_grid_grows_until_it_brackets_the_optimum():
    calls = []

    def objective(optimum):
        def score(rates):
            calls.append(list(rates))
            return [(math.log10(r) - math.log10(optimum)) ** 2 for r in rates]

        return score

    found = protocol.bracket(objective(0.05), [1e-3, 1e-2], max_grow=3, ratio=10)
    assert found["rates"] == pytest.approx([1e-3, 1e-2, 1e-1, 1.0]) and found["best"] == pytest.approx(0.1)
    assert found["edge"] is None and found["grown"] == 2
    assert calls == [[1e-3, 1e-2], [pytest.approx(0.1)], [pytest.approx(1.0)]]  # one new point a round
    # a limit that stops the growth leaves the rate flagged at its edge; the low side likewise
    assert protocol.bracket(objective(0.05), [1e-3, 1e-2], max_grow=1, ratio=10)["edge"] == "high"
    low = protocol.bracket(objective(1e-6), [1e-3, 1e-2], max_grow=2, ratio=10)
    assert low["rates"][0] == pytest.approx(1e-5) and low["edge"] == "low"
    # one rate brackets nothing: flagged "one" (lr=), never grown, whatever the limit; diverged, it looks lower
    one = protocol.bracket(objective(0.05), [1e-3], max_grow=2, ratio=10)
    assert one["edge"] == "one" and one["rates"] == [1e-3] and one["grown"] == 0
    assert protocol.bracket(lambda r: [math.nan] * len(r), [1e-3], max_grow=1, ratio=10)["edge"] == "low"
    # a diverged rate (NaN) is never the best
    assert protocol.bracket(lambda r: [math.nan, 1.0, 2.0][: len(r)], [1e-3, 3e-3, 1e-2], 0, 3)["best"] == 3e-3


def test_hidden_sizes_match_the_parameter_target():
    copy = tasks.parse(f"copy:T=5,{SMALL}")
    for name in ("lstm", "lru", "cornn"):
        count = lambda H: protocol.count_params(copy, protocol.spec_of(name, H))
        hidden, got = protocol.match_hidden(count, 3000)
        assert abs(got - 3000) <= 300 and got == count(hidden)
        assert abs(count(hidden + 1) - 3000) >= abs(got - 3000) <= abs(count(max(hidden - 1, 1)) - 3000)
    with pytest.raises(InputError, match=r"no hidden size gives 20 parameters within ±10%: the closest, H=1"):
        protocol.match_hidden(lambda H: protocol.count_params(copy, protocol.spec_of("gru", H)), 20)
    # a count that jumps over the target (H = 1 -> 100, 2 -> 400) has no H within 10% of 240
    with pytest.raises(InputError, match="H=1, has 100"):
        protocol.match_hidden(lambda H: 100 * H * H, 240)


def test_validation_selection_picks_the_checkpoint_of_the_lowest_validation_loss():
    steps = [10, 20, 30, 40]
    valid_sn = np.array([[3.0, 1.0, 2.0, 2.5], [3.0, 2.0, 1.5, 0.5], [np.nan, np.nan, np.nan, np.nan]])
    test_sn = np.array([[0.1, 0.9, 0.5, 0.4], [0.1, 0.2, 0.3, 0.8], [0.0, 0.0, 0.0, 0.0]])
    assert protocol.selected_steps(valid_sn).tolist() == [1, 3, 3]  # a run that diverged: its last
    assert protocol.at_selected(test_sn, valid_sn).tolist() == [0.9, 0.8, 0.0]
    assert protocol.first_step(steps, valid_sn, lambda v: v <= 1.5) == [20, 30, None]
    assert protocol.median_step([20, 30, None]) == 30 and protocol.median_step([20, None, None]) is None
    # a diverging evaluation after the best is never selected
    assert protocol.selected_steps(np.array([[2.0, 1.0, np.inf, np.nan]])).tolist() == [1]


def test_refreshing_a_results_file_recomputes_its_references_and_steps_from_its_curves(tmp_path):
    task = tasks.parse(f"copy:T=5,{SMALL}")
    reference = task.memoryless("validation")["loss"]
    stale = {"validation": {"loss": 0.5 * reference}, "test": {"loss": 0.5 * reference}}
    curve = [[2 * reference, 1.01 * reference, reference], [2 * reference, 1.03 * reference, 1.03 * reference]]
    results = {
        "tasks": {task.spec: {"title": "copy", "memoryless": stale, "reference_tolerance": 0.02}},
        "pairs": {
            task.spec: {
                "m": {
                    "steps_to_memoryless": [None, None],
                    "curve": {"steps": [10, 20, 30], "validation_loss": curve + [[math.nan] * 3]},
                }
            }
        },
    }
    kept = json.dumps(results)
    out = protocol.refresh_references(results)
    assert json.dumps(results) == kept  # the input is left as it was
    info = out["tasks"][task.spec]
    assert info["memoryless"] == protocol.task_summary(task)["memoryless"] and info["title"] == "copy"
    assert info["reference_fit"] == task.reference_fit and "training stream" in info["reference_fit"]
    # within 2% of the reference from step 20 in the first run; 3% above it, never; diverged, never
    assert out["pairs"][task.spec]["m"]["steps_to_memoryless"] == [20, None, None]
    record = out["references_refreshed"]
    assert record["rule"] == protocol.REFERENCE_RULE and record["before"][task.spec]["memoryless"] == stale
    assert record["before"][task.spec]["steps_to_memoryless"] == {"m": [None, None]}
    # refreshed again: the same file, the first values replaced still recorded
    assert json.dumps(protocol.refresh_references(out)) == json.dumps(out)
    # the same through docs/results/publish.py, in place
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    load_publish().main(["--refresh-references", str(path)])
    assert json.dumps(json.loads(path.read_text())) == json.dumps(out)


def load_publish():
    import importlib.util

    spec = importlib.util.spec_from_file_location("publish", ROOT / "docs" / "results" / "publish.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_sweep_axis_is_chosen_on_validation_and_a_diverged_value_never_is():
    """``choose_on_validation``: per value the seeds' summaries; the lowest median validation loss
    wins (a diverged seed left out of its median), a value whose every seed diverged never does,
    and when every value diverged the first is kept."""
    lr_s = np.array([1e-3, 1e-3, 1e-2, 1e-2, 1e-1, 1e-1])
    valid_s = np.array([0.5, 0.7, 0.4, np.nan, np.nan, np.nan])
    test = {"loss": valid_s + 1, "accuracy": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])}
    best, rows = protocol.choose_on_validation((1e-3, 1e-2, 1e-1), lr_s, valid_s, test)
    assert [list(r) for r in rows] == [["learning_rate", "validation_loss", "loss", "accuracy"]] * 3
    assert best is rows[1] and best["learning_rate"] == 1e-2  # 0.4 (one seed diverged) beats 0.6
    assert best["validation_loss"]["diverged"] == 1 and best["accuracy"]["per_seed"] == [0.3, 0.4]
    assert rows[0]["validation_loss"]["median"] == 0.6 and rows[0]["loss"]["median"] == 1.6
    nothing = np.full(6, np.nan)
    assert protocol.choose_on_validation((1e-3, 1e-2, 1e-1), lr_s, nothing, {})[0]["learning_rate"] == 1e-3
    clip_s = np.array([0.0, 1.0, 0.0, 1.0])
    best, _ = protocol.choose_on_validation((0.0, 1.0), clip_s, np.array([2.0, 1.0, 3.0, 1.5]), {}, name="clip")
    assert best["clip"] == 1.0


def test_the_metric_sums_and_the_batch_loss_are_the_tasks_per_example_metrics():
    """``metric_sums``: weighted sums of ``per_example`` (weight 0 leaves an example out); ``batch_loss``:
    their means over a batch, the loss apart."""
    import jax

    task = tasks.MNIST1D()
    model = task.model(zoo.make_layer("gru", 3))
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(4, 6, 1)).astype(np.float32), "y": np.array([0, 3, 3, 9])}
    params = model.init(jax.random.key(0), batch["x"])
    logits = np.asarray(model.apply(params, batch["x"]))
    ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]))
    hits = (logits.argmax(-1) == batch["y"]).astype(np.float32)
    weight = np.array([1.0, 1.0, 0.0, 1.0], np.float32)
    sums = protocol.metric_sums(task, model)(params, batch, weight)
    assert float(sums["loss"]) == pytest.approx(float(ce @ weight), rel=1e-6)
    assert float(sums["accuracy"]) == float(hits @ weight)
    loss, metrics = protocol.batch_loss(task, model)(params, batch, None)
    assert float(loss) == pytest.approx(float(ce.mean()), rel=1e-6) and list(metrics) == ["accuracy"]
    assert float(metrics["accuracy"]) == pytest.approx(float(hits.mean()))


# -- the script ---------------------------------------------------------------------


def script_env(folder) -> dict:
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]), "JAX_PLATFORMS": "cpu"}


def launch(folder, out, *extra, log=subprocess.PIPE):
    """The script, with ``tiny`` registered first (``folder/tiny_cell.py``)."""
    code = f"import runpy, sys, tiny_cell; sys.argv = {[str(SCRIPT), *TINY, '--out', str(out), *extra]!r}; "
    code += f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=folder, env=script_env(folder), stdout=log, stderr=subprocess.STDOUT
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Two tasks x three models, one of them registered outside rnnlab, with a compile cache the
    later runs share."""
    folder = tmp_path_factory.mktemp("benchmark")
    (folder / "tiny_cell.py").write_text(TINY_CELL)
    out = folder / "uninterrupted"
    proc = launch(folder, out, "--compile-cache", str(folder / "cache"))
    log = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, log[-3000:]
    return folder, out


def comparable(out) -> dict:
    """results.json without what differs between sessions (times, compiles, the folder)."""
    results = json.loads((out / "results.json").read_text())
    for pairs in results["pairs"].values():
        for pair in pairs.values():
            pair["rounds"] = [r["name"] for r in pair["rounds"]]
    return {k: results[k] for k in ("protocol", "tasks", "models", "pairs")}


def test_a_quick_run_ranks_every_model_on_every_task(quick):
    folder, out = quick
    results = json.loads((out / "results.json").read_text())
    assert list(results["models"]) == ["gru", "mingru", "tiny"]
    assert results["models"]["tiny"]["description"] == "half-leaky tanh RNN"
    assert results["protocol"]["steps"] == 10 and results["protocol"]["sequences_seen"] == 160
    for pairs in results["pairs"].values():
        assert set(pairs) == {"gru", "mingru", "tiny"}
        for pair in pairs.values():
            assert abs(pair["parameters"] - 400) <= 40
            assert len(pair["test_selected"]["per_seed"]) == 3 and len(pair["curve"]["steps"]) == 2
            assert pair["learning_rate"] in pair["learning_rates"] and pair["clip_norm"] in (0.0, 1.0)
            assert len(pair["settings"]) == 4  # 2 rates x clipping off / norm 1
    board = (out / "leaderboard.md").read_text()
    assert board == protocol.render(results)
    assert "| tiny |" in board and "validation-selected step" in board and "final step" in board
    assert all((out / f"curves_{protocol.slug(spec)}.png").exists() for spec in results["pairs"])
    assert results["compile"]["programs"] >= 1 and results["totals"]["rounds"] == 6


def test_sigkill_then_resume_gives_identical_results(quick):
    folder, uninterrupted = quick
    out = folder / "killed"
    proc = launch(folder, out, "--compile-cache", str(folder / "cache"), log=subprocess.DEVNULL)
    marker = out / "checkpoints" / f"adding_T_5_{SMALL.replace('=', '_').replace(',', '_')}" / "mingru" / "r0" / "5"
    deadline = time.time() + 300
    while not (marker / "commit_success.txt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (marker / "commit_success.txt").exists() and not (out / "results.json").exists()
    resumed = launch(folder, out, "--compile-cache", str(folder / "cache"), "--resume")
    log = resumed.communicate(timeout=600)[0].decode()
    assert resumed.returncode == 0, log[-3000:]
    assert comparable(out) == comparable(uninterrupted)


@pytest.fixture
def refusing_model():
    """A model whose cell takes two input features only: it runs the adding task, not a token task."""
    from rnnlab.cells import ElmanCell

    def cell(H, **options):
        class TwoInputs(ElmanCell):
            def init(self, key, input_size, dtype=None):
                if input_size != 2:
                    raise ValueError(f"this cell reads 2 input features, got {input_size}")
                return super().init(key, input_size)

        return TwoInputs(H, **options)

    zoo.register("two_inputs", zoo.NamedModel(label="two inputs", description="an Elman cell of 2 inputs", cell=cell))
    yield "two_inputs"
    del zoo.MODELS["two_inputs"]


def digests(folder) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "change, words",
    [
        ({"--tasks": ["nope"]}, "unknown task 'nope'"),
        ({"--tasks": ["copy:T=5,delay=2"]}, "copy has no parameter 'delay'"),
        ({"--budget": ["8"]}, "a budget of 8 sequences is under one batch of 16"),
        ({"--params": ["12"]}, "no hidden size gives 12 parameters within ±10%"),
        ({"--models": ["gru", "two_inputs"]}, "model two_inputs cannot run task copy:T=5"),
        ({"--models": ["gru", "nonesuch"]}, "unknown model 'nonesuch'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_saved_is_lost(quick, refusing_model, change, words, capsys):
    from conftest import load_script

    benchmark = load_script("benchmark")
    _, saved = quick
    before = digests(saved)
    argv = list(TINY)
    change = {"--models": ["gru"]} | change  # tiny is registered in the script's process, not here
    for flag, values in change.items():
        start = argv.index(flag) + 1
        end = next((i for i in range(start, len(argv)) if argv[i].startswith("--")), len(argv))
        argv[start:end] = values
    for out, resume in ((saved, ["--resume"]), (saved.parent / "fresh", [])):
        with pytest.raises(SystemExit) as exit_:
            benchmark.cli(benchmark.main, [*argv, "--out", str(out), *resume])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "error:" in err and words in err, err
    assert digests(saved) == before and not (saved.parent / "fresh").exists()


# -- the committed leaderboard ----------------------------------------------------------


def test_the_benchmark_doc_shows_the_committed_leaderboard():
    """docs/benchmark.md holds the tables ``protocol.render`` makes of docs/results/benchmark.json."""
    results = json.loads((ROOT / "docs" / "results" / "benchmark.json").read_text())
    doc = " ".join((ROOT / "docs" / "benchmark.md").read_text().split())
    assert " ".join(protocol.render(results).split()) in doc
    assert f"{results['totals']['programs']} programs compiled" in doc and results["command"] in doc


# -- what docs/benchmark.md says of the committed leaderboard ------------------------------

NAMES = {
    "rnn": "the tanh RNN",
    "irnn": "the IRNN",
    "lstm": "the LSTM",
    "lstm_chrono": "the chrono LSTM",
    "gru": "the GRU",
    "exprnn": "expRNN",
    "indrnn": "IndRNN",
    "cornn": "coRNN",
    "lru": "the LRU",
    "mingru": "minGRU",
    "minlstm": "minLSTM",
}
WORDS = {1: "one", 2: "two", 3: "three"}


def flowing(text: str) -> str:
    return " ".join(text.split())


def acc(x: float) -> str:
    return f"{x:.3f}"


def span(values, fmt=acc) -> str:
    """The seeds' range, lowest–highest (with 3 seeds the quartiles are not seeds)."""
    return f"{fmt(min(values))}–{fmt(max(values))}"


def best_valid(pair: dict) -> list[float]:
    """Each seed's lowest validation loss, from the stored curve."""
    return [float(np.nanmin(v)) for v in np.array(pair["curve"]["validation_loss"], np.float64)]


def seeds(pair: dict, which: str = "selected") -> list[float]:
    return pair[f"test_{which}"]["per_seed"]


def task_of(bench: dict, name: str, shuffled: bool = False) -> str:
    return next(t for t in bench["tasks"] if t.split(":")[0] == name and ("shuffled=1" in t) == shuffled)


def joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def final_moves(bench: dict, fmt=acc) -> dict:
    """Per task, the cells whose printed median differs between the selected and the final step:
    ``[(model, selected, final, final - selected)]``."""
    moves = {}
    for spec, pairs in bench["pairs"].items():
        fmt = acc if bench["tasks"][spec]["metric"] == "accuracy" else (lambda x: f"{x:.3g}")
        moves[spec] = [
            (
                m,
                fmt(p["test_selected"]["median"]),
                fmt(p["test_final"]["median"]),
                p["test_final"]["median"] - p["test_selected"]["median"],
            )
            for m, p in pairs.items()
            if fmt(p["test_selected"]["median"]) != fmt(p["test_final"]["median"])
        ]
    return moves


def flagged(bench: dict, edge: str) -> list[str]:
    """The cells whose best rate ends at ``edge`` of the grown grid, task by task."""
    out = []
    for spec, pairs in bench["pairs"].items():
        models = [m for m, p in pairs.items() if p["lr_edge"] == edge]
        if models:
            out.append(f"{spec} {', '.join(models)}")
    return out


def benchmark_doc_fragments(bench: dict) -> list[str]:
    """What docs/benchmark.md says of the committed leaderboard, rendered from its file."""
    copy_, selective = task_of(bench, "copy"), task_of(bench, "selective_copy")
    adding, sequential, shuffled = task_of(bench, "adding"), task_of(bench, "mnist1d"), task_of(bench, "mnist1d", True)
    info = bench["tasks"]
    ref = {t: info[t]["memoryless"]["validation"]["loss"] for t in info}
    tolerance = info[copy_]["reference_tolerance"]
    steps = bench["protocol"]["steps"]
    pairs = lambda t: bench["pairs"][t]
    above = lambda t, values: [v / ref[t] - 1 for v in values]
    fragments = [
        # the protocol and the tasks
        f"comes within {tolerance:.0%} of the task's memoryless reference (`L_val ≤ {1 + tolerance:g} L_mem`)",
        f"fitted on training data ({info[copy_]['reference_fit'].split(' (')[0]}, or the training split)",
    ]
    # copy
    c = pairs(copy_)
    failed = [m for m in ("irnn", "cornn") if all(s is None for s in c[m]["steps_to_memoryless"])]
    assert failed == ["irnn", "cornn"]
    gap = above(copy_, best_valid(c["irnn"]) + best_valid(c["cornn"]))
    rnn_reached = sum(s is not None for s in c["rnn"]["steps_to_memoryless"])
    lstm_gap = max(above(copy_, best_valid(c["lstm"])))
    assert all(s is not None for s in c["lstm"]["steps_to_memoryless"]) and lstm_gap <= tolerance < min(gap)
    chrono = sorted(seeds(c["lstm_chrono"]), reverse=True)
    chance = 1 / 8
    fragments += [
        f"Only expRNN, whose orthogonal recurrence carries the symbols unchanged, recalls most of them "
        f"({acc(c['exprnn']['test_selected']['median'])})",
        f"validation loss {ref[copy_]:.4f} against 10 ln 8 / {info[copy_]['sequence_length']} = "
        f"{10 * math.log(8) / info[copy_]['sequence_length']:.4f} in expectation",
        f"The IRNN and coRNN never come within {tolerance:.0%} of it (best validation losses "
        f"{span(best_valid(c['irnn']), lambda x: f'{x:.3f}')} and {span(best_valid(c['cornn']), lambda x: f'{x:.3f}')}, "
        f"{100 * min(gap):.0f}–{100 * max(gap):.0f}% above it)",
        f"the tanh RNN in {WORDS[rnn_reached]} seed of {WORDS[len(c['rnn']['steps_to_memoryless'])]} "
        f"({span(best_valid(c['rnn']), lambda x: f'{x:.4f}')})",
        f"the LSTM in every seed ({span(best_valid(c['lstm']), lambda x: f'{x:.4f}')}, at most "
        f"{100 * lstm_gap:.1f}% above it; median step {protocol.median_step(c['lstm']['steps_to_memoryless']):.0f} "
        f"of {steps})",
        f"recalls at chance ({acc(c['lstm']['test_selected']['median'])} against the reference's "
        f"{acc(info[copy_]['memoryless']['test']['accuracy'])}; chance 1/8)",
        f"the chrono LSTM in two of its three seeds ({acc(chrono[0])}, {acc(chrono[1])}; the third "
        f"{acc(chrono[2])}, chance)",
        joined([f"{NAMES[m]} ({span(seeds(c[m]))})" for m in ("gru", "indrnn", "lru", "mingru", "minlstm")])
        + " recall more than chance in every seed",
    ]
    error = math.sqrt(chance * (1 - chance) / (256 * 10))  # the test set's 2560 answers
    assert chrono[2] < chance + 2 * error < chrono[1]
    assert all(min(seeds(c[m])) > chance + 4 * error for m in ("gru", "indrnn", "lru", "mingru", "minlstm"))
    # selective copy
    s = pairs(selective)
    at_chance = ("rnn", "lstm", "cornn", "lru")
    first_eval = bench["protocol"]["eval_every"]
    assert all(protocol.median_step(p["steps_to_memoryless"]) == first_eval for p in s.values())
    flat = [v for m in at_chance for v in best_valid(s[m])]
    others = {m: p["test_selected"]["median"] for m, p in s.items() if m not in at_chance}
    assert max(others, key=others.get) == "gru"
    fragments += [
        f"validation loss {ref[selective]:.4f} against ln 8 = {math.log(8):.4f}",
        f"every model's median seed reaches it at the first evaluation (step {first_eval})",
        f"{joined([NAMES[m] for m in at_chance])} stay at it (best validation losses "
        f"{span(flat, lambda x: f'{x:.4f}')}, at most {100 * max(above(selective, flat)):.1f}% above it) and "
        f"recall at chance ({span([v for m in at_chance for v in seeds(s[m])])} per seed)",
        f"recall more (medians {span(others.values())}, the GRU best at {acc(others['gru'])})",
        f"expRNN included ({acc(s['exprnn']['test_selected']['median'])}, seeds {span(seeds(s['exprnn']))}, "
        f"against {acc(c['exprnn']['test_selected']['median'])} on the copy task)",
        f"at {bench['protocol']['sequences_seen']} sequences and T = {selective.split('=')[1]}",
    ]
    # adding
    a = pairs(adding)
    g3 = lambda x: f"{x:.3g}"
    assert [m for m, p in a.items() if p["test_selected"]["median"] <= info[adding]["solved"]] == ["gru"]
    fragments += [
        f"The GRU alone solves it (bold; MSE {g3(a['gru']['test_selected']['median'])}, seeds "
        f"{span(seeds(a['gru']), g3)}",
        f"the MSE of predicting the mean training target (validation {ref[adding]:.3f}, about 1/6)",
        f"the IRNN below it with a wide spread (seeds {span(seeds(a['irnn']), g3)} at the selected step)",
    ]
    # MNIST-1D
    q, sh = pairs(sequential), pairs(shuffled)
    medians = {m: p["test_selected"]["median"] for m, p in q.items()}
    assert sorted(medians, key=medians.get)[-2:] == ["lstm_chrono", "gru"]
    assert q["gru"]["lr_edge"] == q["lstm_chrono"]["lr_edge"] == sh["lstm_chrono"]["lr_edge"] == "high"
    assert min(seeds(q["gru"])) < q["irnn"]["test_selected"]["median"]
    sh_medians = {m: p["test_selected"]["median"] for m, p in sh.items()}
    assert max(sh_medians, key=sh_medians.get) == "lstm_chrono"
    assert min(seeds(sh["lstm_chrono"])) < max(seeds(sh["lstm"]))
    minimal = [v for m in ("mingru", "minlstm") for v in seeds(q[m])]
    assert q["mingru"]["lr_edge"] == q["minlstm"]["lr_edge"] == "low"
    fragments += [
        f"validation loss {ref[sequential]:.4f} against ln 10 = {math.log(10):.4f}",
        f"test accuracy {acc(info[sequential]['memoryless']['test']['accuracy'])}, the share of the test set "
        "of the most frequent training class",
        f"the chrono LSTM (seeds {span(seeds(q['lstm_chrono']))}) and the GRU ({span(seeds(q['gru']))}) score "
        f"highest, both at the top edge of their grids (lr↑); the GRU's worst seed is below the IRNN's median "
        f"({acc(q['irnn']['test_selected']['median'])})",
        f"the chrono LSTM's median is the highest ({acc(sh_medians['lstm_chrono'])}, seeds "
        f"{span(seeds(sh['lstm_chrono']))}, lr↑), its lowest seed below the LSTM's best "
        f"({acc(max(seeds(sh['lstm'])))})",
        f"minGRU and minLSTM stay at chance on the sequential digits (test accuracy {span(minimal)} per seed)",
    ]
    # the final-step table
    moves = final_moves(bench)
    word = {sequential: "sequential", shuffled: "shuffled"}
    part = lambda t, sign: ", ".join(f"{m} {x} → {y}" for m, x, y, d in moves[t] if d * sign > 0)
    fell = [f"{part(t, -1)} ({word[t]})" for t in (sequential, shuffled) if part(t, -1)]
    rose = [f"{part(t, 1)} ({word[t]})" for t in (sequential, shuffled) if part(t, 1)]
    drops = [
        (sel - fin, m, sel, fin)
        for t in (sequential, shuffled)
        for m, p in pairs(t).items()
        for sel, fin in zip(seeds(p), seeds(p, "final"))
    ]
    drop, worst, sel, fin = max(drops)
    assert worst == "gru" and drop > 0.2
    worse = sorted(((d, m, x, y) for m, x, y, d in moves[adding] if d > 0), reverse=True)
    copies = [(abs(d), m, t, x, y) for t in (copy_, selective) for m, x, y, d in moves[t]]
    most = max(copies)
    fragments += [
        f"On MNIST-1D the medians fell for {'; '.join(fell)} and rose for {'; '.join(rose)}",
        f"the GRU's sequential median hides a seed that fell from {acc(sel)} to {acc(fin)} (its q25 from "
        f"{acc(q['gru']['test_selected']['q25'])} to {acc(q['gru']['test_final']['q25'])})",
        f"adding the final median MSE is higher than the selected one for {len(worse)} of the {len(a)} models, "
        f"most for {NAMES[worse[0][1]]} ({worse[0][2]} → {worse[0][3]}) and {NAMES[worse[1][1]]} "
        f"({worse[1][2]} → {worse[1][3]})",
        f"on the copy tasks the medians move by at most {most[0]:.3f} ({NAMES[most[1]]} on "
        f"{info[most[2]]['title']}, {most[3]} → {most[4]})",
    ]
    # the flags
    edges = [p["lr_edge"] for ps in bench["pairs"].values() for p in ps.values()]
    high, low = flagged(bench, "high"), flagged(bench, "low")
    lr_points, clip = bench["protocol"]["lr_points"], bench["protocol"]["clip_norms"]
    fragments += [
        f"The grid of {WORDS[lr_points]} rates grows by at most {bench['protocol']['lr_grow']} rate (`--lr-grow {bench['protocol']['lr_grow']}`), so it "
        f"brackets the best rate in only {edges.count(None)} of the {len(edges)} cells: {edges.count('high')} end at "
        f"the top edge (`lr↑`) and {edges.count('low')} at the bottom (`lr↓`)",
        f"`lr↑`: {'; '.join(high)}.",
        f"`lr↓`: {'; '.join(low)}.",
        f"nor was clipping swept (`--clip {bench['config']['clip']}`: every run clipped at global norm {clip[0]:g})",
    ]
    assert clip == [1.0] and bench["config"]["clip"] == "norm:1"
    assert a["gru"]["lr_edge"] == "high"
    # the refresh of the references
    before = bench["references_refreshed"]["before"]
    changed = sum(
        protocol.median_step(before[t]["steps_to_memoryless"][m]) != protocol.median_step(p["steps_to_memoryless"])
        for t, ps in bench["pairs"].items()
        for m, p in ps.items()
    )
    fragments += [
        f"the copy task's in-sample validation reference was {before[copy_]['memoryless']['validation']['loss']:.4f} "
        f"and its test accuracy {acc(before[copy_]['memoryless']['test']['accuracy'])}, against {ref[copy_]:.4f} "
        f"and {acc(info[copy_]['memoryless']['test']['accuracy'])} now; {changed} of the {len(edges)} cells' "
        f"median steps to it changed",
        f"the LSTM's on the copy task from — to {protocol.median_step(c['lstm']['steps_to_memoryless']):.0f}",
    ]
    assert protocol.median_step(before[copy_]["steps_to_memoryless"]["lstm"]) is None
    return fragments


def test_the_benchmark_doc_says_what_the_committed_leaderboard_holds():
    bench = json.loads((ROOT / "docs" / "results" / "benchmark.json").read_text())
    doc = flowing((ROOT / "docs" / "benchmark.md").read_text())
    missing = [f for f in benchmark_doc_fragments(bench) if flowing(f) not in doc]
    assert not missing, f"docs/benchmark.md does not say (or no longer says) what its results hold: {missing}"
    # what the review found wrong stays gone
    for stale in (
        "fitted on the very set it is scored on",
        "(uRNN, expRNN)",
        "another skill than carrying",
        "The tanh and ReLU RNNs, the LSTM and coRNN never",
    ):
        assert stale not in doc, stale


def test_the_committed_leaderboard_holds_the_references_the_library_computes():
    """docs/results/benchmark.json's memoryless references are the library's (fitted on training
    data), and each pair's steps to them follow from its stored curve; on selective copy and
    MNIST-1D the reference is what a uniform guess scores (ln 8, ln 10)."""
    bench = json.loads((ROOT / "docs" / "results" / "benchmark.json").read_text())
    refreshed = protocol.refresh_references(bench)  # float rounding may differ from machine to machine
    for spec, info in bench["tasks"].items():
        again = refreshed["tasks"][spec]
        assert again["reference_fit"] == info["reference_fit"]
        for split, metrics in info["memoryless"].items():
            assert again["memoryless"][split] == pytest.approx(metrics, rel=1e-6), (spec, split)
    assert bench["references_refreshed"]["rule"] == protocol.REFERENCE_RULE
    for spec, info in bench["tasks"].items():
        for pair in bench["pairs"][spec].values():
            curve = pair["curve"]
            reference, tolerance = info["memoryless"]["validation"]["loss"], info["reference_tolerance"]
            steps = protocol.steps_to_reference(
                curve["steps"], np.array(curve["validation_loss"]), reference, tolerance
            )
            assert pair["steps_to_memoryless"] == steps
    uniform = {"selective_copy": math.log(8), "mnist1d": math.log(10)}
    for spec, info in bench["tasks"].items():
        if spec.split(":")[0] in uniform:
            assert info["memoryless"]["validation"]["loss"] == pytest.approx(uniform[spec.split(":")[0]], rel=2e-3)
    # the script's docstring gives the command that made the file
    assert flowing(bench["command"].replace("python experiments/benchmark.py ", "")) in flowing(
        SCRIPT.read_text().replace("\\\\\n", " ").replace("\\\n", " ")
    )
