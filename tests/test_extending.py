"""docs/extending.md's example, run as written: a cell defined outside rnnlab, registered with
one call, then used by name through RNN, the diagnostics and a research script."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]


def files_of(doc: str) -> dict[str, str]:
    """The doc's ``python`` blocks that start with ``# file: NAME``."""
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    return {m.group(1): block for block in blocks if (m := re.match(r"# file: (\S+)\n", block))}


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    folder = tmp_path_factory.mktemp("extending")
    files = files_of((ROOT / "docs" / "extending.md").read_text())
    assert set(files) == {"antisymmetric.py", "use_antisymmetric.py", "leaky.py", "use_leaky.py", "run_leaky.py"}
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "experiments").symlink_to(ROOT / "experiments")
    env = os.environ | {"PYTHONPATH": str(folder), "RNNLAB_COMPILE_CACHE": "off"}
    run = lambda name: subprocess.run(
        [sys.executable, name], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    return folder, run


def test_the_three_method_cell_runs_newton_stacks_and_the_diagnostics(example):
    folder, run = example
    done = run("use_antisymmetric.py")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "(4, 50, 32) (4, 4, 16)"
    ratio, lyapunov = re.match(r"\|\|dL/dh_1\|\| / \|\|dL/dh_T\|\| = (\S+); lambda_1 = (\S+)", lines[1]).groups()
    # an antisymmetric step is near an isometry: the gradient neither vanishes nor explodes over 50 steps
    assert 0.5 < float(ratio) < 2 and abs(float(lyapunov)) < 0.05
    assert lines[2].startswith("path='fused' needs the cell's projections and their VJPs")
    assert "AntisymmetricCell lacks project_inputs" in lines[2]


def test_the_registered_cell_runs_by_name_with_the_diagnostics(example):
    folder, run = example
    done = run("use_leaky.py")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "(4, 50, 32) (4, 4, 16)"
    ratio, lyapunov = re.match(r"\|\|dL/dh_1\|\| / \|\|dL/dh_T\|\| = (\S+); lambda_1 = (\S+)", lines[1]).groups()
    # a leaky RNN at alpha 0.2 forgets slowly, but it does forget: a finite, vanishing ratio, lambda_1 < 0
    assert 0 < float(ratio) < 1 and float(lyapunov) < 0


def test_the_registered_cell_runs_in_a_research_script(example):
    folder, run = example
    done = run("run_leaky.py")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((folder / "runs" / "leaky" / "results.json").read_text())
    assert results["path"] == {"rnn": "fused", "leaky": "fused"}
    T = max(results["ratios"]["rnn"], key=int)
    ratio_of = lambda name: results["ratios"][name][T]["init"]["median"]
    assert 0 < ratio_of("rnn") < ratio_of("leaky") < 1  # the leaky state keeps more of the gradient
