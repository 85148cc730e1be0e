"""The notebooks in ``notebooks/`` run top to bottom without error (issue 7, item 4).

Marked ``notebook`` and deselected by default (``addopts`` in pyproject.toml); run them with
``python -m pytest -m notebook``. Each notebook is executed in a fresh ``python3`` Jupyter
kernel with ``notebooks/`` as working directory and a per-cell timeout of 300 s; its figures
are redirected (``PDE_POPDYN_FIGURES``) to a temporary folder so that the committed copies in
``docs/notebooks/`` are left alone. Needs nbclient, nbformat and ipykernel (the ``test`` extra).
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[a-z]_*.ipynb"))
CELL_TIMEOUT = 300

pytestmark = pytest.mark.notebook


def test_the_three_notebooks_are_there():
    names = {p.stem for p in NOTEBOOKS}
    assert {"a_large_population", "b_two_time_scales",
            "c_effective_fitness_selection"} <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_error(path, tmp_path, monkeypatch):
    try:
        import ipykernel  # noqa: F401  (provides the python3 kernel)
        import nbclient
        import nbformat
    except ImportError as exc:
        pytest.fail(f"executing the notebooks needs nbclient, nbformat and ipykernel "
                    f"(pip install -e '.[test]'): {exc}")
    monkeypatch.setenv("PDE_POPDYN_FIGURES", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()          # raises CellExecutionError (with the cell and traceback) on error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    # every notebook exports its key figures (into tmp_path here)
    assert list(tmp_path.glob("*.png")), f"{path.name} wrote no figure"
