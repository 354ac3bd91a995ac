"""Pixel MNIST and MNIST-1D: the loaders on local files in MNIST's schema (no network), the
fixed permutation, MNIST-1D's generator, the script on every model family, and bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import load_script

from rnnlab.data import sequences
from rnnlab.experiment import cli
from rnnlab.validation import InputError


def digit_images(n: int, offset: int = 0) -> np.ndarray:
    """Images whose pixel (r, c) of image k holds ``(k + r * 28 + c) mod 256``: the order is readable back."""
    r, c = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
    return np.stack([(k + offset + r * 28 + c) % 256 for k in range(n)]).astype(np.uint8)


def write_hub_parquet(folder, train: int = 12, test: int = 6, columns=("image", "label")) -> None:
    """The Hub's layout of ylecun/mnist: ``mnist/{train,test}-00000-of-00001.parquet`` with an
    ``Image`` column and a ``ClassLabel``, written by ``datasets`` itself."""
    import datasets
    from PIL import Image

    features = datasets.Features(
        {columns[0]: datasets.Image(), columns[1]: datasets.ClassLabel(names=[str(d) for d in range(10)])}
    )
    for split, n in (("train", train), ("test", test)):
        images = digit_images(n, offset=100 if split == "test" else 0)
        table = datasets.Dataset.from_dict(
            {columns[0]: [Image.fromarray(im, mode="L") for im in images], columns[1]: [k % 10 for k in range(n)]},
            features=features,
        )
        (folder / "mnist").mkdir(parents=True, exist_ok=True)
        table.to_parquet(str(folder / "mnist" / f"{split}-00000-of-00001.parquet"))


def test_the_parquet_loader_reads_shapes_labels_and_pixel_order(tmp_path):
    write_hub_parquet(tmp_path)
    data = sequences.load_mnist(data_dir=tmp_path)
    assert data["x_train"].shape == (12, 28, 28) and data["x_test"].shape == (6, 28, 28)
    np.testing.assert_array_equal(data["y_train"], np.arange(12) % 10)
    np.testing.assert_array_equal(data["x_test"], digit_images(6, offset=100))
    x = sequences.pixel_sequences(data["x_train"])
    assert x.shape == (12, 784, 1) and x.dtype == np.float32
    t = np.arange(784)  # step t reads row t // 28, column t % 28
    np.testing.assert_allclose(x[3, :, 0], ((3 + (t // 28) * 28 + t % 28) % 256) / 255.0)


def test_the_npz_loader_and_the_permutation(tmp_path):
    np.savez(
        tmp_path / "mnist.npz",
        x_train=digit_images(5),
        y_train=np.arange(5),
        x_test=digit_images(2),
        y_test=np.array([7, 9]),
    )
    data = sequences.load_mnist(data_dir=tmp_path / "mnist.npz")
    perm = sequences.fixed_permutation(3, 784)
    assert sorted(perm) == list(range(784)) and not np.array_equal(perm, np.arange(784))
    np.testing.assert_array_equal(perm, sequences.fixed_permutation(3, 784))  # fixed by its seed
    assert not np.array_equal(perm, sequences.fixed_permutation(4, 784))
    permuted = sequences.pixel_sequences(data["x_train"], perm)
    np.testing.assert_array_equal(permuted[:, :, 0], sequences.pixel_sequences(data["x_train"])[:, perm, 0])


def test_every_process_draws_the_same_permutation():
    """A pure function of the seed: another interpreter (another process of a run) draws the same."""
    code = "from rnnlab.data import sequences; print(','.join(map(str, sequences.fixed_permutation(11, 784))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    np.testing.assert_array_equal(np.array(out.strip().split(","), int), sequences.fixed_permutation(11, 784))


def test_mnist1d_is_generated_deterministically_by_seed_and_leaves_the_global_rng_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a, b = sequences.mnist1d(42), sequences.mnist1d(42)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # the generator's set_seed is undone
    assert a["x_train"].shape == (4000, 40, 1) and a["x_test"].shape == (1000, 40, 1)
    assert sorted(np.unique(a["y_train"])) == list(range(10))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["x_train"], sequences.mnist1d(7)["x_train"])
    shuffled = sequences.mnist1d(42, shuffle=True)
    np.testing.assert_array_equal(shuffled["y_train"], a["y_train"])  # the same digits, steps reordered
    assert not np.array_equal(shuffled["x_train"], a["x_train"])
    assert sequences.mnist1d(42, sequence_length=120)["x_train"].shape == (4000, 120, 1)


@pytest.mark.parametrize(
    "models",
    [
        ["mnist1d_gru", "rnn", "irnn"],
        ["lstm", "lstm_chrono", "gru"],
        ["exprnn", "lru", "mingru", "minlstm"],
        ["indrnn", "cornn"],
    ],
)
def test_a_two_step_run_of_every_model_family(tmp_path, models):
    script = load_script("pixel_mnist")
    argv = ["--quick", "--quiet", "--compile-cache", "off", "--steps", "2", "--seeds", "1", "--hidden", "4"]
    argv += ["--train-size", "20", "--test-size", "30", "--models", *models, "--out", str(tmp_path)]
    results = script.main(argv)
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["dataset"]["test_examples"] == 30 and results["dataset"]["sequence_length"] == 40
    for name in models:
        acc = results["test_accuracy"][name]
        assert len(acc["per_seed"]) == 1 and 0 <= acc["median"] <= 1
        # 30 test examples in chunks of 250 (wrapped): each counted once
        assert acc["median"] * 30 == pytest.approx(round(acc["median"] * 30))
        assert results["models"][name]["readout"].startswith("flatten" if name == "mnist1d_gru" else "last")
    if "mnist1d_gru" in models:
        assert results["models"]["mnist1d_gru"]["parameters"] == 5134  # greydanus/mnist1d's GRUBase(1, 10)
    assert (tmp_path / "learning_curves.png").stat().st_size > 0


def test_pixel_mnist_from_local_parquet_files_permuted(tmp_path):
    write_hub_parquet(tmp_path / "data", train=16, test=8)
    script = load_script("pixel_mnist")
    argv = ["--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--permute", "--permutation-seed", "5"]
    argv += ["--models", "lstm", "--hidden", "4", "--steps", "2", "--seeds", "2", "--batch-size", "4"]
    results = script.main(argv + ["--quiet", "--compile-cache", "off", "--out", str(tmp_path / "run")])
    assert results["dataset"]["order"] == "permuted (seed 5)" and results["dataset"]["sequence_length"] == 784
    assert results["dataset"]["train_examples"] == 16 and len(results["test_accuracy"]["lstm"]["per_seed"]) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "mnist", "--data-dir", "/no/such/folder"], "the MNIST data /no/such/folder does not exist"),
        (["--dataset", "mnist", "--permute", "--permutation-seed", "-1"], "--permutation-seed must be >= 0, got -1"),
        (["--permutation-seed", "3"], "--permutation-seed applies to --dataset mnist --permute only"),
        (["--dataset", "mnist", "--sequence-length", "100"], "--sequence-length applies to --dataset mnist1d only"),
        (["--data-dir", "x"], "--data-dir applies to --dataset mnist only"),
        (
            ["--validation-size", "50"],
            "--validation-size holds out examples to pick among several --learning-rate values",
        ),
        (["--models", "mnist1d_gru", "--learning-rate", "0.1"], "--learning-rate set the zoo's models; mnist1d_gru"),
        (
            ["--models", "mnist1d_gru", "--eval-every", "6001"],
            "--eval-every 6001 exceeds the longest model's 6000 steps",
        ),
        (["--readout-init", "xavier"], "--readout-init must be one of"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        models = [] if "--models" in argv else ["--models", "lstm"]
        cli(load_script("pixel_mnist").main, argv + models + ["--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and message in err[-1]
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_file_in_the_wrong_schema_is_named(tmp_path, capsys):
    write_hub_parquet(tmp_path, train=3, test=2, columns=("img", "y"))
    with pytest.raises(
        InputError, match=r"lacks the column\(s\) image, label of MNIST's schema \(image, label\); it has img, y"
    ):
        sequences.load_mnist(data_dir=tmp_path)
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 28, 28)), y_train=np.zeros(2, int))
    with pytest.raises(InputError, match="lacks x_test, y_test"):
        sequences.load_mnist(data_dir=tmp_path / "bad.npz")
    np.savez(
        tmp_path / "small.npz",
        x_train=np.zeros((2, 8, 8)),
        y_train=np.zeros(2, int),
        x_test=np.zeros((1, 8, 8)),
        y_test=np.zeros(1, int),
    )
    with pytest.raises(InputError, match=r"images must be 28 x 28, got an array of shape \(2, 8, 8\)"):
        sequences.load_mnist(data_dir=tmp_path / "small.npz")
    with pytest.raises(InputError, match="the permutation seed must be a whole number >= 0"):
        sequences.fixed_permutation(-2, 784)


def test_a_learning_rate_sweep_picks_on_held_out_training_examples(tmp_path):
    """Several --learning-rate values: every zoo model trains at each (one program), the last
    --validation-size training examples are held out, the rate with the best median validation
    accuracy is kept and the test accuracy reported is that rate's; the authors' GRU keeps its
    recipe and the whole training split."""
    script = load_script("pixel_mnist")
    argv = ["--quick", "--quiet", "--compile-cache", "off", "--steps", "6", "--seeds", "2", "--train-size", "60"]
    argv += ["--test-size", "20", "--validation-size", "20", "--learning-rate", "1e-2", "1e3"]
    results = script.main(argv + ["--models", "mnist1d_gru", "gru", "--out", str(tmp_path)])
    assert results["dataset"]["train_examples"] == 40 and results["dataset"]["validation_examples"] == 20
    gru = results["models"]["gru"]
    valid = [row["validation_accuracy"]["median"] for row in gru["learning_rate_sweep"]]
    best = gru["learning_rate_sweep"][int(np.argmax(valid))]
    assert gru["learning_rate"] == best["learning_rate"]
    assert results["test_accuracy"]["gru"] == best["test_accuracy"]
    authors = results["models"]["mnist1d_gru"]
    assert authors["learning_rate"] == 1e-2 and len(authors["learning_rate_sweep"]) == 1


def test_eval_every_records_the_test_curve_of_the_chosen_rate(tmp_path):
    """--eval-every k: each model's test accuracy after steps k, 2k, ... and the last, per seed of the
    rate kept; the last evaluation is the reported test accuracy and the peak is the curve's best."""
    script = load_script("pixel_mnist")
    argv = ["--quick", "--quiet", "--compile-cache", "off", "--steps", "5", "--seeds", "2", "--train-size", "60"]
    argv += ["--test-size", "20", "--validation-size", "20", "--learning-rate", "1e-2", "1e3", "--eval-every", "2"]
    results = script.main(argv + ["--models", "mnist1d_gru", "gru", "--out", str(tmp_path)])
    for name in ("mnist1d_gru", "gru"):
        curve = results["test_curve"][name]
        assert list(curve["by_step"]) == ["2", "4", "5"]
        assert curve["by_step"]["5"] == results["test_accuracy"][name]
        per_step_s = np.array([v["per_seed"] for v in curve["by_step"].values()]).T
        np.testing.assert_array_equal(curve["peak"]["per_seed"], per_step_s.max(axis=1))
        assert [int(list(curve["by_step"])[n]) for n in per_step_s.argmax(axis=1)] == curve["peak_step"]
    assert "test_curve" not in script.main(argv[:-2] + ["--models", "gru", "--out", str(tmp_path / "none")])


