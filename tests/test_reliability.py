"""Values checked where they enter (issue 41): list flags without duplicates, runs too large for
the machine and flags that would do nothing refused before anything is built, data files never
cast, the zoo's entries and the cells' numbers checked at construction, Ctrl-C's line.

Every CLI case fails in the config check or while loading its data, in this process: no training."""

import fcntl
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import load_script

from rnnlab.cells import CoRNNCell, IndRNNCell, LSTMCell
from rnnlab.data import files, sequences, text, timeseries
from rnnlab.experiment import cli, parse_config
from rnnlab.experiment.cli import Progress
from rnnlab.validation import InputError
from rnnlab.zoo import NamedModel

HUGE = "1000000000"  # beyond any machine's memory in every case below

CASES = [
    # -- a list flag takes each value once (the shared rule, every script)
    ("copy_memory", ["--learning-rate", "1e-3", "0.001"], "--learning-rate lists 0.001 twice; give each value once"),
    ("vanishing_gradients", ["--lengths", "50", "100", "50"], "--lengths lists 50 twice"),
    ("sentiment", ["--directions", "bi", "bi"], "--directions lists bi twice"),
    ("parallel_newton", ["--seeds", "1", "1"], "--seeds lists 1 twice"),
    ("adding_problem", ["--models", "rnn", "rnn"], "--models lists rnn twice"),
    ("copy_memory_fair", ["--variants", "lru", "lru"], "--variants lists lru twice"),
    # -- memory before allocation: the flag, then the machine's limit
    (
        "vanishing_gradients",
        ["--clip-perturbations", HUGE],
        f"--clip-perturbations {HUGE} (with --seeds 3, --clip-length 100): the clipping demo's 6000000006 sweep points",
    ),
    (
        "parallel_newton",
        ["--model-lengths", "100000000"],
        "--model-lengths 100000000 (with --model-hidden 64): Newton over",
    ),
    ("pixel_mnist", ["--sequence-length", HUGE], f"--sequence-length {HUGE} (with --dataset mnist1d): the sequences"),
    ("copy_memory", ["--lengths", HUGE], f"--lengths {HUGE} (with --learning-rate 0.001,"),
    ("copy_memory_fair", ["--length", HUGE], f"--length {HUGE} (with --learning-rate 0.001 0.003 0.01,"),
    ("adding_problem", ["--seq-len", HUGE], f"--seq-len {HUGE} (with --learning-rate 0.001,"),
    ("text_generation", ["--seq-len", HUGE], f"--seq-len {HUGE} (with --batch-size 32,"),
    ("forecast", ["--length", HUGE], f"--length {HUGE} (with --window 50,"),
    ("seq2seq", ["--beam", "100000", "--beam-examples", "100000"], "--beam 100000, --beam-examples 100000 (with"),
    ("demo", ["--steps", HUGE], f"--steps {HUGE} (with --seeds 8,"),
    # -- a flag that would do nothing
    ("benchmark", ["--quick", "--steps", "3"], "--steps would do nothing: --budget sets the steps"),
    ("newton_figure2", ["--quick", "--steps", "1"], "--steps would do nothing: nothing trains here"),
    # -- the benchmark's grid and evaluation named by their flags
    (
        "benchmark",
        ["--lr-min", "0.01", "--lr-max", "0.001"],
        "0 < --lr-min <= --lr-max and --lr-points >= 1, got --lr-min",
    ),
    (
        "benchmark",
        ["--lr-points", "1"],
        "--lr-points 1 needs --lr-min equal to --lr-max (the one rate), got 0.001 and 0.01",
    ),
    ("benchmark", ["--budget", "640", "--eval-every", "1000"], "--eval-every 1000 is past the run's 20 steps"),
    ("benchmark", ["--models", "janet"], "unknown model 'janet'; choose from rnnlab.zoo.MODELS"),
    (
        "copy_memory",
        ["--optimizer", "adam", "--rmsprop-decay", "0.9"],
        "--rmsprop-decay would do nothing: --optimizer is adam",
    ),
    (
        "adding_problem",
        ["--models", "gru", "--forget-bias", "3"],
        "--forget-bias would do nothing: no model of --models",
    ),
    (
        "pixel_mnist",
        ["--models", "gru", "--orthogonal-learning-rate", "1e-4"],
        "--orthogonal-learning-rate would do nothing: no model of --models has an orthogonal generator",
    ),
    (
        "vanishing_gradients",
        ["--clip-perturbations", "0", "--clip-perturbation-seed", "3"],
        "--clip-perturbation-seed would do nothing: --clip-perturbations is 0",
    ),
    (
        "text_generation",
        ["--mode", "sample", "--steps", "5"],
        "--steps would do nothing: --mode sample uses the trained",
    ),
    ("text_generation", ["--prime-file", "p.txt"], "--prime-file would do nothing: it is read by --mode sample"),
    ("forecast", ["--csv", "p.csv", "--length", "500"], "--length would do nothing: --csv gives the series"),
    ("sentiment", ["--label-column", "stars"], "--label-column would do nothing: it applies to --train's data"),
    ("seq2seq", ["--pairs", "p.csv", "--num-pairs", "50"], "--num-pairs would do nothing: --pairs gives the pairs"),
    # -- values no consumer takes
    ("adding_problem", ["--seed", str(2**63)], "--seed must be <= 4294967295, got 9223372036854775808"),
    ("forecast", ["--out", ""], "--out must name a folder, got ''"),
    ("parallel_newton", ["--parallel-length", "100000000"], "--parallel-length 100000000 (with --parallel-hidden 32"),
    # -- cells' numbers, from the command line
    ("copy_memory", ["--models", "cornn", "--cell-options", "cornn=gamma:-1"], "coRNN gamma must be >= 0"),
    ("adding_problem", ["--models", "cornn", "--cell-options", "cornn=epsilon:-2"], "coRNN epsilon must be >= 0"),
    (
        "adding_problem",
        ["--models", "indrnn", "--cell-options", "indrnn=input_std:-1"],
        "IndRNN input_std must be >= 0",
    ),
]


