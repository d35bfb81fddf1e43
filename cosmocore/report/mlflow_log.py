"""Log a finished bench to MLflow: one parent run per bench, one child per (arm, seed).

Children carry each cycle's trainer diagnostics (the summary history) and the eval hallucination
rates with ``step = cycle``, so MLflow's charts show the learning curves seed by seed; the parent
carries the bench settings as params, the per-arm headline numbers, the report and plots as
artifacts, and the Delta table versions as tags (the exact table state the numbers came from,
for time travel). It goes through ``MlflowClient`` rather than the fluent API so it leaves no
active run or global experiment behind in the caller's process.

MLflow is an optional extra (``pip install 'cosmocore-miniworld[mlflow]'``); ``mlflow-skinny``
is enough for a file or remote tracking store.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install 'cosmocore-miniworld[mlflow]'"
EXPERIMENT = "cosmocore-bench"
_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call


class MlflowMissing(RuntimeError):
    """MLflow is not installed: the --mlflow flag cannot be honoured."""


def require() -> Any:
    """The ``mlflow`` module, or ``MlflowMissing`` with a one-line install hint."""
    try:
        import mlflow
    except ImportError:
        raise MlflowMissing(f"MLflow is not installed: {INSTALL_HINT}") from None
    return mlflow


def default_tracking_uri(run_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a store inside the run directory: SQLite where
    SQLAlchemy is installed (full mlflow), else MLflow's file store (mlflow-skinny), which
    MLflow 3 only opens with ``MLFLOW_ALLOW_FILE_STORE`` set."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if importlib.util.find_spec("sqlalchemy") is None:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return (Path(run_dir).resolve() / "mlruns").as_uri()
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]  # MLflow's param length limit


def bench_params(bench: Mapping[str, Any]) -> dict[str, str]:
    """bench.json as MLflow params: top-level settings, and trainer overrides as ``train.KEY``."""
    params = {k: _param(v) for k, v in bench.items() if k not in ("runs", "train")}
    params.update({f"train.{k}": _param(v) for k, v in (bench.get("train") or {}).items()})
    return params


def run_metrics(history: list[Mapping[str, Any]], rates: list[Any], rates_turn2: list[Any]) -> list[tuple[str, float, int]]:
    """(key, value, step) for every finite scalar of every history record (step = its cycle)
    and the eval hallucination rates per cycle from the evaluations table."""
    out = []
    for i, rec in enumerate(history):
        step = int(rec.get("cycle", i))
        out += [(k, v, step) for k, raw in rec.items() if k != "cycle" and (v := _finite(raw)) is not None]
    for key, curve in (("eval/hallucination_rate", rates), ("eval/hallucination_rate_turn2", rates_turn2)):
        out += [(key, float(v), c) for c, v in enumerate(curve) if _finite(v) is not None]
    return out


def _log(client: Any, run_id: str, metrics: list[tuple[str, float, int]] = (), params: Mapping[str, str] | None = None,
         tags: Mapping[str, str] | None = None) -> None:
    from mlflow.entities import Metric, Param, RunTag

    ts = int(time.time() * 1000)  # one logging time: the step (cycle) is what orders these curves
    items = [Metric(k, v, ts, s) for k, v, s in metrics]
    for start in range(0, max(len(items), 1), _BATCH):
        client.log_batch(run_id, metrics=items[start:start + _BATCH],
                         params=[Param(k, v) for k, v in (params or {}).items()] if start == 0 else [],
                         tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()] if start == 0 else [])


def log_bench(run_dir: Path, report: Mapping[str, Any] | None = None, tracking_uri: str | None = None,
              experiment: str = EXPERIMENT) -> str:
    """Log the bench in ``run_dir`` (its report: ``report`` or RUN_DIR/report.json); returns the
    parent run's id."""
    require()
    from mlflow.tracking import MlflowClient

    run_dir = Path(run_dir)
    bench = json.loads((run_dir / "bench.json").read_text())
    if report is None:
        report = json.loads((run_dir / "report.json").read_text())
    client = MlflowClient(tracking_uri or default_tracking_uri(run_dir))
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    versions = {f"delta.version.{k}": v for k, v in (report.get("store_versions") or {}).items()}
    name = f"bench-{bench.get('bench_id') or run_dir.name}"
    parent = client.create_run(exp_id, run_name=name, tags={"cosmocore.run_dir": str(run_dir.resolve()),
                                                            "cosmocore.profile": str(bench.get("profile"))})
    pid = parent.info.run_id
    try:
        headline = [(f"{arm}/{key}", v, 0) for arm, a in report["arms"].items()
                    for key, v in (("final_hallucination_rate", a["final_hallucination_rate"]["mean"]),
                                   ("cycles_to_zero_error", a["cycles_to_zero_error"]["mean"]),
                                   ("cycles_to_zero_error_censored", a["cycles_to_zero_error"]["censored"]),
                                   ("bug_recurrence_rate", a["bug_recurrence_rate"]["mean"]),
                                   ("test_hallucination_rate", (a.get("test_hallucination_rate") or {}).get("mean")),
                                   ("practice_cycles_to_zero_error_km_median",
                                    (a.get("practice_cycles_to_zero_error") or {}).get("km_median")),
                                   ("practice_cycles_to_zero_error_restricted_mean",
                                    (a.get("practice_cycles_to_zero_error") or {}).get("restricted_mean")))
                    if _finite(v) is not None]
        # one tag per claim: its verdict word, searchable across benches
        verdicts = {f"claim.{c['arm']}.{c['metric']}.{c['split']}": c["verdict"] for c in report.get("claims") or []}
        _log(client, pid, headline, bench_params(bench), {**versions, **verdicts})
        for arm, a in report["arms"].items():
            _log_children(client, exp_id, pid, run_dir, bench, arm, a, versions)
        for path in sorted(run_dir.glob("report.*")):
            client.log_artifact(pid, str(path))
        if (run_dir / "plots").is_dir():
            client.log_artifacts(pid, str(run_dir / "plots"), "plots")
    except BaseException:
        client.set_terminated(pid, "FAILED")
        raise
    client.set_terminated(pid, "FINISHED")
    return pid


def _log_children(client: Any, exp_id: str, parent_id: str, run_dir: Path, bench: Mapping[str, Any], arm: str,
                  a: Mapping[str, Any], tags: Mapping[str, Any]) -> None:
    """One child run per finished seed of ``arm``."""
    dirs = {(r["arm"], int(r["seed"])): r["dir"] for r in bench.get("runs") or []}
    for i, (seed, run_id) in enumerate(zip(a["seeds"], a["run_ids"])):
        summary_path = run_dir / dirs.get((arm, seed), f"runs/{arm}-s{seed}") / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        child = client.create_run(exp_id, run_name=f"{arm}-s{seed}",
                                  tags={"mlflow.parentRunId": parent_id, **{k: str(v) for k, v in tags.items()}})
        metrics = run_metrics(summary.get("history") or [], a["hallucination_rate_per_cycle"]["per_seed"][i],
                              a["hallucination_rate_per_cycle_turn2"]["per_seed"][i])
        for key, value in (("run/wall_s", summary.get("wall_s")), ("run/episodes", summary.get("episodes"))):
            if _finite(value) is not None:
                metrics.append((key, float(value), 0))
        _log(client, child.info.run_id, metrics, {"arm": arm, "seed": str(seed), "run_id": run_id})
        client.set_terminated(child.info.run_id, "FINISHED")
