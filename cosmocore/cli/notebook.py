"""What the Databricks notebooks in ``notebooks/`` share: parameters, display, where Spark is.

A notebook calls ``nb = Notebook(globals())`` once. On Databricks its globals hold ``spark``,
``dbutils``, ``display`` and ``displayHTML``; elsewhere (a laptop, the tests) they do not, and
the same cells fall back to environment variables, pandas and printed paths:

* parameters are ``dbutils.widgets`` text boxes on Databricks (an empty box means "the mode's
  default"), else ``COSMOCORE_NOTEBOOK_<NAME>`` environment variables;
* smoke mode (widget ``smoke`` or ``COSMOCORE_NOTEBOOK_SMOKE=1``) swaps every default for a
  seconds-long one: the ``tiny`` model, the ``smoke`` suite/profile, one cycle, tiny budgets;
* ``nb.spark`` is the notebook's own session (or None): it shows input data as Spark DataFrames
  and reads the Delta store. Candidate code never runs on it: ``nb.sandbox`` starts the embedded
  confined Spark Connect server, or connects to the ``spark_remote`` the user gave.
"""
from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

ENV_PREFIX = "COSMOCORE_NOTEBOOK_"
SMOKE_ENV = ENV_PREFIX + "SMOKE"
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}
_UNSET = object()


class ParamError(ValueError):
    """A parameter value that cannot be used (one line naming the widget / variable)."""


