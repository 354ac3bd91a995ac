"""Shared test helpers: a record of the largest differences seen against references
(carried in each test report's user_properties, so it works across xdist workers)."""

import collections
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

# the scripts' persistent compilation cache stays out of the suite (tests that want it pass a folder)
os.environ.setdefault("RNNLAB_COMPILE_CACHE", "off")
# GPUs default to TF32 matmuls (differences ~1e-4): the suite's tolerances are for full float32,
# here and in the scripts its subprocesses run; benchmarks and experiments keep JAX's fast default
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

# quantity -> (largest absolute difference, test that produced it)
MAX_DIFFS: dict[str, tuple[float, str]] = collections.defaultdict(lambda: (0.0, ""))


@pytest.fixture
def assert_close(request):
    """``assert_close(name, actual, expected, atol, rtol)``: assert and record the largest difference."""

    def check(name, actual, expected, *, atol, rtol):
        actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
        assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
        diff = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
        request.node.user_properties.append(("max_diff", (name, diff)))
        np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=name)

    return check


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Keep the tests that share a module-scoped fixture on one xdist worker (``--dist loadgroup``):
    split across two workers, each would build it (a script's quick run) once."""
    for item in items:
        shared = sorted(
            f"{defs[-1].baseid}::{name}"
            for name, defs in item._fixtureinfo.name2fixturedefs.items()
            if defs and defs[-1].scope == "module" and defs[-1].baseid.startswith("tests/")
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))


def pytest_runtest_logreport(report):
    for key, value in report.user_properties:
        if key == "max_diff":
            name, diff = value
            if diff > MAX_DIFFS[name][0]:
                MAX_DIFFS[name] = (diff, report.nodeid.split("::")[-1])


def pytest_terminal_summary(terminalreporter):
    if MAX_DIFFS:
        terminalreporter.section("largest differences against references")
        for name, (diff, test) in sorted(MAX_DIFFS.items()):
            terminalreporter.write_line(f"{name:40s} {diff:.3e}  ({test})")


def load_script(name: str):
    """Import ``experiments/<name>.py`` as a module (scripts are not a package)."""
    import importlib.util
    import pathlib
    import sys

    path = pathlib.Path(__file__).parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_two_processes(script: str, args: list, outs: list) -> None:
    """``script`` as 2 processes on localhost (one CPU device each, a free port, cluster
    detection off inside rnnlab.parallel), bounded in time, both reaped whatever happens."""
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                os.path.join(EXPERIMENTS, script),
                *args,
                "--out",
                str(outs[i]),
                "--coordinator-address",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:  # never leave a process behind
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
