"""Checkpoints and the experiment conventions: exact resume after SIGKILL,
corrupted-checkpoint fallback, refusals that protect saved work, determinism."""

import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.checkpoint import Checkpointer, tree_digest
from rnnlab.data import CharVocab
from rnnlab.experiment import BaseConfig, RunDir, checkpoint_meta, parse_config, resume

ROOT = pathlib.Path(__file__).parents[1]
SCRIPT = ROOT / "experiments" / "adding_problem.py"
# Small enough for seconds: a sweep (2 learning rates x 2 seeds), two models and several checkpoints.
SMALL = [
    "--quick",
    "--seq-len",
    "8",
    "--hidden",
    "8",
    "--steps",
    "60",
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
    "--log-every",
    "5",
    "--test-size",
    "64",
    "--quiet",
]
TIMING = {"steps_per_sec", "elapsed_s"}


def run_script(out, *extra, check=True):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *SMALL, "--out", str(out), *extra],
        capture_output=True,
        text=True,
        check=check,
        timeout=600,
    )


def comparable_metrics(path):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in path.read_text().splitlines()]


def comparable_results(out):
    """results.json without what a clock measures (compile seconds, program counts of a resumed run)."""
    results = json.loads((out / "results.json").read_text())
    return {k: v for k, v in results.items() if k not in ("compile", "runtime_s")}


def final_digests(out):
    """Digest of each model's final checkpoint, as recorded inside it."""
    digests = {}
    for model_dir in sorted((out / "checkpoints").iterdir()):
        last = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
        meta = json.loads((model_dir / str(last) / "meta" / "metadata").read_text())
        digests[model_dir.name] = (last, meta["digest"])
    return digests


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    run_script(out)
    return out


def test_same_seed_same_results(uninterrupted, tmp_path):
    run_script(tmp_path / "again")
    assert comparable_metrics(tmp_path / "again" / "metrics.jsonl") == comparable_metrics(
        uninterrupted / "metrics.jsonl"
    )
    assert comparable_results(tmp_path / "again") == comparable_results(uninterrupted)


def kill_after_checkpoint(out, kill_after):
    """Run SMALL into ``out`` and SIGKILL it once checkpoint ``<model>/<step>`` is committed."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *SMALL, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    marker = out / "checkpoints" / kill_after / "commit_success.txt"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run ended before the checkpoint to kill after"
    assert not (out / "results.json").exists()


def assert_same_run(out, uninterrupted):
    assert comparable_metrics(out / "metrics.jsonl") == comparable_metrics(uninterrupted / "metrics.jsonl")
    assert comparable_results(out) == comparable_results(uninterrupted)
    assert final_digests(out) == final_digests(uninterrupted)  # bit-identical params and optimizer state


@pytest.mark.parametrize("kill_after", ["rnn/20", "lstm/30"])
def test_resume_after_sigkill_is_bit_identical(uninterrupted, tmp_path, kill_after):
    """The killed run's folder lock dies with it: --resume is not locked out."""
    out = tmp_path / "killed"
    kill_after_checkpoint(out, kill_after)
    run_script(out, "--resume")
    assert_same_run(out, uninterrupted)


def test_ctrl_c_is_one_line_and_the_resumed_run_is_bit_identical(uninterrupted, tmp_path):
    """A real SIGINT mid-training: exit 130, one line naming the last checkpoint and the command
    that continues (no traceback); that command finishes as an uninterrupted run."""
    out = tmp_path / "interrupted"
    # a shell without job control starts background jobs with SIGINT ignored, and Python then
    # never raises KeyboardInterrupt: the child restores Python's handler itself before the script
    # runs (a preexec_fn would fork this multithreaded JAX process)
    restore = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", restore, str(SCRIPT), *SMALL, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    marker = out / "checkpoints" / "rnn" / "20" / "commit_success.txt"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    lines = stderr.decode().strip().splitlines()
    assert proc.returncode == 130, stderr.decode()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    assert "interrupted training rnn" in lines[0] and "last checkpoint" in lines[0]
    assert lines[0].endswith("--resume") and f"--out {out}" in lines[0]
    run_script(out, "--resume")
    assert_same_run(out, uninterrupted)


