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


def test_the_memoryless_reference_is_the_loss_of_an_explicit_memoryless_predictor(mnist_npz):
    # copy: a memoryless model knows the position; its best guess is each position's frequencies
    copy = tasks.parse("copy:T=20")
    data = copy.held_out("validation")
    V, (B, L) = copy.vocab_size, data["y"].shape
    probs_lv = np.stack([np.bincount(data["y"][:, t], minlength=V) / B for t in range(L)])
    explicit = cross_entropy(probs_lv, data["y"], np.ones((B, L)))
    assert copy.memoryless("validation")["loss"] == pytest.approx(explicit, rel=1e-5)
    # and the copy paper's baseline, 10 ln 8 / (T + 20), is that predictor's expected loss
    assert explicit == pytest.approx(synthetic.copy_memory_baseline(20), rel=0.03)
    # MQAR: a query's value is one of `values`, whatever the key: ln(values), measured
    mqar = tasks.parse("mqar:T=32,pairs=4,keys=8,values=8")
    data = mqar.held_out("test")
    answers = data["y"][data["answer"]]
    freq = np.bincount(answers, minlength=mqar.vocab_size) / len(answers)
    assert mqar.memoryless("test")["loss"] == pytest.approx(float(-np.mean(np.log(freq[answers]))), rel=1e-5)
    assert mqar.memoryless("test")["accuracy"] == pytest.approx(freq.max(), rel=1e-5)
    # adding: the best constant is the mean, its MSE the variance (1/6 in expectation)
    adding = tasks.parse("adding:T=20,validation_size=2000")
    y = adding.held_out("validation")["y"].astype(np.float64)
    assert adding.memoryless("validation")["mse"] == pytest.approx(np.var(y), rel=1e-5)
    assert np.var(y) == pytest.approx(synthetic.ADDING_BASELINE_MSE, rel=0.1)
    # a classifier: the class frequencies of the set
    mnist = tasks.parse(f"pixel_mnist:data_dir={mnist_npz},validation_size=10")
    y = mnist.held_out("test")["y"]
    freq = np.bincount(y, minlength=10) / len(y)
    assert mnist.memoryless("test")["loss"] == pytest.approx(float(-np.mean(np.log(freq[y]))), rel=1e-5)
    # the task's own loss scores the explicit predictor: a probability-1 guess costs nothing
    logits = np.log(np.maximum(probs_lv, 1e-30))[None].repeat(B, 0)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, copy.held_out("validation")["y"])
    assert float(np.mean(ce)) == pytest.approx(explicit, rel=1e-5)


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
