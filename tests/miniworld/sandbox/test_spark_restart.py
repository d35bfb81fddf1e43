"""The Spark Connect server dies under the sandbox (kill -9): the environment restarts it and runs
the affected jobs again, so no episode is scored as the model's failure; when Spark cannot be
brought back, the sandbox raises instead of scoring. These tests own their servers: they kill
them, so they never touch the session's shared ``sandbox``."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from miniworld.suites import catalog
from miniworld.sandbox.spark_sandbox import Result, Sandbox, SparkUnavailable
from miniworld.sandbox.server import LocalConnectServer

pytestmark = pytest.mark.slow  # starts Spark, a model or a subprocess


@pytest.fixture(scope="module")
def box(cache_dir):
    b = Sandbox(workers=2, timeout_s=20.0)
    yield b
    b.close()


@pytest.fixture(scope="module")
def items(box, smoke_suite) -> list:
    """Reference and buggy code of three smoke tasks (verified on ``box`` unless cached)."""
    tasks = catalog.load_tasks(smoke_suite, box)[:3]
    return [(t, code) for t in tasks for code in (t.reference_code, t.buggy_code)]


def _scores(results: list[Result]) -> list[tuple]:
    return [(r.outcome, r.reward, r.checks_passed, r.checks_total) for r in results]


def _kill(pid: int) -> None:
    """kill -9 a server (a child of this process) and wait until it is gone, without reaping it
    (the server's owner notices by reaping it)."""
    os.kill(pid, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def test_server_killed_between_and_during_evaluations_is_restarted_and_retried(box, items) -> None:
    undisturbed = _scores(box.evaluate_many(items))
    assert [s[0] for s in undisturbed[::2]] == ["correct"] * (len(items) // 2)  # the references
    assert all(s[0] != "correct" for s in undisturbed[1::2])  # the bugs

    # between two evaluations: noticed before any job runs, nothing is lost
    first_pid = box.server_pid
    _kill(first_pid)
    assert _scores(box.evaluate_many(items)) == undisturbed
    assert box.restarts == 1 and box.retried == 0 and box.server_pid not in (None, first_pid)

    # during one: killed once every worker holds a job; the jobs that lost Spark run again
    victim = box.server_pid
    killed = threading.Event()

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 120
        while box.pool.pids() and time.monotonic() < deadline:  # idle workers left
            time.sleep(0.005)
        _kill(victim)
        killed.set()

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    during = _scores(box.evaluate_many(items * 2))
    killer.join(30)
    assert killed.is_set()
    assert during == undisturbed * 2
    assert box.restarts == 2 and box.retried >= 1 and box.server_pid != victim


def test_local_server_that_cannot_restart_raises_instead_of_scoring(box, items, monkeypatch, tmp_path) -> None:
    _kill(box.server_pid)
    monkeypatch.setenv("PATH", str(tmp_path))  # no java to start a new server with
    monkeypatch.delenv("JAVA_HOME", raising=False)
    restarts = box.restarts
    with pytest.raises(SparkUnavailable, match="could not be restarted"):
        box.evaluate_many(items[:2])
    assert box.restarts == restarts


def test_remote_server_that_stays_unreachable_raises_instead_of_scoring(cache_dir, items) -> None:
    server = LocalConnectServer(isolate=False)  # stands in for a --spark-remote server
    endpoint = server.start()
    try:
        with Sandbox(spark_remote=endpoint.remote, workers=1, timeout_s=20.0) as remote:
            assert remote.server_pid is None
            task, reference = items[0]
            assert remote.evaluate(task, reference).outcome == "correct"
            _kill(server._proc.pid)
            started = time.monotonic()
            with pytest.raises(SparkUnavailable, match="unreachable"):
                remote.evaluate(task, reference)
            assert time.monotonic() - started < 60  # the client's retries are bounded, no long hang
            assert remote.restarts == 0 and remote.pool is None
    finally:
        server.stop()