# Runs SMALL with SIGINT sent to itself at one moment (argv[1]): "before_compile" (on entering XLA's
# first compile), "during_compile:NAME" (50 ms into the compile of program NAME, while XLA runs it),
# "after_save:MODEL/STEP" (mid-training, right after that checkpoint), "in_save:MODEL/STEP" (inside
# the save, before Orbax writes) or "between_models:MODEL" (once MODEL has finished training).
INTERRUPT_AT = """
import os, runpy, signal, sys, threading
signal.signal(signal.SIGINT, signal.default_int_handler)  # as an interactive shell starts Python
kind, _, where = sys.argv[1].partition(":")
sys.argv = sys.argv[2:]
ctrl_c = lambda: os.kill(os.getpid(), signal.SIGINT)
if kind in ("before_compile", "during_compile"):
    from jax._src import compiler
    compile_ = compiler.backend_compile_and_load
    def compiling(backend, module, *args, **kwargs):
        if kind == "before_compile":
            ctrl_c()
        elif str(module.operation.attributes["sym_name"]).strip('"') == where:
            threading.Timer(0.05, ctrl_c).start()
        return compile_(backend, module, *args, **kwargs)
    compiler.backend_compile_and_load = compiling
elif kind in ("in_save", "after_save"):
    from rnnlab.checkpoint import Checkpointer
    save = Checkpointer._save
    def saving(self, step, state, meta):
        hit = str(self.path(step)).endswith(where)
        if hit and kind == "in_save":
            ctrl_c()
        save(self, step, state, meta)
        if hit and kind == "after_save":
            ctrl_c()
    Checkpointer._save = saving
else:
    from rnnlab.experiment.cli import PROGRESS
    finish = PROGRESS.finish
    def finishing(name):
        finish(name)
        if name == where:
            ctrl_c()
    PROGRESS.finish = finishing
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_ctrl_c_at_every_moment_is_one_line_and_resumes_to_the_same_run(uninterrupted, tmp_path):
    """One run interrupted five times, each time resumed by the command its line prints: before the
    first compile, inside XLA's compile of the training step, mid-training, between models and
    inside a checkpoint save.  Each stop is exit 130 and one line (no traceback, no segmentation
    fault: the handler leaves with os._exit, skipping the teardown a cut compile crashed), saying
    what was trained; the last --resume ends as the uninterrupted run.  A persistent compile cache
    shared by the processes keeps it short (and is where the cut compile crashed)."""
    out, ckpt = tmp_path / "interrupted", tmp_path / "interrupted" / "checkpoints"
    env = dict(os.environ, RNNLAB_COMPILE_CACHE=str(tmp_path / "compile_cache"))
    moments = [
        ("before_compile", "interrupted before training"),
        ("during_compile:jit_train_step", "interrupted training rnn, last logged step 0; no checkpoint yet"),
        ("after_save:" + os.path.join("rnn", "20"), f"last checkpoint {ckpt / 'rnn' / '20'}"),
        ("between_models:rnn", "interrupted after training rnn; its checkpoints are saved"),
        (
            "in_save:" + os.path.join("lstm", "30"),
            f"interrupted training lstm, last logged step 30; last checkpoint {ckpt / 'lstm' / '30'}",
        ),
    ]
    command = [str(SCRIPT), *SMALL, "--out", str(out)]
    for moment, words in moments:
        proc = subprocess.run(
            [sys.executable, "-c", INTERRUPT_AT, moment, *command], env=env, capture_output=True, text=True, timeout=300
        )
        # a --resume into a folder with no run yet says so first; nothing else may be printed
        lines = [line for line in proc.stderr.splitlines() if not line.startswith("--resume: ")]
        assert proc.returncode == 130 and len(lines) == 1, f"{moment}: exit {proc.returncode}\n{proc.stderr}"
        assert lines[0].startswith("adding_problem.py: interrupted") and words in lines[0], (moment, lines[0])
        resume = lines[0].partition("; continue with: python ")[2]
        assert resume.endswith("--resume") and f"--out {out}" in resume
        command = shlex.split(resume)  # the next run is the command the line gave
    subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=300, check=True)
    assert_same_run(out, uninterrupted)


def test_a_second_run_into_the_same_folder_is_refused(uninterrupted, tmp_path):
    """Two starts into one --out: one line and exit 2 for the later one (naming the folder and
    the holder's pid); the other runs alone, its metrics holding each step once."""
    out = tmp_path / "twice"
    first = subprocess.Popen(
        [sys.executable, str(SCRIPT), *SMALL, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while not (out / "config.json").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    second = run_script(out, check=False)
    _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err.decode()
    assert second.returncode == 2
    assert second.stderr.strip().count("\n") == 0
    assert f"{out} is in use by another run (pid {first.pid} on" in second.stderr
    assert comparable_metrics(out / "metrics.jsonl") == comparable_metrics(uninterrupted / "metrics.jsonl")


def test_unreadable_latest_checkpoint_is_moved_aside_and_the_run_finishes(uninterrupted, tmp_path):
    """The resumed run restarts from the checkpoint before the damaged one, writes that step
    again (the damaged folder renamed, never deleted) and ends as an uninterrupted run."""
    out = tmp_path / "damaged"
    kill_after_checkpoint(out, "lstm/30")
    for p in (out / "checkpoints" / "lstm" / "30" / "state").rglob("*"):
        if p.is_file() and p.parent.name == "d":
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
    resumed = run_script(out, "--resume")
    assert "checkpoint at step 30" in resumed.stderr and "moved it to 30.unreadable" in resumed.stderr
    assert (out / "checkpoints" / "lstm" / "30.unreadable" / "state").is_dir()
    assert_same_run(out, uninterrupted)


# Runs SMALL with Orbax's JSON writer replaced: SIGKILL on entering the write of KILL_AT
# (the array item of that checkpoint may be written or under way; nothing is committed).
KILL_DURING_SAVE = """
import os, runpy, signal, sys
import orbax.checkpoint as ocp
write, kill_at = ocp.handlers.JsonCheckpointHandler._save_fn, os.sep + sys.argv[1] + ".orbax-checkpoint-tmp"
def killing_write(self, item, directory):
    if kill_at in str(directory):
        os.kill(os.getpid(), signal.SIGKILL)
    return write(self, item, directory)
ocp.handlers.JsonCheckpointHandler._save_fn = killing_write
script = sys.argv[2]
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def test_sigkill_while_a_checkpoint_is_written_resumes_from_the_last_complete_one(uninterrupted, tmp_path):
    out = tmp_path / "killed-mid-save"
    killed = subprocess.run(
        [sys.executable, "-c", KILL_DURING_SAVE, os.path.join("lstm", "30"), str(SCRIPT), *SMALL, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL
    lstm = out / "checkpoints" / "lstm"
    assert sorted(p.name for p in lstm.iterdir()) == ["10", "20", "30.orbax-checkpoint-tmp"]  # half-written
    run_script(out, "--resume")
    assert sorted(p.name for p in lstm.iterdir()) == ["40", "50", "60"]  # the last 3; the half-written one gone
    assert_same_run(out, uninterrupted)


def test_existing_run_is_never_overwritten_without_resume(uninterrupted):
    before = (uninterrupted / "metrics.jsonl").read_text()
    result = run_script(uninterrupted, check=False)
    assert result.returncode != 0 and "already holds a run; pass --resume" in result.stderr
    assert (uninterrupted / "metrics.jsonl").read_text() == before


def test_resume_with_incompatible_config_is_a_clear_error(uninterrupted, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(uninterrupted, copy)
    result = run_script(copy, "--resume", "--hidden", "16", check=False)
    assert result.returncode != 0
    assert "cannot resume: the config differs from the saved run (hidden: saved 8 vs now 16)" in result.stderr


# -- the checkpointer directly -------------------------------------------------


def state_at(step):
    return {
        "params": {"w": jnp.full((3, 4), float(step))},
        "step": jnp.int32(step),
        "key": jax.random.key_data(jax.random.key(step)),
    }


def test_round_trip_is_exact(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2)
    state = {
        "params": {"w": jax.random.normal(jax.random.key(0), (5, 7))},
        "key": jax.random.key_data(jax.random.key(1)),
    }
    ckpt.save(3, state, {"data_position": 3})
    step, restored, meta = ckpt.restore_latest(jax.tree.map(jnp.zeros_like, state))
    assert step == 3 and meta["data_position"] == 3 and tree_digest(restored) == tree_digest(state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_keeps_the_last_k(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2, every=1)
    for s in range(1, 5):
        ckpt.save(s, state_at(s), {})
    assert ckpt.steps() == [3, 4]


# Without the file list Orbax itself meets the damage: its concurrent reads fail half-way, and the
# ones still in flight may call back into the event loop it has closed (an ignored RuntimeError)
ORBAX_FAILED_READ = pytest.mark.filterwarnings("ignore:Exception ignored in.*:pytest.PytestUnraisableExceptionWarning")


@pytest.mark.parametrize(
    "damage", ["garbage", "truncate", "delete", pytest.param("garbage, no file list", marks=ORBAX_FAILED_READ)]
)
def test_corrupted_latest_falls_back_to_previous_with_warning(tmp_path, damage):
    ckpt = Checkpointer(tmp_path, keep=3)
    for s in (1, 2):
        ckpt.save(s, state_at(s), {})
    if damage.endswith("no file list"):  # as a run killed between Orbax's commit and the list leaves it
        (tmp_path / "2" / "files.sha256.json").unlink()
    data_files = [p for p in (tmp_path / "2" / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert data_files
    for p in data_files:
        if damage.startswith("garbage"):
            raw = bytearray(p.read_bytes())
            raw[len(raw) // 2 :] = bytes(len(raw) - len(raw) // 2)
            p.write_bytes(bytes(raw))
        elif damage == "truncate":
            p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3])
        else:
            p.unlink()
    with pytest.warns(
        UserWarning,
        match=r"checkpoint at step 2 .* is unreadable .*moved it to 2.unreadable and "
        r"trying the previous one",
    ):
        step, state, _ = Checkpointer(tmp_path).restore_latest(state_at(0))
    assert step == 1 and float(state["params"]["w"][0, 0]) == 1.0
    assert (tmp_path / "2.unreadable").is_dir() and Checkpointer(tmp_path).steps() == [1]


def test_disk_full_during_a_save_is_a_clear_error_and_earlier_checkpoints_survive(tmp_path, monkeypatch):
    import errno

    import orbax.checkpoint as ocp

    from rnnlab.checkpoint import CheckpointWriteError

    ckpt = Checkpointer(tmp_path, keep=2)
    for s in (1, 2):
        ckpt.save(s, state_at(s), {"data_position": s})

    def disk_full(self, item, directory):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "_save_fn", disk_full)
    with pytest.raises(
        CheckpointWriteError,
        match=rf"could not save the checkpoint of step 3 in {tmp_path}: No space "
        r"left on device; the checkpoints already there \(steps: 1, 2\)",
    ):
        ckpt.save(3, state_at(3), {"data_position": 3})
    monkeypatch.undo()
    # keep=2 must not have dropped step 1 for a step 3 that never landed
    fresh = Checkpointer(tmp_path, keep=2)
    assert fresh.steps() == [1, 2]
    for s in (1, 2):
        state, meta = fresh.restore(s, state_at(0))
        assert meta["data_position"] == s and float(state["params"]["w"][0, 0]) == s


def test_resume_with_a_different_vocabulary_is_refused(tmp_path):
    cfg = BaseConfig(out=str(tmp_path / "run"))
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(5, state_at(5), checkpoint_meta(cfg, 5, CharVocab.build("abc")))
    state, step = resume(ckpt, state_at(0), cfg, CharVocab.build("abc"))
    assert step == 5
    with pytest.raises(ValueError, match=r"vocabulary \(3 tokens\) differs from this run's \(4 tokens\)"):
        resume(ckpt, state_at(0), cfg, CharVocab.build("abcd"))


def test_config_flags_round_trip(tmp_path):
    import dataclasses

    @dataclasses.dataclass
    class Cfg(BaseConfig):
        sizes: tuple[int, ...] = (1, 2)
        rate: float = 0.5
        name: str = "x"

        def apply_quick(self):
            self.steps, self.rate = 7, 0.1

    cfg = parse_config(Cfg, ["--sizes", "3", "4", "5", "--rate", "0.25", "--no-quiet", "--seed", "9"])
    assert (cfg.sizes, cfg.rate, cfg.seed, cfg.quiet) == ((3, 4, 5), 0.25, 9, False)
    quick = parse_config(Cfg, ["--quick", "--rate", "0.3"])
    assert (quick.steps, quick.rate) == (7, 0.3)  # explicit flags win over --quick
    RunDir(dataclasses.replace(cfg, out=str(tmp_path / "r")))
    assert json.loads((tmp_path / "r" / "config.json").read_text())["sizes"] == [3, 4, 5]


def test_grid_points_report_median_and_iqr_over_seeds(uninterrupted):
    """`--learning-rate 1e-2 3e-3` x 2 seeds: every grid point with its per-seed numbers."""
    results = json.loads((uninterrupted / "results.json").read_text())
    assert results["devices"] == 1 and results["compile"]["programs"] > 0
    for model in ("rnn", "lstm"):
        points = results["models"][model]["points"]
        assert [p["learning_rate"] for p in points] == [1e-2, 3e-3]
        for p in points:
            mse = p["test_mse"]
            assert len(mse["per_seed"]) == 2 and mse["q25"] <= mse["median"] <= mse["q75"]
            assert mse["median"] == pytest.approx(float(np.median(mse["per_seed"])))
    assert (uninterrupted / "learning_curves.png").stat().st_size > 0


def test_the_console_summary_prints_the_results_numbers_readably(tmp_path, capsys):
    """Each seed's test MSE as results.json holds it, at 3 significant digits: no float32 repr
    (0.0007999999797903001) and no decimal rounding that makes two seeds look alike."""
    from conftest import load_script

    from rnnlab.experiment import readable

    assert readable(np.float32(0.0008)) == "0.0008" and readable({"a": [np.float32(1 / 3), 2]}) == "{a: [0.333, 2]}"
    argv = ["--quick", "--seq-len", "8", "--hidden", "8", "--steps", "20", "--models", "rnn", "--out", str(tmp_path)]
    results = load_script("adding_problem").main([*argv, "--compile-cache", "off"])
    printed = capsys.readouterr().out
    per_seed = results["models"]["rnn"]["points"][0]["test_mse"]["per_seed"]
    assert f"test MSE per seed [{', '.join(f'{v:.3g}' for v in per_seed)}]" in printed


INTERRUPTED_SAVE = """
import os, signal, sys
import numpy as np
from rnnlab.checkpoint import Checkpointer
checkpointer = Checkpointer(sys.argv[1], keep=2)
state = {"w": np.arange(6.0).reshape(2, 3)}
real_save = checkpointer._manager.save
def save_interrupted(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands inside the save, before Orbax writes
    return real_save(*args, **kwargs)
checkpointer._manager.save = save_interrupted
try:
    checkpointer.save(7, state, {})
except KeyboardInterrupt:
    print("interrupted after the save")
restored, _ = checkpointer.restore(7, state)
print("steps", checkpointer.steps(), "equal", bool(np.array_equal(restored["w"], state["w"])))
"""


def test_ctrl_c_inside_a_save_waits_for_a_whole_checkpoint(tmp_path):
    """SIGINT in the middle of Checkpointer.save: the save finishes, then KeyboardInterrupt (which
    the scripts turn into one line and exit 130); the checkpoint is whole, so --resume reads it."""
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_SAVE, str(tmp_path / "ckpt")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["interrupted", "after", "the", "save", "steps", "[7]", "equal", "True"]
