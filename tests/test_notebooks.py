"""Every tutorial notebook is stored clean and runs top to bottom on the venv's own kernel."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "python3"


def test_notebooks_exist() -> None:
    """The notebooks folder holds at least one notebook, so the tests below cannot pass empty."""
    assert NOTEBOOKS


def test_kernel_is_this_python() -> None:
    """The python3 kernel starts this interpreter, so notebooks see the memfold under test."""
    argv = KernelSpecManager().get_kernel_spec(KERNEL).argv
    assert argv[0] in {"python", "python3", sys.executable}, argv


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    """A notebook is committed without outputs or execution counts."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], cell.source[:60]
            assert cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    """Every cell of the notebook executes without raising and no output is an error."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name=KERNEL, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert errors == []
