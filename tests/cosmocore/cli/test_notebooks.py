"""The Databricks notebooks in ``notebooks/``: valid source format, and each one executed top to
bottom in smoke mode the way Databricks runs it (cell by cell, in one namespace per notebook),
in its own subprocess with a timeout, in a temporary working directory and task cache.

Run by hand: ``python tests/cosmocore/cli/test_notebooks.py notebooks/01_quickstart.py`` (set
``COSMOCORE_NOTEBOOK_SMOKE=1`` for the seconds-long mode).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("01_quickstart", "02_benchmark", "03_training_job")
HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"
TIMEOUT_S = 420


def cells(source: str) -> list[str]:
    """The notebook's cells, as Databricks splits a source-format file."""
    lines = source.splitlines()
    assert lines and lines[0] == HEADER, f"first line must be {HEADER!r}"
    out, current = [], []
    for line in lines[1:]:
        if line.strip() == SEPARATOR:
            out.append("\n".join(current).strip("\n"))
            current = []
        else:
            current.append(line)
    out.append("\n".join(current).strip("\n"))
    return out


def is_magic(cell: str) -> bool:
    """A cell Databricks runs through a magic (``%md``, ``%pip``...): every non-blank line is
    ``# MAGIC``."""
    lines = [ln for ln in cell.splitlines() if ln.strip()]
    return bool(lines) and all(ln.startswith("# MAGIC") for ln in lines)


