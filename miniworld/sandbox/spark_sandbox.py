"""Evaluate candidate code on a task: policy gate, confined run on Spark, checks, outcome, reward.

``Sandbox`` owns the Spark endpoint (a local Connect server it starts, or a remote one) and the
worker pool; it is the one object the environment, the CLI and the trainer use to execute code.

Spark going away is the environment's failure, never the candidate's. A local server found dead
is restarted (new workers, views registered again) and the jobs it took down are run again; a
server that cannot be brought back, or a remote one that stays unreachable, raises
:class:`SparkUnavailable` instead of returning results, so a trainer stops without storing
those episodes and resumes from its checkpoint.
"""
from __future__ import annotations

import itertools
import logging
import time
import uuid

from miniworld import rows
from miniworld.sandbox import gate
from miniworld.checks import CheckResult, Expected, check_dataset, feedback, outcome_of
from miniworld.sandbox.pool import PoolConfig, SandboxPool
from miniworld.sandbox.result import Result
from miniworld.sandbox.server import LocalConnectServer, SparkEndpoint, SparkStartError, endpoint_for
from miniworld.task import Task

log = logging.getLogger(__name__)


#: Recovery rounds for jobs that lost Spark: once all together, then each job alone.
MAX_RECOVERIES = 2


class SparkUnavailable(RuntimeError):
    """Spark could not be reached or restarted: the affected jobs were not scored."""


class Sandbox:
    """Runs candidates for tasks on Spark in confined workers. Use as a context manager."""

    def __init__(self, spark_remote: str | None = None, workers: int = 2, timeout_s: float = 30.0,
                 isolate: bool = True, max_rows: int = 5000, endpoint: SparkEndpoint | None = None) -> None:
        self.max_rows = max_rows
        self.restarts = 0  # local servers started again after they died
        self.retried = 0  # jobs run again because Spark went away under them
        self._pool_config = PoolConfig(size=workers, timeout_s=timeout_s, landlock=isolate)
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
            self.pool: SandboxPool | None = SandboxPool(endpoint, self._pool_config)
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

    def __deepcopy__(self, memo: dict) -> Sandbox:
        """A running service (server, workers) is shared, not copied: Gymnasium's
        ``env.spec.make()`` deep-copies the keyword arguments that built an env."""
        return self

    def close(self) -> None:
        if getattr(self, "pool", None) is not None:
            self.pool.close()
            self.pool = None
        if self._server is not None:
            self._server.stop()
            self._server = None

    # -- raw execution -------------------------------------------------------------------
    def _job(self, task: Task, code: str, registered: set[str]) -> dict:
        datasets = []
        for ds in task.datasets:
            register = {view: {"schema": task.inputs[arg], "rows": rows.encode_rows(ds.inputs[arg])}
                        for arg, view in ds.views.items() if view not in registered}
            datasets.append({"name": ds.name, "inputs": dict(ds.views), "register": register or None})
        return {"id": next(self._ids), "tag": f"mw-{uuid.uuid4().hex[:12]}", "code": code,
                "entry": "transform", "max_rows": self.max_rows, "datasets": datasets}

    def run_many_raw(self, items: list[tuple[Task, str]], timeout_s: float | None = None) -> list[dict]:
        """Worker replies for (task, code) pairs, run in parallel (no policy gate, no checks).

        Jobs that lost Spark are run again after a recovery: first all together, then each
        alone (so a job that takes the server down itself is told apart from its neighbours
        and gets ``resource_limit``). Raises :class:`SparkUnavailable` when Spark cannot be
        brought back."""
        replies: list[dict] = [{} for _ in items]
        affected = self._run_into(replies, items, list(range(len(items))), timeout_s)
        for round_ in range(MAX_RECOVERIES):
            if not affected:
                return replies
            self._recover(f"{len(affected)} of {len(items)} job(s) lost Spark")
            self.retried += len(affected)
            groups = [affected] if round_ == 0 else [[i] for i in affected]
            affected = [i for group in groups for i in self._run_into(replies, items, group, timeout_s)]
        for i in affected:  # it took Spark down when run alone, after fresh restarts
            replies[i] = _spark_lost(replies[i])
        return replies

    def _run_into(self, replies: list[dict], items: list[tuple[Task, str]], idx: list[int],
                  timeout_s: float | None) -> list[int]:
        """Run ``items[i]`` for ``i in idx`` into ``replies``; the indices that lost Spark."""
        if not idx:
            return []
        if self.pool is None or (self._server is not None and not self._server.alive):
            self._recover("the local Spark Connect server is not running")
        pool = self.pool
        server_dead = lambda: self._server is not None and not self._server.alive  # noqa: E731
        out = pool.run_many([self._job(*items[i], pool.registered_views) for i in idx], timeout_s,
                            stop=lambda reply: _unavailable(reply) or server_dead())
        server_died = server_dead()
        lost = []
        for i, reply in zip(idx, out):
            replies[i] = reply
            if _unavailable(reply) or (server_died and not _clean(reply)):
                lost.append(i)
            elif reply.get("status") in ("ok", "error", "syntax_error"):
                for ds in items[i][0].datasets:  # views now exist server-wide
                    pool.registered_views.update(ds.views.values())
        return lost

    def _recover(self, why: str) -> None:
        """Restart a dead local server and replace the workers (they hold channels to the old
        endpoint; the new pool registers the temp views again)."""
        log.warning("Spark unavailable (%s): %s", why,
                    "restarting the local server" if self._server else f"reconnecting to {self.endpoint.remote}")
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self._server is not None and not self._server.alive:
            self._server.stop()  # reaps the dead process, removes its scratch directory
            try:
                self.endpoint = self._server.start()
            except SparkStartError as exc:
                raise SparkUnavailable(f"the local Spark Connect server died and could not be restarted: {exc}") from exc
            self.restarts += 1
        try:
            self.pool = SandboxPool(self.endpoint, self._pool_config)
        except Exception as exc:  # noqa: BLE001 - workers that cannot connect: Spark is unreachable
            raise SparkUnavailable(f"Spark at {self.endpoint.remote} is unreachable ({why}): {exc}") from exc

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


def _errors(reply: dict) -> list[dict]:
    return [reply.get("error") or {}] + [ds.get("error") or {} for ds in reply.get("datasets") or []]


def _unavailable(reply: dict) -> bool:
    """Whether a job was not run, or its reply carries Connect's own "server unreachable" error
    (see worker._grpc_status)."""
    return reply.get("status") == "not_run" or any(err.get("grpc_status") == "UNAVAILABLE" for err in _errors(reply))


def _clean(reply: dict) -> bool:
    """A reply Spark fully answered (a syntax error never reaches Spark after registration)."""
    return reply.get("status") in ("ok", "syntax_error") and not any(_errors(reply)[1:])


def _spark_lost(reply: dict) -> dict:
    return {"id": reply.get("id"), "status": "resource_limit", "stdout": reply.get("stdout", ""),
            "error": {"type": "SparkServerLost", "condition": "resource_limit",
                      "message": "the Spark server went down each time this code ran, alone, on a fresh server"}}


def _gate(task: Task, code: str) -> Result | None:
    """The AST policy's verdict as a result, or None when the code may run."""
    try:
        violations = gate.check(code)
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
