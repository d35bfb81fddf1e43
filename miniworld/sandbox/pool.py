"""A pool of confined worker processes (see :mod:`miniworld.sandbox.worker`) that run candidate jobs in
parallel, each under a wall-clock deadline, and replace any worker that hangs, dies or talks
nonsense. Jobs and replies are JSON lines on private pipes: nothing a worker says is unpickled.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from miniworld.sandbox import isolation
from miniworld.sandbox.server import SparkEndpoint

log = logging.getLogger(__name__)

#: The longest reply line accepted from a worker (rows are capped well below this).
MAX_REPLY_BYTES = 32 * 1024 * 1024


class WorkerError(RuntimeError):
    """A worker died, hung past its deadline, or sent an unreadable reply."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "timeout" | "crashed" | "protocol" | "resource_limit"


@dataclass(frozen=True)
class PoolConfig:
    """How many workers, how long a job may run, and how workers are confined."""

    size: int = 2
    timeout_s: float = 30.0
    grace_s: float = 10.0  # after the worker's own watchdog, before the parent kills it
    start_timeout_s: float = 90.0
    landlock: bool = True
    limits: isolation.Limits = isolation.Limits()


class WorkerProcess:
    """One worker: a child Python process with a job pipe, confined as it starts."""

    def __init__(self, endpoint: SparkEndpoint, config: PoolConfig, root: str, index: int) -> None:
        self.scratch = tempfile.mkdtemp(prefix=f"worker{index}-", dir=root)
        job_r, job_w = os.pipe()
        reply_r, reply_w = os.pipe()
        env = isolation.scrubbed_env(self.scratch, {"PYTHONPATH": os.pathsep.join(_import_roots())})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "miniworld.sandbox.worker", "--fds", f"{job_r},{reply_w}"],
            pass_fds=(job_r, reply_w), env=env, cwd=self.scratch, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.scratch, "worker.log"), "wb"),  # noqa: SIM115
        )
        os.close(job_r)
        os.close(reply_w)
        self._out = os.fdopen(job_w, "w", encoding="utf-8")
        self._in = os.fdopen(reply_r, "rb")
        landlock = config.landlock and isolation.landlock_available()
        self.send({"remote": endpoint.remote, "netns": endpoint.netns, "scratch": self.scratch,
                   "landlock": landlock, "read_paths": isolation.system_read_paths(),
                   "limits": vars(config.limits)})
        hello = self.receive(config.start_timeout_s)
        if not hello.get("ready"):
            self.kill()
            raise WorkerError("crashed", f"worker could not connect to Spark: {hello.get('error')}")
        self.pid = hello["pid"]

    def send(self, message: dict) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()

    def receive(self, timeout_s: float) -> dict:
        ready, _, _ = select.select([self._in], [], [], max(timeout_s, 0.0))
        if not ready:
            raise WorkerError("timeout", f"no reply within {timeout_s:.1f}s")
        line = self._in.readline(MAX_REPLY_BYTES + 1)
        if not line:
            code = self.proc.wait(timeout=5)
            if code == -signal.SIGXCPU:  # the CPU budget is the job's deadline in CPU seconds
                raise WorkerError("timeout", "worker exceeded its CPU-time budget")
            kind = "resource_limit" if code in (-signal.SIGKILL, -signal.SIGSEGV) else "crashed"
            raise WorkerError(kind, f"worker exited with status {code}")
        if len(line) > MAX_REPLY_BYTES:
            raise WorkerError("resource_limit", "worker reply exceeded the output cap")
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise WorkerError("protocol", f"unreadable worker reply: {exc}") from None
        if not isinstance(reply, dict):
            raise WorkerError("protocol", "worker reply is not an object")
        return reply

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self._out, self._in):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self.scratch, ignore_errors=True)


