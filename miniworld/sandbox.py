"""Evaluate candidate code on a task: policy gate, confined run on Spark, checks, outcome, reward.

``Sandbox`` owns the Spark endpoint (a local Connect server it starts, or a remote one) and the
worker pool; it is the one object the environment, the CLI and the trainer use to execute code.
"""
from __future__ import annotations

import itertools
import logging
import time
import uuid
from dataclasses import dataclass, field

from miniworld import policy, rows
from miniworld.checks import CheckResult, Expected, check_dataset, feedback, outcome_of
from miniworld.pool import PoolConfig, SandboxPool
from miniworld.spark import LocalConnectServer, SparkEndpoint, endpoint_for
from miniworld.task import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What running one candidate on one task produced (the ``run --json`` keys and more)."""

    task: str
    outcome: str
    reward: float
    checks_passed: int
    checks_total: int
    error: str | None
    feedback: str
    duration_s: float
    checks: tuple[CheckResult, ...] = field(default=(), repr=False)
    stdout: str = ""

    def to_json(self) -> dict:
        return {"task": self.task, "outcome": self.outcome, "reward": self.reward,
                "checks_passed": self.checks_passed, "checks_total": self.checks_total,
                "error": self.error, "feedback": self.feedback, "duration_s": round(self.duration_s, 4),
                "checks": [{"name": c.name, "dataset": c.dataset, "passed": c.passed} for c in self.checks]}


class Sandbox:
    """Runs candidates for tasks on Spark in confined workers. Use as a context manager."""

    def __init__(self, spark_remote: str | None = None, workers: int = 2, timeout_s: float = 30.0,
                 isolate: bool = True, max_rows: int = 5000, endpoint: SparkEndpoint | None = None) -> None:
        self.max_rows = max_rows
        self._server: LocalConnectServer | None = None
        if endpoint is not None:  # a server another process owns (bench jobs share one confined server)
            pass
        elif spark_remote:
            endpoint = endpoint_for(spark_remote)
        else:
            self._server = LocalConnectServer(isolate=isolate)
            endpoint = self._server.start()
        self.endpoint = endpoint
        try:
            self.pool = SandboxPool(endpoint, PoolConfig(size=workers, timeout_s=timeout_s,
                                                         landlock=isolate))
        except Exception:
            self.close()
            raise
        self._ids = itertools.count()

    @property
    def server_pid(self) -> int | None:
        """The local Connect server's process id (None for a remote server)."""
        proc = self._server._proc if self._server else None
        return proc.pid if proc else None

    @property
    def warnings(self) -> list[str]:
        return list(self._server.warnings) if self._server else []

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "pool", None) is not None:
            self.pool.close()
            self.pool = None
        if self._server is not None:
            self._server.stop()
            self._server = None

    # -- raw execution -------------------------------------------------------------------
    def _job(self, task: Task, code: str) -> dict:
        datasets = []
        for ds in task.datasets:
            register = {view: {"schema": task.inputs[arg], "rows": rows.encode_rows(ds.inputs[arg])}
                        for arg, view in ds.views.items() if view not in self.pool.registered_views}
            datasets.append({"name": ds.name, "inputs": dict(ds.views), "register": register or None})
        return {"id": next(self._ids), "tag": f"mw-{uuid.uuid4().hex[:12]}", "code": code,
                "entry": "transform", "max_rows": self.max_rows, "datasets": datasets}

    def run_many_raw(self, items: list[tuple[Task, str]], timeout_s: float | None = None) -> list[dict]:
        """Worker replies for (task, code) pairs, run in parallel (no policy gate, no checks)."""
        jobs = [self._job(task, code) for task, code in items]
        replies = self.pool.run_many(jobs, timeout_s)
        for (task, _), reply in zip(items, replies):
            if reply.get("status") in ("ok", "error", "syntax_error"):
                for ds in task.datasets:  # views now exist server-wide
                    self.pool.registered_views.update(ds.views.values())
        return replies

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, task: Task, code: str, timeout_s: float | None = None) -> Result:
        return self.evaluate_many([(task, code)], timeout_s)[0]

    def evaluate_many(self, items: list[tuple[Task, str]], timeout_s: float | None = None) -> list[Result]:
        """Score (task, code) pairs: gate, run in parallel, check, classify."""
        results: list[Result | None] = [None] * len(items)
        to_run: list[int] = []
        for i, (task, code) in enumerate(items):
            if task.expected is None:
                raise ValueError(f"task {task.id!r} has no verified expected output")
            gated = _gate(task, code)
            if gated is not None:
                results[i] = gated
            else:
                to_run.append(i)
        started = time.monotonic()
        replies = self.run_many_raw([items[i] for i in to_run], timeout_s)
        for i, reply in zip(to_run, replies):
            results[i] = score(items[i][0], reply, reply.get("duration_s", time.monotonic() - started))
        return results  # type: ignore[return-value]


def _gate(task: Task, code: str) -> Result | None:
    """The AST policy's verdict as a result, or None when the code may run."""
    try:
        violations = policy.check(code)
    except SyntaxError as exc:
        error = f"SyntaxError: {exc.msg} (line {exc.lineno})"
        return Result(task.id, "syntax_error", 0.0, 0, task.checks_total, error,
                      feedback("syntax_error", error, []), 0.0)
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        error = f"{type(exc).__name__}: the code could not be parsed"
        return Result(task.id, "syntax_error", 0.0, 0, task.checks_total, error,
                      feedback("syntax_error", error, []), 0.0)
    if violations:
        error = "policy violation: " + "; ".join(str(v) for v in violations[:3])
        return Result(task.id, "policy_violation", 0.0, 0, task.checks_total, error,
                      feedback("policy_violation", error, []), 0.0)
    return None


def score(task: Task, reply: dict, duration_s: float) -> Result:
    """Checks, outcome and reward for one worker reply."""
    assert task.expected is not None
    checks: list[CheckResult] = []
    datasets = reply.get("datasets") or []
    for i, (ds, expected) in enumerate(zip(task.datasets, task.expected)):
        actual = datasets[i] if i < len(datasets) else {"error": reply.get("error") or {"type": "NotRun", "message": "not run"}}
        checks.extend(check_dataset(ds.name, expected, actual, list(task.keys), task.ordered))
    if not checks:  # the program never reached the datasets
        total = task.checks_total
        passed = 0
    else:
        total, passed = len(checks), sum(c.passed for c in checks)
    outcome, error = outcome_of(reply, checks)
    reward = passed / total if total else 0.0
    if outcome != "correct" and reward >= 1.0:  # cannot happen with consistent checks; be explicit
        reward = (total - 1) / total
    return Result(task.id, outcome, reward, passed, total, error, feedback(outcome, error, checks),
                  float(duration_s), tuple(checks), str(reply.get("stdout", ""))[:2000])


def expected_from(reply: dict) -> tuple[Expected, ...]:
    """The reference run's output as the expected output of each dataset."""
    out = []
    for ds in reply.get("datasets", []):
        if "error" in ds or ds.get("truncated"):
            raise ValueError(f"reference failed: {ds.get('error') or 'output truncated'}")
        out.append(Expected(tuple((c, t) for c, t in ds["schema"]), tuple(rows.decode_rows(ds["rows"]))))
    return tuple(out)