def test_the_readout_drawn_as_torch_linear():
    """--readout-init pytorch: weight and bias U(+-1/sqrt(fan_in)) as torch.nn.Linear draws them;
    the default is Flax's Dense (LeCun normal weight, zero bias)."""
    import jax
    import jax.numpy as jnp

    from rnnlab import zoo
    from rnnlab.linen import SequenceRegressor

    layer = zoo.make_layer("gru", 6, bidirectional=True)
    fan_in = 40 * 2 * 6
    heads = {
        init: SequenceRegressor(layer, 10, readout="flatten", head_init=init).init(
            jax.random.key(0), jnp.zeros((1, 40, 1))
        )["params"]["head"]
        for init in ("lecun", "pytorch")
    }
    bound = 1 / np.sqrt(fan_in)
    torch_w, torch_b = np.asarray(heads["pytorch"]["kernel"]), np.asarray(heads["pytorch"]["bias"])
    assert torch_w.shape == (fan_in, 10) and np.abs(torch_w).max() <= bound and np.abs(torch_b).max() <= bound
    assert np.abs(torch_w).max() > 0.95 * bound and np.all(torch_b != 0)  # the whole interval, a drawn bias
    assert np.std(torch_w) == pytest.approx(bound / np.sqrt(3), rel=0.1)  # the uniform's standard deviation
    lecun_w, lecun_b = np.asarray(heads["lecun"]["kernel"]), np.asarray(heads["lecun"]["bias"])
    assert np.all(lecun_b == 0) and np.std(lecun_w) == pytest.approx(bound, rel=0.1)
    assert np.abs(lecun_w).max() > bound  # a normal, not bounded by the uniform's edge
    with pytest.raises(ValueError, match="unknown head_init 'xavier'"):
        SequenceRegressor(layer, 10, head_init="xavier").init(jax.random.key(0), jnp.zeros((1, 40, 1)))


