"""Shared test helpers: a record of the largest differences seen against references
(carried in each test report's user_properties, so it works across xdist workers)."""

import collections
import os

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
