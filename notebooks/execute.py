"""Execute the notebooks top to bottom and save them with their outputs (figures included).

    python notebooks/execute.py                     # all notebooks in this folder
    python notebooks/execute.py b_two_time_scales   # some of them (name with or without .ipynb)

Each notebook runs in a fresh ``python3`` kernel with ``notebooks/`` as working directory (as
``tests/test_notebooks.py`` runs them), so the key figures are written to ``docs/notebooks/``
(``PDE_POPDYN_FIGURES`` overrides that folder). Needs ``nbclient``, ``nbformat`` and
``ipykernel`` (``pip install -e '.[notebooks]'``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT = 300


def notebooks(names: list[str] | None = None) -> list[Path]:
    """The notebooks of this folder, or those named (with or without the .ipynb suffix)."""
    if not names:
        return sorted(HERE.glob("[a-z]_*.ipynb"))
    out = []
    for name in names:
        path = HERE / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        if not path.exists():
            raise SystemExit(f"no notebook {path.name} in {HERE}; the notebooks are "
                             f"{', '.join(p.name for p in notebooks())}")
        out.append(path)
    return out


def execute(path: Path, save: bool = True) -> float:
    """Run ``path`` in a fresh kernel (raises on the first failing cell); return the seconds."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    if save:
        nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> None:
    for path in notebooks(sys.argv[1:] if argv is None else argv):
        seconds = execute(path)
        print(f"{path.name}: executed in {seconds:.1f} s and saved with its outputs")


if __name__ == "__main__":
    main()