# -- the library pieces the script is made of ----------------------------------------------


def test_a_recipe_trained_at_a_few_rates_keeps_the_rate_validation_picks(tmp_path):
    """``protocol.train_rates``: every rate x seed in one program on the training split in order, the
    rate with the best median validation metric kept, its seeds' test metric, and the test curve of
    those seeds every ``eval_every`` steps, the last being the final one."""
    import dataclasses

    import jax

    from rnnlab import protocol, tasks, zoo
    from rnnlab.experiment import BaseConfig, RunDir
    from rnnlab.train import OptimConfig, make_optimizer

    @dataclasses.dataclass
    class Config(BaseConfig):
        seeds: int = 2
        eval_every: int = 2

    cfg = Config(out=str(tmp_path), steps=5, checkpoint_every=0, quiet=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6, 1)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int32)
    splits = {"train": {"x": x[:24], "y": y[:24]}, "valid": {"x": x[24:32], "y": y[24:32]}}
    splits["test"] = {"x": x[32:], "y": y[32:]}
    task = tasks.MNIST1D()  # its metric and readout; the data are the splits
    model = task.model(zoo.make_layer("gru", 4))
    optimizer = make_optimizer(OptimConfig("adam", 1e-2), 5)
    rates = (1e-3, 3e-1)
    out = protocol.train_rates(
        RunDir(cfg), cfg, "gru", task, model, splits, rates, optimizer, steps=5, batch_size=8, chunk=3
    )
    valid = [row["validation_accuracy"]["median"] for row in out["learning_rate_sweep"]]
    best = int(np.argmax(valid))
    assert out["learning_rate"] == rates[best]
    assert out["rows"] == [2 * best, 2 * best + 1]  # grid(learning_rate, seed): the kept rate's two seeds
    assert out["learning_rate_sweep"][best]["test_accuracy"]["per_seed"] == out["test"].tolist()
    assert all(a * 8 == round(a * 8) for a in out["test"])  # 8 test examples in chunks of 3: each counted once
    assert list(out["test_curve"]["by_step"]) == ["2", "4", "5"]
    assert out["test_curve"]["by_step"]["5"]["per_seed"] == out["test"].tolist()
    params = model.init(jax.random.key(0), x[:1])
    assert out["parameters"] == sum(np.size(v) for v in jax.tree.leaves(params))


