"""Every tutorial notebook runs top to bottom at its small default sizes, from its
jupytext source (notebooks/*.py, percent format); the .ipynb files are generated from those."""

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
jupytext = pytest.importorskip("jupytext")

SOURCES = sorted((pathlib.Path(__file__).parents[1] / "notebooks").glob("*.py"))
assert SOURCES, "no notebook sources found"


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_notebook_executes(path):
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert images, "the notebook should show its figures"


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_ipynb_is_generated_from_its_source(path):
    """Edit notebooks/<name>.py (or the paired .ipynb in Jupyter with jupytext), then
    `jupytext --sync notebooks/*.py`: the two must hold the same cells."""
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run jupytext --to ipynb {path}"
    cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]
    assert cells(nbformat.read(ipynb, as_version=4)) == cells(jupytext.read(path))
    assert jupytext.read(path).metadata["jupytext"]["formats"] == "ipynb,py:percent"
