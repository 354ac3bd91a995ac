"""Bad inputs, as a new user would try them: each gets one line that names the
flag, file, row or column, exit status 2, and no traceback.

To add a case, add a row to CASES: the script, its arguments, the files the
case needs (name -> text or bytes, written to a fresh folder the script runs
in) and the words the error must contain.  Every case fails before training.
"""

import json
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_script

from rnnlab import RNN
from rnnlab.experiment import cli
from rnnlab.linen import LanguageModel, Seq2Seq, SequenceClassifier
from rnnlab.zoo import make_cell

ROOT = pathlib.Path(__file__).parents[1]

PRICES = "Date,Close\n" + "".join(f"2024-01-{d:02d},{100 + d}\n" for d in range(1, 29))
REVIEWS = "text,label\n" + "".join(
    f"{'a fine film' if i % 2 else 'a dull film'} {i},{'pos' if i % 2 else 'neg'}\n" for i in range(40)
)
NUMBERED = REVIEWS.replace(",pos\n", ",1\n").replace(",neg\n", ",0\n")
PAIRS = "source,target\n" + "".join(f"{a}+{a},{2 * a}\n" for a in range(30))

CASES = [
    # -- numeric flags: checked by the config dataclasses before anything runs
    ("forecast", ["--steps", "-5"], {}, "--steps must be >= 1, got -5"),
    ("vanishing_gradients", ["--lengths", "0", "50"], {}, "--lengths must be >= 2, got 0"),
    ("adding_problem", ["--learning-rate", "1e-3", "0"], {}, "--learning-rate must be > 0.0, got 0.0"),
    ("adding_problem", ["--seeds", "0"], {}, "--seeds must be >= 1, got 0"),
    ("text_generation", ["--val-fraction", "1.5"], {}, "--val-fraction must be < 1.0, got 1.5"),
    ("text_generation", ["--mode", "smaple"], {}, "--mode must be one of train, sample, got 'smaple'"),
    ("seq2seq", ["--clip-norm", "nan"], {}, "--clip-norm must be a finite number, got nan"),
    ("sentiment", ["--cell", "lstmm"], {}, "--cell must be one of rnn, rnn_relu, irnn, lstm, gru, got 'lstmm'"),
    ("sentiment", ["--min-words", "50", "--max-words", "20"], {}, "--max-words must be >= --min-words = 50, got 20"),
    ("vanishing_gradients", ["--models", "lstm", "transformer"], {}, "--models must be one of"),
    ("forecast", ["--num-processes", "2", "--process-id", "2"], {}, "--process-id must be < --num-processes = 2"),
    ("demo", ["--hidden", "0"], {}, "--hidden must be >= 1, got 0"),
    # -- multi-process flags: checked before JAX starts
    (
        "adding_problem",
        ["--num-processes", "2", "--process-id", "1"],
        {},
        "--num-processes/--process-id need --coordinator-address HOST:PORT",
    ),
    (
        "adding_problem",
        ["--coordinator-address", "localhost", "--num-processes", "2", "--process-id", "0"],
        {},
        "--coordinator-address must be HOST:PORT with a port in 1..65535, got 'localhost'",
    ),
    ("forecast", ["--coordinator-address", "localhost:99999"], {}, "got 'localhost:99999'"),
    ("forecast", ["--coordinator-address", "localhost:1234"], {}, "--coordinator-address needs --num-processes"),
    # -- per-model settings and parameter groups (the papers' comparisons)
    ("copy_memory", ["--model-hidden", "lstmm=40"], {}, "--model-hidden names an unknown model 'lstmm'; choose one of"),
    ("adding_problem", ["--model-hidden", "lstm=0"], {}, "--model-hidden 'lstm=0': expected a positive integer"),
    ("adding_problem", ["--model-clip", "rnn"], {}, "--model-clip takes MODEL=VALUE entries, got 'rnn'"),
    ("copy_memory", ["--model-clip", "urnn=off"], {}, "--model-clip names an unknown model 'urnn'"),
    ("copy_memory", ["--model-clip", "rnn=value:0"], {}, "--model-clip 'rnn=value:0': a clip rule is one of off"),
    ("copy_memory", ["--clip", "norm"], {}, "--clip: a clip rule is one of off, norm:X, value:X with X > 0"),
    ("copy_memory", ["--orthogonal-learning-rate", "0"], {}, "--orthogonal-learning-rate must be > 0.0, got 0.0"),
    ("adding_problem", ["--orthogonal-learning-rate=-1e-4"], {}, "--orthogonal-learning-rate must be > 0.0"),
    ("copy_memory", ["--rmsprop-decay", "1"], {}, "--rmsprop-decay must be < 1.0, got 1.0"),
    # -- the linear recurrences' options (the LRU's ring) and evaluation
    (
        "copy_memory",
        ["--models", "lru", "--cell-options", "lru=r_min:0.9,r_max:0.5"],
        {},
        "--cell-options lru: LRU needs 0 <= r_min < r_max <= 1, got r_min=0.9, r_max=0.5",
    ),
    (
        "vanishing_gradients",
        ["--models", "lru", "--cell-options", "lru=max_phase:7"],
        {},
        "--cell-options lru: LRU max_phase must lie in (0, 2*pi], got 7.0",
    ),
    ("adding_problem", ["--models", "lru", "--cell-options", "lru=rmin:0.5"], {}, "lru has no option 'rmin'"),
    (
        "vanishing_gradients",
        ["--models", "lstm_chrono", "--cell-options", "lstm_chrono=rmin:0.5"],
        {},
        "lstm_chrono has no option 'rmin'",
    ),
    (
        "copy_memory",
        ["--models", "lstm", "--cell-options", "lstm=forget_bias:2"],
        {},
        "--cell-options: lstm's forget_bias is the zoo's to set (a script's own flag, where it has one, e.g. --forget-bias)",
    ),
    ("copy_memory", ["--cell-options", "lru=r_min=0.5"], {}, "cell options are KEY:VALUE entries"),
    (
        "copy_memory",
        ["--model-path", "lru=parallel"],
        {},
        "--model-path 'lru=parallel': a path is one of fused, autodiff, remat, newton, quasi_newton, sequential, associative",
    ),
    (
        "copy_memory",
        ["--models", "lru", "--model-path", "lru=fused"],
        {},
        "--model-path lru: path='fused' does not apply to LRUBlock",
    ),
    ("copy_memory", ["--cell-options", "lru=r_min:0.1,r_min:0.9"], {}, "r_min is given twice"),
    ("copy_memory", ["--cell-options", "rnn=spectral_radius:inf"], {}, "spectral_radius must be a finite number"),
    # options parsed by the type the cell's field declares: a bool is true/false, an int stays an int
    (
        "copy_memory",
        ["--models", "rnn", "--cell-options", "rnn=use_bias:maybe"],
        {},
        "--cell-options rnn: use_bias takes bool (declared bool), got 'maybe'",
    ),
    (
        "copy_memory",
        ["--models", "rnn", "--cell-options", "rnn=activation:3"],
        {},
        "--cell-options rnn: unknown activation '3'",
    ),
    (
        "copy_memory",
        ["--models", "rnn", "--cell-options", "lru=r_min:0.5"],
        {},
        "--cell-options 'lru=r_min:0.5': lru is not trained by this run (--models rnn)",
    ),
    (
        "adding_problem",
        ["--models", "rnn", "--model-path", "lru=associative"],
        {},
        "--model-path 'lru=associative': lru is not trained by this run (--models rnn)",
    ),
    ("adding_problem", ["--models", "rnn", "--model-hidden", "gru=8"], {}, "gru is not trained by this run"),
    ("adding_problem", ["--out", "taken"], {"taken": "a file"}, "--out taken is a file, not a folder"),
    (
        "adding_problem",
        ["--models", "rnn", "--model-hidden", "rnn=1000000000"],
        {},
        "--model-hidden rnn=1000000000 (with --learning-rate 0.001,",
    ),
    ("copy_memory", ["--models", "rnn", "--hidden", "3000000"], {}, "--hidden 3000000 (with --lengths 100,"),
    # the parameters alone beyond the machine: rnnlab.sweep.check_fits, before any compile
    (
        "copy_memory",
        ["--models", "rnn", "--hidden", "300000", "--batch-size", "1", "--test-size", "1", "--seeds", "1"],
        {},
        "the run's parameters need about",
    ),
    # -- files
    ("forecast", ["--csv", "missing.csv"], {}, "no such file: missing.csv"),
    ("forecast", ["--csv", "p.csv", "--column", "Open"], {"p.csv": PRICES}, "p.csv has no column 'Open'"),
    (
        "forecast",
        ["--csv", "p.csv"],
        {"p.csv": PRICES.replace(",105\n", ",\n")},
        "p.csv: row 5, column 'Close' is empty or NaN",
    ),
    (
        "forecast",
        ["--csv", "p.csv"],
        {"p.csv": PRICES.replace(",103\n", ",NaN\n")},
        "row 3, column 'Close' is empty or NaN",
    ),
    (
        "forecast",
        ["--csv", "p.csv"],
        {"p.csv": PRICES.replace(",107\n", ",inf\n")},
        "row 7, column 'Close' is inf, not a finite",
    ),
    (
        "forecast",
        ["--csv", "p.csv"],
        {"p.csv": PRICES.replace(",102\n", ",n/a?\n")},
        "row 2, column 'Close' is not a number: 'n/a?'",
    ),
    ("forecast", ["--csv", "p.csv"], {"p.csv": ""}, "p.csv is empty"),
    ("forecast", ["--csv", "p.csv", "--window", "50"], {"p.csv": PRICES}, "has no window of 50"),
    ("forecast", ["--csv", "p.csv", "--time-column", "Year"], {"p.csv": PRICES}, "p.csv has no column 'Year'"),
    ("forecast", ["--time-column", "Year"], {}, "--time-column names a column of --csv; give --csv too"),
    ("text_generation", ["--source", "empty.txt"], {"empty.txt": ""}, "empty.txt is empty"),
    (
        "text_generation",
        ["--source", "old.txt"],
        {"old.txt": "caf\xe9 cr\xe8me\n".encode("latin-1")},
        "old.txt is not UTF-8 text: byte 0xe9 at offset 3",
    ),
    ("text_generation", ["--source", "notes.txt"], {}, "no such file or folder: notes.txt"),
    ("text_generation", ["--source", "."], {"a.csv": "x\n"}, "no .txt files under ."),
    ("text_generation", ["--mode", "sample", "--out", "never-trained"], {}, "no trained run in never-trained"),
    (
        "sentiment",
        ["--train", "r.csv"],
        {"r.csv": REVIEWS.replace(",pos\n", ",\n", 1)},
        "r.csv: row 2, column 'label' is empty",
    ),
    (
        "sentiment",
        ["--train", "r.csv"],
        {"r.csv": REVIEWS.replace("a fine film 3", "", 1)},
        "r.csv: row 4, column 'text' is empty",
    ),
    (
        "sentiment",
        ["--train", "r.csv"],
        {"r.csv": NUMBERED.replace(",0\n", ",-1\n", 1)},
        "r.csv: row 1, column 'label': labels must be class names or integers 0..C-1",
    ),
    (
        "sentiment",
        ["--train", "r.csv", "--test", "t.csv"],
        {"r.csv": REVIEWS, "t.csv": "text,label\ngreat,meh\n"},
        "t.csv: row 1, column 'label': label 'meh' is not one of the classes ['neg', 'pos']",
    ),
    ("sentiment", ["--train", "r.csv", "--label-column", "stars"], {"r.csv": REVIEWS}, "r.csv has no column 'stars'"),
    ("sentiment", ["--train", "r.csv"], {"r.csv": "text,label\ngood,pos\nfine,pos\n"}, "has one class only ('pos')"),
    ("sentiment", ["--train", "r.json"], {"r.json": '{"text": "good", "label": 1'}, "r.json is not valid JSON"),
    (
        "sentiment",
        ["--train", "r.jsonl"],
        {"r.jsonl": '{"text": "good", "label": 1}\n{"text": "bad" "label": 0}\n'},
        "r.jsonl: line 2 is not valid JSON: Expecting ',' delimiter",
    ),
    (
        "seq2seq",
        ["--pairs", "p.csv"],
        {"p.csv": "source,target\n1+1,2\n"},
        "p.csv has 1 pair(s): too few to hold out 1 for validation",
    ),
    (
        "seq2seq",
        ["--pairs", "p.csv"],
        {"p.csv": PAIRS.replace(",6\n", ",\n")},
        "p.csv: row 4, column 'target' is empty",
    ),
    ("seq2seq", ["--pairs", "p.tsv"], {"p.tsv": PAIRS}, "p.tsv: expected a .csv, .json or .jsonl file"),
]