def test_a_dataset_cut_by_the_size_flags():
    from rnnlab.experiment import ConfigError, cut_splits

    arrays = {"x_train": np.arange(10)[:, None], "y_train": np.arange(10), "x_test": np.arange(4)[:, None]}
    arrays["y_test"] = np.arange(4)
    whole = cut_splits(arrays)
    assert set(whole) == {"train", "test"} and len(whole["train"]["y"]) == 10 and len(whole["test"]["y"]) == 4
    cut = cut_splits(arrays, train_size=8, test_size=3, validation_size=2)
    assert cut["train"]["y"].tolist() == list(range(6)) and cut["valid"]["y"].tolist() == [6, 7]
    assert cut["test"]["x"][:, 0].tolist() == [0, 1, 2]
    with pytest.raises(ConfigError, match="--test-size 5 exceeds the 4 examples of the split"):
        cut_splits(arrays, test_size=5)
    with pytest.raises(ConfigError, match=r"--validation-size 8 leaves no training examples \(the split has 8\)"):
        cut_splits(arrays, train_size=8, validation_size=8)


def test_a_test_curve_over_seeds_its_peaks_and_the_runs_evaluations(tmp_path):
    """``curve_summary``: each step over seeds, each seed's best finite value and its first step;
    ``RunDir.curve``: only the records that hold the metric (the evaluations), ``rows`` of the sweep."""
    from rnnlab.experiment import BaseConfig, RunDir
    from rnnlab.metrics import curve_summary

    summary = curve_summary([2, 4, 5], [[0.1, 0.5, 0.5], [np.nan, 0.2, 0.3], [0.4, 0.2, 0.1]])
    assert list(summary["by_step"]) == ["2", "4", "5"] and summary["by_step"]["2"]["diverged_seeds"] == [1]
    assert summary["peak"]["per_seed"] == [0.5, 0.3, 0.4] and summary["peak_step"] == [4, 5, 2]
    run = RunDir(BaseConfig(out=str(tmp_path)))
    log = run.logger("gru")
    for step in (1, 2, 3, 4):
        record = {"step": step, "loss": 1.0, "loss_per_point": [1.0 * step, 2.0, 3.0]}
        log(
            record
            | ({"test_accuracy": 0.5, "test_accuracy_per_point": [0.1 * step, 0.2, 0.3]} if step % 2 == 0 else {})
        )
    steps, test_sn = run.curve("gru", "test_accuracy", [0, 2])
    assert steps == [2, 4] and test_sn.tolist() == [[0.2, 0.4], [0.3, 0.3]]
    assert run.curve("gru", "loss")[1].shape == (3, 4)


