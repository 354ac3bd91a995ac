"""Data parallelism in the applications: the batch split over 4 (fake CPU) devices or
2 processes gives a 1-device run's loss curve; checkpoints move between device counts."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import EXPERIMENTS, load_script, run_two_processes

from rnnlab.data import default_corpus

# A small character model: 8 windows of 20 characters per step, checkpoints at 10, 20, 30.
TINY = [
    "--quick",
    "--quiet",
    "--compile-cache",
    "off",
    "--hidden",
    "16",
    "--embed",
    "8",
    "--seq-len",
    "20",
    "--batch-size",
    "8",
    "--checkpoint-every",
    "10",
    "--log-every",
    "5",
    "--length",
    "20",
]
# Measured: 4 devices vs 1 over 30 steps differ by <= 3e-7 relative (the batch mean is summed in
# another order); 1e-5 leaves room for other CPUs and BLAS builds.
RTOL = 1e-5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(default_corpus()[:20000])
    return str(path)


def on_devices(devices: int, out, *args, corpus, check=True):
    """text_generation.py in a subprocess with ``devices`` fake CPU devices."""
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")
    return subprocess.run(
        [
            sys.executable,
            os.path.join(EXPERIMENTS, "text_generation.py"),
            *TINY,
            "--source",
            corpus,
            "--out",
            str(out),
            *args,
        ],
        env=env,
        timeout=300,
        capture_output=True,
        text=True,
        check=check,
    )


def losses(out):
    return np.array([json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()])


@pytest.fixture(scope="module")
def one_device(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("one_device")
    load_script("text_generation").main([*TINY, "--source", corpus, "--steps", "30", "--out", str(out)])
    return out


def assert_same_run(out, reference):
    np.testing.assert_allclose(losses(out), losses(reference), rtol=RTOL)
    got, want = (json.loads((d / "results.json").read_text()) for d in (out, reference))
    assert got["val_loss_nats"] == pytest.approx(want["val_loss_nats"], rel=RTOL)


def test_four_devices_give_one_devices_loss_curve(one_device, corpus, tmp_path):
    on_devices(4, tmp_path, "--steps", "30", corpus=corpus)
    assert json.loads((tmp_path / "results.json").read_text())["devices"] == 4
    assert_same_run(tmp_path, one_device)


@pytest.mark.parametrize("before, after", [(4, 1), (1, 4)])
def test_a_checkpoint_resumes_on_another_device_count(one_device, corpus, tmp_path, before, after):
    """20 steps on ``before`` devices, then 10 more on ``after``: the uninterrupted curve,
    to float tolerance (not bit-identical: the batch mean is summed in another order)."""
    on_devices(before, tmp_path, "--steps", "20", corpus=corpus)
    assert (tmp_path / "checkpoints" / "lm" / "20").is_dir()
    on_devices(after, tmp_path, "--steps", "30", "--resume", corpus=corpus)
    assert json.loads((tmp_path / "results.json").read_text())["devices"] == after
    assert_same_run(tmp_path, one_device)


def test_two_processes_train_checkpoint_and_resume_in_one(one_device, corpus, tmp_path):
    """jax.distributed on localhost: each process makes its half of every batch, process 0
    alone writes the run folder and the checkpoints; one process resumes the run."""
    run, other = tmp_path / "run", tmp_path / "other"
    run_two_processes("text_generation.py", [*TINY, "--source", corpus, "--steps", "20"], [run, other])
    assert (run / "checkpoints" / "lm" / "20").is_dir() and not other.exists()
    assert json.loads((run / "results.json").read_text())["processes"] == 2
    load_script("text_generation").main([*TINY, "--source", corpus, "--steps", "30", "--resume", "--out", str(run)])
    assert_same_run(run, one_device)


def test_each_device_gets_its_own_examples_and_the_batch_must_divide():
    """``put_batch`` asks each device's examples once and never the whole batch; a batch
    that does not divide by the data devices is refused naming both numbers."""
    code = textwrap.dedent("""
        import numpy as np
        from rnnlab import parallel
        from rnnlab.validation import InputError
        mesh = parallel.sweep_mesh(data=4)
        asked = []
        def rows(examples):
            asked.append((examples.start, examples.stop))
            return {"x": np.arange(examples.start, examples.stop)[None, :, None] * np.ones((1, 1, 3))}
        batch = parallel.put_batch(rows, (1, 8), mesh)
        assert sorted(asked) == [(0, 2), (2, 4), (4, 6), (6, 8)], asked
        np.testing.assert_array_equal(np.asarray(batch["x"])[0, :, 0], np.arange(8))
        assert batch["x"].sharding.spec == parallel.PartitionSpec("sweep", "data")
        try:
            parallel.put_batch(rows, (1, 6), mesh)
        except InputError as e:
            print("ERROR", e)
    """)
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "ERROR the batch size 6 does not divide by the 4 devices it is split over" in out.stdout
