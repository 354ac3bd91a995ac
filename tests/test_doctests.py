"""The ``>>>`` examples in the docstrings of the cells, the layer, the dispatch and the
diagnostics run as written (each module must have some)."""

import doctest
import importlib

import pytest

MODULES = [
    "rnnlab.cells",
    "rnnlab.linear",
    "rnnlab.layers",
    "rnnlab.unroll",
    "rnnlab.diagnostics",
    "rnnlab.parametrizations",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no >>> examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