def case_id(case):
    script, argv, _, words = case
    return f"{script}:{' '.join(argv)[:40]}"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_bad_input_is_one_clear_line(case, tmp_path, monkeypatch, capsys):
    script, argv, files, words = case
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.chdir(tmp_path)
    out = [] if "--out" in argv or script == "demo" else ["--out", "run"]
    with pytest.raises(SystemExit) as exit_info:
        cli(load_script(script).main, [*argv, *out, "--quiet"] if script != "demo" else argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if re.match(r"\S+: error: ", line)]
    assert len(error_lines) == 1 and words in error_lines[0], err


def test_a_failed_start_does_not_block_the_next(tmp_path, monkeypatch, capsys):
    """A run that stopped at bad data holds only config.json: fixing the file and running again
    needs no --resume, while a folder with results is still never overwritten."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.csv").write_text(PRICES.replace(",105\n", ",\n"))
    forecast = load_script("forecast")
    with pytest.raises(SystemExit):
        cli(forecast.main, ["--csv", "p.csv", "--out", "run", "--quiet"])
    (tmp_path / "p.csv").write_text(PRICES)
    results = forecast.main(
        [
            "--csv",
            "p.csv",
            "--out",
            "run",
            "--quiet",
            "--window",
            "5",
            "--horizon",
            "3",
            "--hidden",
            "4",
            "--steps",
            "3",
            "--checkpoint-every",
            "0",
        ]
    )
    assert results["train_points"] > 0
    before = (tmp_path / "run" / "results.json").read_text()
    with pytest.raises(SystemExit):
        cli(forecast.main, ["--csv", "p.csv", "--out", "run", "--quiet"])
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert (tmp_path / "run" / "results.json").read_text() == before


def test_from_the_command_line_exit_2_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / "p.csv").write_text(PRICES.replace(",107\n", ",inf\n"))
    command = [sys.executable, str(ROOT / "experiments" / "forecast.py"), "--csv", "p.csv", "--out", "run"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "forecast.py: error: p.csv: row 7, column 'Close' is inf" in result.stderr
    debug = subprocess.run(command + ["--debug"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "InputError" in debug.stderr


def test_string_labels_become_sorted_class_ids_shown_in_results(tmp_path):
    """`pos`/`neg` labels train like 1/0 (ids in sorted name order, as datasets' ClassLabel)."""
    (tmp_path / "r.csv").write_text(REVIEWS)
    (tmp_path / "n.csv").write_text(NUMBERED)
    common = [
        "--steps",
        "4",
        "--hidden",
        "4",
        "--embed",
        "4",
        "--directions",
        "uni",
        "--quiet",
        "--checkpoint-every",
        "0",
    ]
    sentiment = load_script("sentiment")
    named = sentiment.main(
        [
            "--train",
            str(tmp_path / "r.csv"),
            "--test",
            str(tmp_path / "r.csv"),
            "--out",
            str(tmp_path / "named"),
            *common,
        ]
    )
    numbered = sentiment.main(
        [
            "--train",
            str(tmp_path / "n.csv"),
            "--test",
            str(tmp_path / "n.csv"),
            "--out",
            str(tmp_path / "numbered"),
            *common,
        ]
    )
    assert named["class_names"] == ["neg", "pos"] and numbered["class_names"] == ["0", "1"]
    assert json.loads((tmp_path / "named" / "results.json").read_text())["class_names"] == ["neg", "pos"]
    # same data, same ids: the same model and the same predictions
    assert named["models"]["uni"] == numbered["models"]["uni"]


# -- token ids at the model boundary ---------------------------------------------


def _models():
    layer = RNN(make_cell("gru", 4))
    lm = LanguageModel(7, 3, layer)
    clf = SequenceClassifier(7, 3, layer, num_classes=2)
    s2s = Seq2Seq(7, 5, 3, layer, layer)
    ids = jnp.zeros((1, 3), jnp.int32)
    lengths = jnp.array([3])
    return {
        "LanguageModel": (lm, lm.init(jax.random.key(0), ids), lambda m, p, x: m.apply(p, x)[0]),
        "SequenceClassifier": (clf, clf.init(jax.random.key(0), ids, lengths), lambda m, p, x: m.apply(p, x, lengths)),
        "Seq2Seq source": (
            s2s,
            s2s.init(jax.random.key(0), ids, lengths, ids),
            lambda m, p, x: m.apply(p, x, lengths, ids),
        ),
        "Seq2Seq target": (
            s2s,
            s2s.init(jax.random.key(0), ids, lengths, ids),
            lambda m, p, x: m.apply(p, jnp.clip(x, 0, 4), lengths, x),
        ),
    }


@pytest.mark.parametrize("name", ["LanguageModel", "SequenceClassifier", "Seq2Seq source", "Seq2Seq target"])
@pytest.mark.parametrize("bad_id", [7, -1])
def test_token_ids_outside_the_vocabulary_are_an_error_not_a_clamp(name, bad_id):
    model, params, call = _models()[name]
    vocab = 5 if name == "Seq2Seq target" else 7
    ids = jnp.array([[1, bad_id if bad_id < 0 else vocab, 2]])
    found = bad_id if bad_id < 0 else vocab
    message = rf"must lie in 0..{vocab - 1} \(vocabulary size {vocab}\); found {found}"
    with pytest.raises(ValueError, match=message):  # eager: checked on the host
        call(model, params, ids)
    with pytest.raises(Exception, match=message):  # inside jit: a host callback raises the same words
        jax.block_until_ready(jax.jit(lambda p, x: call(model, p, x))(params, ids))
    good = jnp.array([[1, vocab - 1, 0]])
    assert np.all(np.isfinite(np.asarray(jax.jit(lambda p, x: call(model, p, x))(params, good))))


def test_an_explicit_run_wide_flag_beats_the_scripts_per_model_defaults():
    """copy_memory's default --model-hidden rnn=80 yields to a typed --hidden (and --model-clip to
    a typed --clip); a typed per-model entry still wins for its model."""
    from rnnlab.experiment.cli import parse_config
    from rnnlab.experiment.models import model_clip, model_hidden

    config = load_script("copy_memory").Config
    default = parse_config(config, ["--models", "rnn"])
    assert model_hidden(default, "rnn") == 80 and model_clip(default, "rnn") == {"clip_norm": 0.0, "clip_value": 1.0}
    typed = parse_config(config, ["--models", "rnn", "lstm", "--hidden", "16", "--clip", "norm:5"])
    assert model_hidden(typed, "rnn") == model_hidden(typed, "lstm") == 16
    assert model_clip(typed, "rnn") is None and typed.clip == "norm:5"  # the run's --clip applies
    both = parse_config(config, ["--models", "rnn", "lstm", "--hidden", "16", "--model-hidden", "rnn=20"])
    assert model_hidden(both, "rnn") == 20 and model_hidden(both, "lstm") == 16


def test_a_models_clipping_and_the_optimizer_flags_that_would_do_nothing():
    """``clip_of``: a model's --model-clip rule, else the run's --clip (a bad one names --clip);
    ``optimizer_rules``: --rmsprop-decay acts under RMSprop only, --orthogonal-learning-rate only
    with an expRNN among the models."""
    from types import SimpleNamespace

    from rnnlab.experiment import ConfigError, clip_of, optimizer_rules

    cfg = SimpleNamespace(model_clip=("rnn=value:1",), clip="norm:5", optimizer="adam", models=("rnn", "lstm"))
    assert clip_of(cfg, "rnn") == {"clip_norm": 0.0, "clip_value": 1.0}
    assert clip_of(cfg, "lstm") == clip_of(cfg) == {"clip_norm": 5.0, "clip_value": 0.0}
    with pytest.raises(ConfigError, match="^--clip: a clip rule is one of off, norm:X, value:X"):
        clip_of(SimpleNamespace(model_clip=(), clip="norm"))
    rules = optimizer_rules(cfg)
    assert rules == {
        "rmsprop_decay": (False, "--optimizer is adam"),
        "orthogonal_learning_rate": (False, "no model of --models has an orthogonal generator (exprnn, exprnn_tanh)"),
    }
    rules = optimizer_rules(SimpleNamespace(optimizer="rmsprop", models=("lstm", "exprnn_tanh")))
    assert rules["rmsprop_decay"][0] and rules["orthogonal_learning_rate"][0]


def test_resume_on_a_folder_without_a_run_says_so(tmp_path, capsys):
    from rnnlab.experiment.cli import BaseConfig
    from rnnlab.experiment.rundir import RunDir

    RunDir(BaseConfig(out=str(tmp_path / "new"), resume=True))
    err = capsys.readouterr().err.strip()
    assert err == f"--resume: {tmp_path / 'new'} holds no run yet; starting one from scratch"


@pytest.mark.parametrize(
    "files, dest, words",
    [
        ({"results.json": "{not json", "config.json": "{}"}, "out.json", "results.json is not JSON"),
        ({"results.json": "{}"}, "out.json", "holds no config.json"),
        ({"results.json": "{}", "config.json": "{}"}, "missing/out.json", "the folder of"),
    ],
)
def test_publish_refuses_in_one_line(tmp_path, files, dest, words):
    run = tmp_path / "run"
    run.mkdir()
    for name, text in files.items():
        (run / name).write_text(text)
    publish = ROOT / "docs" / "results" / "publish.py"
    proc = subprocess.run(
        [sys.executable, str(publish), str(run), str(tmp_path / dest)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert words in proc.stderr.strip().splitlines()[-1]


def test_nnx_param_dtype_must_be_floating():
    from flax import nnx

    from rnnlab import GRUCell
    from rnnlab.nnx import RNN as NNXRNN

    with pytest.raises(ValueError, match="param_dtype must be a floating-point dtype"):
        NNXRNN(GRUCell(4), 3, param_dtype=jnp.int32, rngs=nnx.Rngs(0))