def run_notebook(path: Path) -> None:
    """Execute the Python cells of ``path`` in order, in one shared namespace; print a line per
    cell (its index and wall time) on stderr so a failure says where it happened."""
    namespace = {"__name__": "__main__"}
    for i, cell in enumerate(cells(path.read_text(encoding="utf-8"))):
        if not cell.strip() or is_magic(cell):
            continue
        started = time.monotonic()
        code = compile(cell, f"{path.name}[cell {i}]", "exec")
        exec(code, namespace)  # noqa: S102 - the point: run the notebook as Databricks would
        sys.stdout.flush()
        print(f"[notebook] cell {i} done in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- format
def test_notebooks_are_databricks_source_format() -> None:
    for name in NAMES:
        path = NOTEBOOKS / f"{name}.py"
        source = path.read_text(encoding="utf-8")
        assert source.startswith(HEADER + "\n"), name
        parts = cells(source)
        assert len(parts) >= 5, f"{name}: expected cells separated by {SEPARATOR!r}"
        assert all(p.strip() for p in parts), f"{name}: an empty cell"
        assert is_magic(parts[0]) and parts[0].startswith("# MAGIC %md"), f"{name}: should open with a markdown cell"
        for part in parts:
            magic = [ln for ln in part.splitlines() if ln.startswith("# MAGIC")]
            if magic:  # a magic cell is all magic, opening with the magic command
                assert is_magic(part), f"{name}: a cell mixes code and # MAGIC lines:\n{part[:200]}"
                assert magic[0].startswith("# MAGIC %"), f"{name}: magic cell without a %command:\n{part[:200]}"
            else:
                compile(part, name, "exec")  # every code cell is valid Python on its own
        # candidates' isolation is explained where a notebook starts a sandbox
        if "nb.sandbox(" in source:
            assert "not confined" in source and "spark_remote" in source, name


# --------------------------------------------------------------------------- the helper, as on Databricks
class _Widgets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.created = values, {}

    def text(self, name: str, default: str, label: str) -> None:
        self.created[name] = (default, label)
        self.values.setdefault(name, default)

    def get(self, name: str) -> str:
        return self.values[name]


class _Spark:
    """Records what the helper asks of a notebook's ``spark``."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.read = self

    def createDataFrame(self, rows, schema):  # noqa: N802 - Spark's name
        self.calls.append(("createDataFrame", rows, schema))
        return "spark-df"

    def format(self, fmt):
        self.calls.append(("format", fmt))
        return self

    def load(self, uri):
        self.calls.append(("load", uri))
        return self  # stands in for the DataFrame: where/select/orderBy record too

    def where(self, cond):
        self.calls.append(("where", cond))
        return self

    def select(self, *cols):
        self.calls.append(("select", cols))
        return self

    def orderBy(self, *cols):  # noqa: N802
        return self


def test_notebook_helper_on_databricks(monkeypatch, tmp_path) -> None:
    """With ``dbutils``/``spark``/``display``/``displayHTML`` in the notebook's globals: widgets
    (empty = the mode's default), the notebook's Spark for input frames and cloud Delta paths,
    plots as inline HTML."""
    from types import SimpleNamespace

    from cosmocore.cli.notebook import Notebook, ParamError, ddl_columns

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    monkeypatch.delenv("COSMOCORE_NOTEBOOK_SMOKE", raising=False)
    widgets = _Widgets({"cycles": "3", "model": "", "spark_remote": "sc://10.0.0.1:15002"})
    shown, html = [], []
    spark = _Spark()
    nb = Notebook({"dbutils": SimpleNamespace(widgets=widgets), "spark": spark,
                   "display": shown.append, "displayHTML": html.append})
    assert nb.smoke is False and widgets.created["smoke"][0] == "no"
    assert nb.param("cycles", 4, smoke=1) == 3
    assert nb.param("model", "smollm2-135m", smoke="tiny") == "smollm2-135m"
    assert widgets.created["model"][0] == "" and "smollm2-135m" in widgets.created["model"][1]
    assert nb.param("arms", None, kind=str) is None
    assert nb.spark_remote() == "sc://10.0.0.1:15002"
    assert nb.default_dir().startswith("/tmp/")
    widgets.values["seeds"] = "two"
    with pytest.raises(ParamError, match="widget 'seeds'"):
        nb.param("seeds", 2)
    widgets.values["spark_remote"] = "http://x"
    with pytest.raises(ParamError, match="sc://"):
        nb.spark_remote()

    assert nb.frame([(1, "a")], "id INT, name STRING") == "spark-df"
    assert spark.calls[-1] == ("createDataFrame", [(1, "a")], "id INT, name STRING")
    nb.read_delta("/Volumes/main/cc/vol/store/evaluations", run_id="r1", columns=["cycle"])
    assert ("load", "/Volumes/main/cc/vol/store/evaluations") in spark.calls and ("select", ("cycle",)) in spark.calls
    assert ("where", "run_id = 'r1'") in spark.calls
    nb.show([{"a": 1}])
    assert len(shown) == 1
    png = tmp_path / "p.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    nb.show_images([png])
    assert len(html) == 1 and "data:image/png;base64," in html[0] and "p.png" in html[0]
    assert ddl_columns("a INT, b DECIMAL(10,2), `c` STRUCT<x: INT, y: STRING>, d ARRAY<INT>") == ["a", "b", "c", "d"]


def test_notebook_helper_smoke_from_environment(monkeypatch) -> None:
    from cosmocore.cli.notebook import Notebook

    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.setenv("COSMOCORE_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("COSMOCORE_NOTEBOOK_MAX_NEW_TOKENS", "32")
    nb = Notebook({})
    assert nb.smoke and nb.spark is None
    assert nb.param("model", "smollm2-135m", smoke="tiny") == "tiny"
    assert nb.param("max_new_tokens", 256, smoke=16) == 32
    assert nb.param("mlflow", True) is True
    assert nb.spark_remote() is None
    assert nb.default_dir() == "cosmocore-runs"


# --------------------------------------------------------------------------- execution
def _execute(name: str, workdir: Path, cache: Path) -> str:
    """Run one notebook in smoke mode in a subprocess with ``workdir`` as its working directory;
    returns its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSMOCORE_NOTEBOOK_")}  # no leaked settings
    env.update({"COSMOCORE_NOTEBOOK_SMOKE": "1", "COSMOCORE_CACHE": str(cache),
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)})
    env.pop("DATABRICKS_RUNTIME_VERSION", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(NOTEBOOKS / f"{name}.py")],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    took = time.monotonic() - started
    assert proc.returncode == 0, f"{name} failed after {took:.0f}s:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    print(f"{name}: {took:.0f}s")
    return proc.stdout


@pytest.fixture(scope="module")
def task_cache(tmp_path_factory) -> Path:
    """One task cache for the three notebooks: the first one to run verifies the smoke suite."""
    return tmp_path_factory.mktemp("notebook-cache")


@pytest.mark.slow
def test_01_quickstart(tmp_path, task_cache) -> None:
    out = _execute("01_quickstart", tmp_path, task_cache)
    assert "candidates run on the embedded Spark Connect server" in out
    for label, outcome in (("reference", "correct"), ("hostile", "policy_violation")):
        assert f"--- {label}: {outcome}" in out
    assert "=== turn 1:" in out
    assert list(task_cache.glob("tasks/smoke-*.json")), "the smoke suite was not verified into the task cache"


@pytest.mark.slow
def test_02_benchmark(tmp_path, task_cache) -> None:
    out = _execute("02_benchmark", tmp_path, task_cache)
    run_dirs = list((tmp_path / "cosmocore-runs").glob("bench-*"))
    assert len(run_dirs) == 1, run_dirs
    run_dir = run_dirs[0]
    for artifact in ("bench.json", "report.json", "report.md", "report.html"):
        assert (run_dir / artifact).is_file(), artifact
    report = json.loads((run_dir / "report.json").read_text())
    assert report["profile"] == "smoke" and report["cycles"] == 1 and report["seeds"] == [0]
    assert report["runs_finished"] == report["runs_total"] == 2
    plots = sorted((run_dir / "plots").glob("*.png"))
    assert plots, "no plots written"
    for plot in plots:  # outside Databricks and IPython the notebook prints each plot's path
        assert f"plot: {plot.relative_to(tmp_path)}" in out, plot.name
    assert "final hallucination rate" in out


@pytest.mark.slow
def test_03_training_job(tmp_path, task_cache) -> None:
    from cosmocore.memory.store import Store

    out = _execute("03_training_job", tmp_path, task_cache)
    base = tmp_path / "cosmocore-runs"
    store = Store.open(str(base / "store"), create=False)
    evaluations = store.read_evaluations().to_pylist()
    assert evaluations, "no evaluations rows"
    assert {r["cycle"] for r in evaluations} == {0, 1}, "expected the initial evaluation and one trained cycle"
    assert store.read_episodes(columns=["episode_id"]).num_rows > 0
    (run_dir,) = base.glob("train-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["cycles_completed"] == 1
    assert {r["run_id"] for r in evaluations} == {summary["run_id"]}
    curve = run_dir / "learning_curve.png"
    assert curve.is_file() and f"plot: {curve.relative_to(tmp_path)}" in out
    if importlib.util.find_spec("mlflow") is not None:
        assert "mlflow run" in out
        logged = list(run_dir.glob("mlruns/*/*/metrics/eval_hallucination_rate")) + list(run_dir.glob("mlflow.db"))
        assert logged, "no MLflow run was recorded"


if __name__ == "__main__":
    run_notebook(Path(sys.argv[1]))
