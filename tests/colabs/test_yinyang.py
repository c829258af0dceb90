"""Executes colabs/yinyang.ipynb headless, on a tiny set-up, and checks Fig. 1 is written."""

import json
import pathlib
import sys

import pytest

from tests import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = pathlib.Path(ROOT) / "colabs" / "yinyang.ipynb"

OVERRIDES = """
# --- test overrides (tests/colabs/test_yinyang.py) ---
NUM_RUNS = 2
NUM_STEPS = 1500
LEARNING_RATE = 0.5
GRID_RESOLUTION = 12
"""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _pin_python3_kernel(tmp_path: pathlib.Path, monkeypatch) -> None:
    """Makes kernel "python3" run this interpreter (the venv's), whatever PATH is
    and whichever python3 kernelspecs the machine has: JUPYTER_PATH comes first
    in Jupyter's search path."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (test)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")


def test_yinyang_notebook_runs(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell must be tagged 'parameters'"
    params[0].source += "\n" + OVERRIDES
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook with its outputs cleared"

    work = tmp_path / "work"
    work.mkdir()
    _pin_python3_kernel(tmp_path, monkeypatch)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError on any failing cell

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream")
    assert "runs used per threshold" in text

    png = work / "fig1.png"
    assert png.is_file()
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, "the figure should be displayed inline"