def _import_roots() -> list[str]:
    """Where the worker finds ``miniworld`` (the repo or site-packages) and its dependencies:
    also the parent's ``PYTHONPATH``, where spark-submit and Databricks put pyspark."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != "."]
    return list(dict.fromkeys([here, *(os.path.abspath(p) for p in inherited)]))


class SandboxPool:
    """Runs jobs across ``config.size`` workers; thread-safe; use as a context manager."""

    def __init__(self, endpoint: SparkEndpoint, config: PoolConfig | None = None) -> None:
        self.endpoint = endpoint
        self.config = config or PoolConfig()
        self._root = tempfile.mkdtemp(prefix="miniworld-pool-")
        self._idle: queue.Queue[WorkerProcess] = queue.Queue()
        self._lock = threading.Lock()
        self._next_index = 0
        self._closed = False
        self.replaced = 0
        self.registered_views: set[str] = set()
        with ThreadPoolExecutor(self.config.size) as ex:
            futures = [ex.submit(self._spawn) for _ in range(self.config.size)]
        for future in futures:
            if future.exception() is None:
                self._idle.put(future.result())
        failed = next((f.exception() for f in futures if f.exception() is not None), None)
        if failed is not None:  # e.g. Spark unreachable: leave no worker behind
            self.close()
            raise failed
        self._executor = ThreadPoolExecutor(self.config.size, thread_name_prefix="sandbox")

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> WorkerProcess:
        with self._lock:
            index = self._next_index
            self._next_index += 1
        return WorkerProcess(self.endpoint, self.config, self._root, index)

    def _replace(self, worker: WorkerProcess) -> None:
        """Kill a misbehaving worker and start its successor in the background."""
        worker.kill()
        self.replaced += 1

        def respawn() -> None:
            for attempt in range(3):
                if self._closed:
                    return
                try:
                    worker = self._spawn()
                    if self._closed:  # closed while it started: nobody would ever stop it
                        worker.kill()
                    else:
                        self._idle.put(worker)
                    return
                except Exception as exc:  # noqa: BLE001 - retried, then logged
                    if self._closed:
                        return
                    log.warning("worker respawn %d failed: %s", attempt + 1, exc)
                    time.sleep(1.0)

        threading.Thread(target=respawn, daemon=True).start()

    def run(self, job: dict, timeout_s: float | None = None) -> dict:
        """Run one job; returns the worker's reply, or a synthetic one if the worker failed."""
        timeout = timeout_s or self.config.timeout_s
        job = {**job, "timeout_s": timeout}
        worker = self._idle.get(timeout=self.config.start_timeout_s * 2)
        try:
            worker.send(job)
            reply = worker.receive(timeout + self.config.grace_s)
        except (WorkerError, OSError, ValueError) as exc:
            kind = exc.kind if isinstance(exc, WorkerError) else "crashed"
            self._replace(worker)
            status = "timeout" if kind == "timeout" else kind
            return {"id": job.get("id"), "status": status,
                    "error": {"type": "WorkerError", "condition": kind, "message": str(exc),
                              "timed_out": kind == "timeout"}, "stdout": ""}
        if reply.get("id") != job.get("id"):
            self._replace(worker)
            return {"id": job.get("id"), "status": "crashed",
                    "error": {"type": "WorkerError", "condition": "protocol",
                              "message": "worker replied to another job"}, "stdout": ""}
        self._idle.put(worker)
        return reply

    def run_many(self, jobs: list[dict], timeout_s: float | None = None,
                 stop: Callable[[dict], bool] | None = None) -> list[dict]:
        """Run jobs in parallel across the pool, results in input order. Once ``stop`` is true
        of a reply (Spark is gone), jobs not yet started are answered ``not_run`` at once
        instead of each waiting out the client's retries."""
        stopped = threading.Event()

        def one(job: dict) -> dict:
            if stopped.is_set():
                return {"id": job.get("id"), "status": "not_run", "stdout": "",
                        "error": {"type": "NotRun", "condition": None, "message": "not run: Spark went away"}}
            reply = self.run(job, timeout_s)
            if stop is not None and stop(reply):
                stopped.set()
            return reply

        return list(self._executor.map(one, jobs))

    def pids(self) -> list[int]:
        """Process ids of the idle workers (for tests and diagnostics)."""
        return [w.proc.pid for w in list(self._idle.queue)]

    def close(self) -> None:
        self._closed = True
        if hasattr(self, "_executor"):  # absent when the constructor failed
            self._executor.shutdown(wait=True)
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                break
        shutil.rmtree(self._root, ignore_errors=True)
