"""Every curated notebook runs to the end on data other than the sample it was written on.

The second dataset is a part of the sample data, different in kind: only the ``inventory``
service's traces (one service, so no request crosses services; no cache), read from the
protobuf export, and the PostgreSQL log in its plain stderr form instead of the csvlog the
notebooks default to. Every other data parameter is set to None, and ``sample_data`` to
False, so no checkpoint that asserts a sample-data fact runs. Deselect with
``-m "not notebooks"``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from latkit import report

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"

#: The second dataset, by the parameter names the notebooks use for each kind of data.
SECOND = {
    "traces": str(SAMPLE / "traces" / "inventory.otlp.pb"),
    "query_log": str(SAMPLE / "postgres" / "postgresql.log.gz"),
    "query_logs": str(SAMPLE / "postgres" / "postgresql.log.gz"),
}


def parameters(notebook: Path) -> dict[str, object]:
    from papermill.inspection import inspect_notebook

    declared = inspect_notebook(str(notebook))
    params: dict[str, object] = {
        name: SECOND.get(name)
        for name, info in declared.items()
        if "sample_data/" in str(info["default"])
    }
    assert "sample_data" in declared, f"{notebook.name}: no sample_data parameter"
    params["sample_data"] = False
    return params


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", report.notebooks(ROOT / "notebooks"), ids=lambda p: p.stem)
def test_notebook_runs_on_other_data(notebook: Path, tmp_path: Path) -> None:
    params = parameters(notebook)
    executed, error = report.run(notebook, tmp_path / notebook.name, params, timeout=600)
    assert error is None, f"{notebook.name} stopped at {error} with {params}"
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), "every code cell ran"
