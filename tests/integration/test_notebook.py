"""notebooks/quickstart.ipynb runs top to bottom on the tiny pipeline's SFT policy and RM.

The notebook fits its own tiny SFT and RM when run alone (``pytest --nbmake notebooks`` or in
Jupyter); here it is given the `tiny_pipeline` run's models through ``ARGSFW_QUICKSTART_RUNS``
so the suite does not fit them twice.
"""

from __future__ import annotations

import pytest
from _fit_helpers import REPO

NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs(tiny_pipeline, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("ARGSFW_QUICKSTART_RUNS", str(tiny_pipeline.run_dir))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    text = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert str(tiny_pipeline.run_dir / "sft") in text  # the pipeline's models were used
    assert text.count("reward=") == 6  # one line per weight of the sweep
    assert any(out.get("output_type") == "display_data" for out in nb.cells[-2].outputs)  # the plot
