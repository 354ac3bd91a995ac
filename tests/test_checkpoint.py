"""Checkpoints and the experiment conventions: exact resume after SIGKILL,
corrupted-checkpoint fallback, refusals that protect saved work, determinism."""

import json
import pathlib
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
SMALL = ["--quick", "--seq-len", "8", "--hidden", "8", "--steps", "60", "--seeds", "2", "--learning-rate", "1e-2", "3e-3",
         "--models", "rnn", "lstm", "--checkpoint-every", "10", "--log-every", "5", "--test-size", "64", "--quiet"]
TIMING = {"steps_per_sec", "elapsed_s"}


def run_script(out, *extra, check=True):
    return subprocess.run([sys.executable, str(SCRIPT), *SMALL, "--out", str(out), *extra],
                          capture_output=True, text=True, check=check, timeout=600)


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
    assert comparable_metrics(tmp_path / "again" / "metrics.jsonl") == comparable_metrics(uninterrupted / "metrics.jsonl")
    assert comparable_results(tmp_path / "again") == comparable_results(uninterrupted)


@pytest.mark.parametrize("kill_after", ["rnn/20", "lstm/30"])
def test_resume_after_sigkill_is_bit_identical(uninterrupted, tmp_path, kill_after):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *SMALL, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / "checkpoints" / kill_after / "commit_success.txt"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run ended before the checkpoint to kill after"
    assert not (out / "results.json").exists()

    run_script(out, "--resume")
    assert comparable_metrics(out / "metrics.jsonl") == comparable_metrics(uninterrupted / "metrics.jsonl")
    assert comparable_results(out) == comparable_results(uninterrupted)
    assert final_digests(out) == final_digests(uninterrupted)  # bit-identical params and optimizer state


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
    return {"params": {"w": jnp.full((3, 4), float(step))}, "step": jnp.int32(step),
            "key": jax.random.key_data(jax.random.key(step))}


def test_round_trip_is_exact(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2)
    state = {"params": {"w": jax.random.normal(jax.random.key(0), (5, 7))}, "key": jax.random.key_data(jax.random.key(1))}
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


@pytest.mark.parametrize("damage", ["garbage", "truncate", "delete"])
def test_corrupted_latest_falls_back_to_previous_with_warning(tmp_path, damage):
    ckpt = Checkpointer(tmp_path, keep=3)
    for s in (1, 2):
        ckpt.save(s, state_at(s), {})
    data_files = [p for p in (tmp_path / "2" / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert data_files
    for p in data_files:
        if damage == "garbage":
            raw = bytearray(p.read_bytes())
            raw[len(raw) // 2 :] = bytes(len(raw) - len(raw) // 2)
            p.write_bytes(bytes(raw))
        elif damage == "truncate":
            p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3])
        else:
            p.unlink()
    with pytest.warns(UserWarning, match=r"checkpoint at step 2 .* is unreadable .*trying the previous one"):
        step, state, _ = Checkpointer(tmp_path).restore_latest(state_at(0))
    assert step == 1 and float(state["params"]["w"][0, 0]) == 1.0


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
