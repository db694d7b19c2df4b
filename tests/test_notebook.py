"""The example notebook (examples/python_api.ipynb) runs top to bottom: a cell that raises fails this test."""

from __future__ import annotations

import pytest

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "python_api.ipynb"


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_the_example_notebook_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "completed: classification peft_lora" in text
    assert "task: no column 'review' (text='review')" in text
    assert (tmp_path / "report" / "reviews" / "report.md").is_file() and (tmp_path / "export" / "lora-r4").is_dir()