def _bool(text: str, where: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ParamError(f"{where}: expected yes/no, got {text!r}")


class Notebook:
    """The notebook's environment: ``Notebook(globals())``."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.ns = namespace
        self.spark = namespace.get("spark")
        self.dbutils = namespace.get("dbutils")
        self.on_databricks = "DATABRICKS_RUNTIME_VERSION" in os.environ
        self.values: dict[str, Any] = {}
        self.smoke = _bool(self._raw("smoke", "yes" if _bool(os.environ.get(SMOKE_ENV, "0"), SMOKE_ENV) else "no",
                                     "smoke mode: tiny model, 1 cycle (yes/no)"), self._where("smoke"))
        self.values["smoke"] = self.smoke

    # ---- parameters -------------------------------------------------------------------------
    def _where(self, name: str) -> str:
        return f"widget {name!r}" if self.dbutils is not None else f"${ENV_PREFIX}{name.upper()}"

    def _raw(self, name: str, default: str, label: str) -> str:
        if self.dbutils is not None:
            self.dbutils.widgets.text(name, default, label)
            return str(self.dbutils.widgets.get(name)).strip()
        return os.environ.get(ENV_PREFIX + name.upper(), default).strip()

    def param(self, name: str, default: Any, smoke: Any = _UNSET, kind: type | None = None, help: str = "") -> Any:
        """A parameter: the widget / environment value when given, else ``smoke`` in smoke mode
        (when given), else ``default``. ``kind`` (str, int, float, bool) defaults to the type of
        the defaults; an empty value means the default, and with a None default, None."""
        value = smoke if self.smoke and smoke is not _UNSET else default
        kind = kind or next((type(v) for v in (default, smoke) if v is not None and v is not _UNSET), str)
        label = f"{name} (default {value if value not in (None, '') else 'none'})" + (f": {help}" if help else "")
        raw = self._raw(name, "", label[:200])
        if raw != "":
            try:
                value = _bool(raw, self._where(name)) if kind is bool else kind(raw)
            except ValueError as exc:
                if isinstance(exc, ParamError):
                    raise
                raise ParamError(f"{self._where(name)}: expected {kind.__name__}, got {raw!r}") from None
        self.values[name] = value
        return value

    def spark_remote(self) -> str | None:
        """The ``spark_remote`` parameter: an ``sc://host:port`` Connect server, or None for the
        embedded confined one."""
        remote = self.param("spark_remote", None, kind=str,
                            help="Spark Connect server for candidates, sc://host:port (empty: embedded, confined)")
        if remote and not remote.startswith("sc://"):
            raise ParamError(f"{self._where('spark_remote')}: must look like sc://host:port, got {remote!r}")
        return remote or None

    def default_dir(self) -> str:
        """Where runs go unless the ``out`` parameter says otherwise: the driver's local disk on
        Databricks (the notebook's folder is workspace files, no place for Delta tables)."""
        return "/tmp/cosmocore-notebooks" if self.on_databricks else "cosmocore-runs"

    def settings(self) -> None:
        """Print the parameters read so far (after the cells that read them)."""
        mode = "smoke" if self.smoke else "default"
        source = "widgets" if self.dbutils is not None else f"{ENV_PREFIX}* environment variables"
        print(f"mode: {mode} (parameters from {source})")
        for key, value in self.values.items():
            print(f"  {key} = {value!r}")

    # ---- Spark ------------------------------------------------------------------------------
    def sandbox(self, spark_remote: str | None, workers: int = 2, timeout_s: float = 30.0, kind=None):
        """Start the sandbox (embedded confined Connect server, or workers for ``spark_remote``)
        and say where candidates run; a task kind that needs no Spark (``kind``) opens its own."""
        from miniworld.sandbox.spark_sandbox import Sandbox

        if kind is not None and not kind.needs_spark:
            print(f"candidates run in confined subprocesses ({kind.name} tasks need no Spark)")
            return kind.open_sandbox(workers=workers, timeout_s=timeout_s)
        box = Sandbox(spark_remote=spark_remote, workers=workers, timeout_s=timeout_s)
        if spark_remote:
            print(f"candidates run on {spark_remote} (not confined: see the note above); "
                  f"{workers} sandbox workers on this driver")
        else:
            print(f"candidates run on the embedded Spark Connect server (pid {box.server_pid}, "
                  f"{'confined' if box.endpoint.isolated else 'NOT confined'}) with {workers} sandbox workers")
        for warning in box.warnings:
            print(f"warning: {warning}")
        return box

    def frame(self, rows: Sequence[Sequence[Any]], ddl: str) -> Any:
        """Rows of a task's input as a Spark DataFrame on the notebook's session (with the task's
        own schema), else as pandas."""
        if self.spark is not None:
            return self.spark.createDataFrame([tuple(r) for r in rows], ddl)
        import pandas as pd

        return pd.DataFrame([tuple(r) for r in rows], columns=ddl_columns(ddl), dtype=object)  # keep ints and nulls

    def read_delta(self, uri: str, run_id: str | None = None, columns: Sequence[str] | None = None,
                   order_by: Sequence[str] = ()) -> Any:
        """A Delta table of the store (optionally one run's rows, some columns, sorted), read by the
        notebook's Spark where it can reach the path (cloud URIs, ``/Volumes``, ``dbfs:``), else by
        delta-rs into pandas."""
        spark_path = "://" in uri or uri.startswith(("/Volumes/", "dbfs:", "/dbfs/"))
        if self.spark is not None and spark_path:
            df = self.spark.read.format("delta").load(uri)
            if run_id:
                df = df.where("run_id = '{}'".format(run_id.replace("\\", "\\\\").replace("'", "\\'")))
            if columns:
                df = df.select(*columns)
            return df.orderBy(*order_by) if order_by else df
        from deltalake import DeltaTable

        df = DeltaTable(uri).to_pandas()
        if run_id:
            df = df[df["run_id"] == run_id]
        if columns:
            df = df[list(columns)]
        return (df.sort_values(list(order_by)) if order_by else df).reset_index(drop=True)

    # ---- display ----------------------------------------------------------------------------
    def show(self, data: Any, limit: int = 50) -> None:
        """A table: Databricks ``display``, else IPython's, else printed text."""
        import pandas as pd

        shown = self.ns.get("display")
        if shown is not None:  # Databricks' own display (tables with sorting, charts)
            shown(pd.DataFrame(data) if isinstance(data, list) else data)
            return
        if hasattr(data, "toPandas"):  # a Spark DataFrame outside Databricks
            data = data.limit(limit).toPandas()
        df = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        ipython = _ipython_display()
        if ipython is not None:
            ipython(df.head(limit))
            return
        with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 60):
            print(df.head(limit).to_string(index=False))

    def show_images(self, paths: Iterable[Path | str]) -> None:
        """PNG files inline: ``displayHTML`` on Databricks, IPython's ``Image`` where it is
        importable, else their paths."""
        paths = [Path(p) for p in paths]
        display_html = self.ns.get("displayHTML")
        if display_html is not None:
            tags = [f"<figure style='margin:0 0 1em 0'><figcaption>{html.escape(p.name)}</figcaption>"
                    f"<img style='max-width:100%' src='data:image/png;base64,"
                    f"{base64.b64encode(p.read_bytes()).decode()}'/></figure>" for p in paths]
            display_html("".join(tags))
            return
        try:
            from IPython.display import Image, display
        except ImportError:
            for p in paths:
                print(f"plot: {p}")
            return
        for p in paths:
            display(Image(filename=str(p)))


def _ipython_display() -> Any:
    """IPython's ``display`` when running inside an IPython kernel, else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    return display if get_ipython() is not None else None


def ddl_columns(ddl: str) -> list[str]:
    """Column names of a DDL schema string (``"a INT, b DECIMAL(10,2)"`` -> ``["a", "b"]``)."""
    names, depth, start = [], 0, 0
    for i, ch in enumerate(ddl + ","):
        if ch in "(<":
            depth += 1
        elif ch in ")>":
            depth -= 1
        elif ch == "," and depth == 0:
            field = ddl[start:i].strip()
            if field:
                names.append(field.split()[0].strip("`"))
            start = i + 1
    return names


def learning_curve(history: Sequence[Mapping[str, Any]], evaluations: Sequence[Mapping[str, Any]], path: Path,
                   title: str = "") -> Path:
    """The run's learning curve as a PNG: eval hallucination rate per cycle at turn 1 and after
    the self-correction turn (from the ``evaluations`` rows), and the day phase's mean reward."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    by_turn: dict[int, dict[int, list[bool]]] = {}
    for row in evaluations:
        by_turn.setdefault(int(row["turn"]), {}).setdefault(int(row["cycle"]), []).append(row["outcome"] != "correct")
    for turn, cycles in sorted(by_turn.items()):
        xs = sorted(cycles)
        ax.plot(xs, [sum(cycles[c]) / len(cycles[c]) for c in xs], marker="o",
                label=f"eval hallucination rate, turn {turn}")
    day = [(int(r["cycle"]), r["day_reward"]) for r in history if r.get("day_reward") is not None]
    if day:
        ax.plot([c for c, _ in day], [v for _, v in day], marker="s", ls="--", label="day-phase mean reward")
    ax.set(xlabel="cycle (0 = before training)", ylim=(-0.03, 1.03), title=title or "learning curve")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
