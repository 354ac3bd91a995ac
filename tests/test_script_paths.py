"""Every research script runs every execution path its models list, inside its own sweep
program (``jit(vmap)`` under the sweep mesh), on one device and on 4 fake devices.

The default paths (``fused``, ``sequential``) run in each script's own tests; here one quick
run per script trains five models, each on another path, so the matrix "script x path" costs
one run per script.  (A bare ``jnp.int32(0)`` loop counter inside the Newton iterations broke
every script on the Newton paths under the sweep mesh, and no test ran a script off its default.)"""

import json
import os
import subprocess
import sys

import pytest
from conftest import EXPERIMENTS, load_script

# model -> the path it runs here: every path but the defaults, which the scripts' own tests run
PATHS = {"rnn": "newton", "lstm": "quasi_newton", "gru": "remat", "rnn_relu": "autodiff", "lru": "associative"}
SMALL = {
    "vanishing_gradients": [
        "--lengths", "12", "--steps", "2", "--seeds", "1", "--hidden", "4", "--batch-size", "2",
        "--measure-size", "2", "--sweep-length", "12", "--radii", "1.0", "--clip-length", "12",
        "--clip-steps", "2", "--clip-perturbations", "0", "--no-float64",
    ],
    "copy_memory": ["--lengths", "6", "--steps", "2", "--seeds", "1", "--hidden", "4", "--batch-size", "2",
                    "--test-size", "4", "--log-every", "1"],
    "adding_problem": ["--seq-len", "8", "--steps", "2", "--seeds", "1", "--hidden", "4", "--batch-size", "2",
                       "--test-size", "4", "--log-every", "1"],
    "pixel_mnist": ["--steps", "2", "--seeds", "1", "--hidden", "4", "--batch-size", "4", "--train-size", "40",
                    "--test-size", "20", "--sequence-length", "8", "--log-every", "1"],
}  # fmt: skip


def argv(script: str, out) -> list[str]:
    paths = [f"{model}={path}" for model, path in PATHS.items()]
    return ["--quick", "--quiet", "--models", *PATHS, "--model-path", *paths, *SMALL[script], "--out", str(out)]


def recorded_paths(results: dict) -> dict:
    """model -> path as the script recorded it (``results["path"]``, or each model's entry)."""
    if "path" in results:
        return results["path"]
    return {name: entry["path"] for name, entry in results["models"].items()}


@pytest.mark.parametrize("script", sorted(SMALL))
def test_every_path_runs_in_every_script_on_one_device(script, tmp_path):
    load_script(script).main(argv(script, tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert recorded_paths(results) == PATHS


def test_every_path_runs_in_a_script_on_four_devices(tmp_path):
    """The sweep sharded over 4 fake CPU devices: the mesh that the Newton counter broke."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="4")
    done = subprocess.run(
        [sys.executable, os.path.join(EXPERIMENTS, "adding_problem.py"), *argv("adding_problem", tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["devices"] == 4 and recorded_paths(results) == PATHS