@pytest.mark.parametrize("script, argv, words", CASES, ids=[f"{c[0]}:{' '.join(c[1])[:40]}" for c in CASES])
def test_refused_in_one_line(script, argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        out = [] if script == "demo" or "--out" in argv else ["--out", "run"]
        cli(load_script(script).main, argv + out + ([] if script == "demo" else ["--quiet"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if re.match(r"\S+: error: ", line)]
    assert "Traceback" not in err and len(errors) == 1 and words in errors[0], err
    assert not (tmp_path / "run").exists()  # refused before the run folder


def test_help_says_each_value_once(capsys):
    with pytest.raises(SystemExit):
        parse_config(load_script("copy_memory").Config, ["--help"])
    assert re.search(r"--learning-rate .*each value once", " ".join(capsys.readouterr().out.split()))


# -- copy_memory_fair.py through the shared machinery --------------------------------------


def test_fair_typed_flags_beat_quick_and_reach_every_variant():
    fair = load_script("copy_memory_fair")
    cfg = parse_config(fair.Config, ["--quick", "--steps", "3", "--seed", "2"])
    assert (cfg.steps, cfg.length, cfg.hidden) == (3, 10, 8)  # --quick's T and width, the typed steps
    argv = fair.variant_argv("lstm_chrono", cfg, fair.pathlib.Path("out"))
    copy = parse_config(load_script("copy_memory").Config, argv)
    assert (copy.steps, copy.seed, copy.lengths, copy.hidden) == (3, 2, (10,), 8)
    assert copy.cell_options == ("lstm_chrono=t_max:15",)


def test_fair_second_run_into_one_out_names_the_holder(tmp_path, monkeypatch, capsys):
    """Another process holds --out's lock (as a running fair run would): one line naming it, exit 2."""
    out = tmp_path / "fair"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            f"fcntl.flock(fd, {fcntl.LOCK_EX}); os.write(fd, b'pid %d on here' % os.getpid()); print(flush=True); "
            "time.sleep(60)",
            str(out / ".lock"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        holder.stdout.readline()  # the lock is held
        with pytest.raises(SystemExit) as exit_info:
            cli(load_script("copy_memory_fair").main, ["--quick", "--out", str(out), "--quiet"])
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err
    assert f"{out} is in use by another run (pid {holder.pid} on here)" in err


# -- data files: never cast ---------------------------------------------------------------


def mnist_npz(path, x_train, y_train=None):
    y = np.arange(len(x_train)) % 10 if y_train is None else y_train
    np.savez(path, x_train=x_train, y_train=y, x_test=x_train[:2], y_test=y[:2])
    return path


def digits(dtype, high):
    x = np.zeros((4, 28, 28), dtype)
    x[:, 10:18, 12:16] = high
    return x


@pytest.mark.parametrize(
    "x, y, words",
    [
        (digits(np.int16, 999), None, "int16 pixels in [0, 999], beyond 0-255"),
        (digits(np.float32, 254.0), None, "float32 pixels in [0, 254], not in [0, 1]"),
        (digits(np.float64, np.nan), None, "pixels include NaN or inf"),
        (digits(np.bool_, True), None, "pixels of dtype bool"),
        (digits(np.uint8, 0), None, "every pixel of every image is 0"),
        (digits(np.uint8, 255), np.array([0, 1, 2, 10]), "labels must be whole numbers 0-9, got int64 in [0, 10]"),
        (digits(np.uint8, 255), np.array([0.0, 1.0, 2.0, 3.0]), "labels must be whole numbers 0-9, got dtype float64"),
    ],
)
def test_mnist_files_are_refused_not_cast(tmp_path, x, y, words):
    with pytest.raises(InputError, match=re.escape(words)):
        sequences.load_mnist(data_dir=mnist_npz(tmp_path / "m.npz", x, y))


def test_mnist_pixels_as_datasets_gives_them_and_floats_said_so(tmp_path, capsys):
    """uint8 0-255 and int16 within it read as uint8 / 255; floats in [0, 1] as they are, with one note."""
    as_uint8 = sequences.load_mnist(data_dir=mnist_npz(tmp_path / "u.npz", digits(np.uint8, 204)))
    as_int16 = sequences.load_mnist(data_dir=mnist_npz(tmp_path / "i.npz", digits(np.int16, 204)))
    as_float = sequences.load_mnist(data_dir=mnist_npz(tmp_path / "f.npz", digits(np.float32, 0.8)))
    assert as_uint8["x_train"].dtype == as_int16["x_train"].dtype == np.uint8
    assert as_float["x_train"].dtype == np.float32
    expected = sequences.pixel_sequences(as_uint8["x_train"])
    np.testing.assert_allclose(sequences.pixel_sequences(as_float["x_train"]), expected, atol=1e-7)
    assert expected.max() == pytest.approx(0.8)
    pixel_mnist = load_script("pixel_mnist")
    argv = ["--dataset", "mnist", "--models", "gru", "--data-dir", str(tmp_path / "f.npz")]
    cfg = parse_config(pixel_mnist.Config, argv)
    _, about = pixel_mnist.load_data(cfg)
    assert about["pixels"] == {
        "train": "floats in [0, 1], used as they are",
        "test": "floats in [0, 1], used as they are",
    }
    note = capsys.readouterr().err.strip()
    assert (
        "\n" not in note and note.startswith("pixel_mnist.py: note: the train and test pixels of") and "[0, 1]" in note
    )


def test_pixel_mnist_refuses_a_wrapping_file_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mnist_npz(tmp_path / "m.npz", digits(np.int16, 999))
    with pytest.raises(SystemExit) as exit_info:
        argv = ["--dataset", "mnist", "--models", "gru", "--data-dir", "m.npz", "--out", "run", "--quiet"]
        cli(load_script("pixel_mnist").main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err
    assert err.endswith(": error: m.npz (train): int16 pixels in [0, 999], beyond 0-255; " + sequences.PIXELS)


def test_csv_numbers_labels_series_and_token_ids_are_refused_not_cast():
    with pytest.raises(InputError, match=r"row 2, column 'v' is '1e39', beyond float32's"):
        files.numeric_cells(["1", "1e39"], "v", "p.csv")
    with pytest.raises(
        InputError,
        match=r"row 2, column 'label': label 100000000000000000000 is not a class id 0..C-1 \(at most 1,000,000",
    ):
        files.class_labels([0, 10**20, 1], "label", "r.csv")
    with pytest.raises(InputError, match="a series must be real numbers, got dtype complex128"):
        timeseries.make_windows(np.array([1 + 2j, 3, 4, 5]), 2)
    with pytest.raises(InputError, match=re.escape("step 2 is 1e+39, not a finite float32 number")):
        timeseries.make_windows(np.array([1.0, 2.0, 1e39, 5.0]), 2)
    with pytest.raises(InputError, match="sequence 1: token ids must be integers, got dtype float64"):
        text.pad_sequences([[1, 2], [2.7, 3.0]])
    with pytest.raises(InputError, match=r"sequence 0: token ids must fit int32, got values in \[1, 2147483648\]"):
        text.pad_sequences([np.array([1, 2**31])])
    ids, lengths = text.pad_sequences([np.array([1, 2], np.int64), [3]])
    assert ids.dtype == np.int32 and ids.tolist() == [[1, 2], [3, 0]] and lengths.tolist() == [2, 1]


def test_sentiment_refuses_a_training_file_as_its_own_test(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.csv").write_text(
        "text,label\n" + "".join(f"w{i} film,{'pos' if i % 2 else 'neg'}\n" for i in range(8))
    )
    with pytest.raises(SystemExit) as exit_info:
        cli(load_script("sentiment").main, ["--train", "r.csv", "--out", "run", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.endswith(
        "--train r.csv is a file, with no test split: give --test (a file of held-out reviews)"
    )


# -- the zoo's entries and the cells' numbers, at construction ---------------------------


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"cell": 42}, "NamedModel cell must be a callable (hidden_size, **options) -> Cell, got 42 (int)"),
        ({"wrap": "Orthogonal"}, "NamedModel wrap must be a callable RNN -> layer or None, got 'Orthogonal'"),
        ({"color": "tab:bleu"}, "NamedModel color must be a matplotlib colour"),
        ({"color": True}, "NamedModel color must be a matplotlib colour"),
        ({"label": ""}, "NamedModel label must be a non-empty string"),
        ({"description": None}, "NamedModel description must be a non-empty string, got None"),
        ({"plain": 1}, "NamedModel plain must be True or False, got 1"),
        ({"needs_t_max": "yes"}, "NamedModel needs_t_max must be True or False"),
        ({"label": "RNN, T = {T}"}, "NamedModel label 'RNN, T = {T}' may use only {forget_bias:g} and {t_max}"),
    ],
)
def test_named_model_fields_are_checked_at_construction(fields, words):
    good = {"label": "RNN", "description": "a tanh RNN", "cell": lambda H, **o: None}
    with pytest.raises((TypeError, ValueError), match=re.escape(words)):
        NamedModel(**good | fields)
    NamedModel(**good, color=(0.1, 0.2, 0.3), wrap=None)  # an RGB tuple is a colour


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: CoRNNCell(4, gamma=-1.0), "coRNN gamma must be >= 0, a finite number, got -1.0"),
        (lambda: CoRNNCell(4, epsilon=float("inf")), "coRNN epsilon must be >= 0, a finite number, got inf"),
        (lambda: CoRNNCell(4, dt=float("nan")), "coRNN dt must be > 0, a finite number, got nan"),
        (lambda: CoRNNCell(4, gamma=True), "coRNN gamma must be >= 0, a finite number, got True"),
        (lambda: IndRNNCell(4, t_max=float("inf")), "IndRNN t_max must be >= 1, a finite number, got inf"),
        (lambda: IndRNNCell(4, input_std=-0.1), "IndRNN input_std must be >= 0"),
        (lambda: LSTMCell(4, forget_bias=float("nan")), "forget_bias must be a finite number, got nan"),
        (lambda: LSTMCell(4, recurrent_gain=0.0), "recurrent_gain must be > 0"),
        (lambda: LSTMCell(4, t_max=float("inf")), "t_max must be > 2, a finite number, got inf"),
    ],
)
def test_cell_numbers_are_checked_at_construction(make, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        make()
    CoRNNCell(4, dt=np.float32(0.1), gamma=np.float64(0.0), epsilon=1)  # NumPy scalars and ints are numbers


# -- Ctrl-C's line ---------------------------------------------------------------------------


def test_the_interrupt_line_says_what_was_trained():
    progress = Progress()
    assert progress.where() == "interrupted before training"
    progress.start("rnn", None)
    progress.logged = 20
    assert progress.where() == "interrupted training rnn, last logged step 20; no checkpoint yet"
    progress.finish("rnn")
    assert progress.where() == "interrupted after training rnn; its checkpoints are saved"
    progress.finish("lstm")
    assert progress.where() == "interrupted after training lstm and 1 model before it; its checkpoints are saved"
    progress.finish("gru", saved=False)  # parallel_newton.py trains without checkpoints
    assert progress.where().endswith(
        "after training gru and 2 models before it; nothing of it is saved: it trains again"
    )


def test_a_sigint_the_shell_ignores_stays_ignored_in_a_save(tmp_path):
    """A background job's SIGINT is ignored: a save neither raises nor exits on one."""
    code = (
        "import os, signal, numpy as np\n"
        "from rnnlab.checkpoint import Checkpointer\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        f"c = Checkpointer({str(tmp_path / 'c')!r})\n"
        "real = c._manager.save\n"
        "c._manager.save = lambda *a, **k: (os.kill(os.getpid(), signal.SIGINT), real(*a, **k))[1]\n"
        "c.save(1, {'w': np.ones(2)}, {})\n"
        "print('saved', c.steps())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["saved", "[1]"], proc.stderr
