"""The notebooks in notebooks/ run end to end (at small sizes) and are stored without outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
IDS = [p.stem for p in PATHS]

EXPECTED = {
    "01_quickstart",
    "02_audit_your_recommender",
    "03_policy_experiment",
    "04_pricing_audit",
    "05_dispatch_audit",
}

# Read by the notebooks' first code cell; the kernel inherits the test's environment.
SMALL = {
    "RECAUDIT_NB_USERS": "300",
    "RECAUDIT_NB_DAYS": "2",
    "RECAUDIT_NB_REPS": "2",
    "RECAUDIT_NB_SAMPLES": "1",  # points per uncertainty axis of the sweep (03)
    "RECAUDIT_NB_WORKERS": "1",  # in the kernel: spawning workers costs more than it saves at this size
    "RECAUDIT_NB_COURIER_SCALE": "0.1",  # the rider scenarios' fleets (05)
}

# Figures each notebook must draw inline (a module that switches matplotlib to Agg on import would stop them).
MIN_FIGURES = {"01_quickstart": 1, "03_policy_experiment": 1, "04_pricing_audit": 1, "05_dispatch_audit": 1}


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """Return the name of a Python kernel for this interpreter, installing one for the tests if none is found.

    With ipykernel installed, jupyter_client provides ``python3`` even without a kernel spec on disk; the
    fallback covers environments where that lookup fails.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    with pytest.MonkeyPatch.context() as mp:
        try:
            KernelSpecManager().get_kernel_spec("python3")
        except NoSuchKernel:
            from ipykernel.kernelspec import install

            prefix = tmp_path_factory.mktemp("jupyter")
            install(prefix=str(prefix), kernel_name="python3")
            mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
            KernelSpecManager().get_kernel_spec("python3")
        yield "python3"


def test_all_notebooks_present():
    assert {p.stem for p in PATHS} == EXPECTED


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_notebook_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec must be python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{path.name}: cell {i} has outputs; strip them before committing"
        assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count; strip it"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_notebook_runs(path, kernel_name, monkeypatch, tmp_path):
    for name, value in SMALL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # as in Jupyter (conftest: Agg)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary files and sweep outputs
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name=kernel_name, resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError naming the cell on the first error
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures >= MIN_FIGURES.get(path.stem, 0), f"{path.name}: {figures} inline figure(s)"
