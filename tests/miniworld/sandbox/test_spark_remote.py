"""`--spark-remote` against a Spark Connect server that someone else started and owns.

The server runs in its own process (as a user's cluster would), bound to 127.0.0.1. The CLI runs
with no Java reachable at all, so it *cannot* start a local server: if `--spark-remote` were
ignored anywhere, the command would fail with the "Java 17+ is required" error instead of
scoring the candidate. A control run without `--spark-remote` proves that failure would show.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts Spark, a model or a subprocess

ROOT = Path(__file__).resolve().parents[3]
TASK = "orders_enrichment.join_type.0"

# A stand-in for "a server somebody else runs": owned by a separate process, stopped when its
# stdin closes (and killed with it, by the server's parent-death signal, if the test dies).
SERVE = """
import sys
from miniworld.sandbox.server import LocalConnectServer
server = LocalConnectServer(isolate=False)
print(server.start().remote, flush=True)
sys.stdin.read()
server.stop()
"""


@pytest.fixture(scope="module")
def remote() -> str:
    proc = subprocess.Popen([sys.executable, "-c", SERVE], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("sc://127.0.0.1:"), f"server did not start (exit {proc.poll()})"
        yield line
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    """The CLI with a private verification cache and no Java on PATH (nor JAVA_HOME)."""
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env.update(PATH=str(Path(sys.executable).parent), COSMOCORE_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "cosmocore.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_without_spark_remote_the_cli_would_need_java(tmp_path) -> None:
    """The control: this environment really cannot start a local server."""
    out = cli("tasks", "verify", "--suite", "smoke", "--json", cache=tmp_path)
    assert out.returncode == 2 and "Java 17+ is required" in out.stderr, out.stderr


def test_verify_and_run_on_a_remote_server(remote, tmp_path) -> None:
    verified = cli("tasks", "verify", "--suite", "smoke", "--spark-remote", remote, "--json", cache=tmp_path)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["failures"] == [] and report["verified"] == report["tasks"] > 0
    assert report["families"] >= 2

    listed = cli("tasks", "list", "--suite", "smoke", "--json", cache=tmp_path)  # from the cache, no Spark
    assert listed.returncode == 0, listed.stderr
    assert TASK in [t["id"] for t in json.loads(listed.stdout)["tasks"]]

    shown = json.loads(cli("tasks", "show", TASK, "--suite", "smoke", "--json", cache=tmp_path).stdout)
    outcomes = {}
    for name in ("reference_code", "buggy_code"):
        candidate = tmp_path / f"{name}.py"
        candidate.write_text(shown[name])
        out = cli("run", str(candidate), "--task", TASK, "--suite", "smoke", "--spark-remote", remote,
                  "--json", cache=tmp_path)
        assert out.returncode == 0, out.stderr
        outcomes[name] = json.loads(out.stdout)
    assert outcomes["reference_code"]["outcome"] == "correct"
    assert outcomes["reference_code"]["reward"] == 1.0
    assert outcomes["buggy_code"]["outcome"] == "wrong_result"
    assert 0 < outcomes["buggy_code"]["checks_passed"] < outcomes["buggy_code"]["checks_total"]


def test_run_verifies_the_suite_on_the_remote_server_when_not_cached(remote, tmp_path) -> None:
    candidate = tmp_path / "fix.py"
    candidate.write_text("def transform(**kw):\n    return kw['no_such_input']\n")
    out = cli("run", str(candidate), "--task", TASK, "--suite", "smoke", "--spark-remote", remote,
              "--json", cache=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["outcome"] != "correct"
    assert "verifying it once" in out.stderr