def test_a_flag_typed_where_it_does_not_apply_is_refused_in_one_line():
    import types

    from rnnlab.experiment import ConfigError, refuse_inapplicable, refuse_unused

    cfg = types.SimpleNamespace(explicit_flags=frozenset({"data_dir", "rmsprop_decay"}))
    rules = {"hub_name": (False, "applies to --dataset mnist only"), "data_dir": (True, "")}
    refuse_inapplicable(cfg, rules)  # --hub-name was not typed; --data-dir applies
    with pytest.raises(ConfigError, match=r"^--data-dir applies to --dataset mnist only$"):
        refuse_inapplicable(cfg, rules | {"data_dir": (False, "applies to --dataset mnist only")})
    with pytest.raises(ConfigError, match=r"^--rmsprop-decay would do nothing: --optimizer is adam$"):
        refuse_unused(cfg, {"rmsprop_decay": (False, "--optimizer is adam")})


def test_pixels_in_words_and_learning_curves_in_panels_sharing_one_legend():
    import matplotlib.pyplot as plt

    from rnnlab import plots

    assert sequences.pixel_scale(np.zeros((1, 28, 28), np.uint8)) == "uint8 0-255, divided by 255"
    assert sequences.pixel_scale(np.zeros((1, 28, 28), np.float32)) == "floats in [0, 1], used as they are"
    curves = {"gru": ([1, 2, 3], np.ones((2, 3))), "lstm": ([1, 2, 3], np.full((2, 3), 2.0))}
    fig = plots.curve_panels({"loss": (curves, "log"), "accuracy": (curves, "linear")}, title="T = 40", suptitle="x")
    assert len(fig.axes) == 2 and all(ax.get_legend() is None for ax in fig.axes)
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "linear"] and fig.axes[0].get_title() == "T = 40"
    (legend,) = fig.legends
    assert [t.get_text().split(" (")[0] for t in legend.get_texts()] == ["gru", "lstm"]
    assert fig.get_suptitle() == "x"
    plt.close(fig)
