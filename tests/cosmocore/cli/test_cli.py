"""The `cosmocore` command as users run it (a real subprocess): JSON contracts and exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts Spark, a model or a subprocess

ROOT = Path(__file__).resolve().parents[3]


def cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "cosmocore.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_tasks_show_json_has_the_contract_keys() -> None:
    out = cli("tasks", "show", "orders_enrichment.join_type.0", "--json")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert {"id", "family", "bug_class", "split", "spec", "buggy_code", "reference_code"} <= payload.keys()
    assert payload["buggy_code"] != payload["reference_code"]


def test_bad_input_exits_2_with_one_line() -> None:
    for args in (["tasks", "show", "no.such.task"], ["tasks", "list", "--suite", "nope"],
                 ["run", "/no/such/file.py", "--task", "orders_enrichment.join_type.0"]):
        out = cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stdout == ""
        lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr


def test_bad_spark_remote_is_bad_input(tmp_path) -> None:
    code = tmp_path / "fix.py"
    code.write_text("def transform(**kw):\n    return None\n")
    out = cli("run", str(code), "--task", "orders_enrichment.join_type.0", "--spark-remote", "http://x")
    assert out.returncode == 2 and "--spark-remote" in out.stderr


def test_tasks_list_and_run_json_on_a_verified_suite(cache_dir, smoke_tasks, tmp_path) -> None:
    env = {"COSMOCORE_CACHE": str(cache_dir)}  # the session already verified smoke there
    listed = cli("tasks", "list", "--suite", "smoke", "--json", env_extra=env)
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout)
    assert payload["suite"] == "smoke"
    assert [t["id"] for t in payload["tasks"]] == [t.id for t in smoke_tasks]
    assert set(payload["tasks"][0]) == {"id", "family", "bug_class", "split"}

    task = smoke_tasks[0]
    fix = tmp_path / "fix.py"
    fix.write_text(task.buggy_code)
    out = cli("run", str(fix), "--task", task.id, "--suite", "smoke", "--json", env_extra=env)
    assert out.returncode == 0, out.stderr  # a failing candidate is not a CLI failure
    result = json.loads(out.stdout)
    assert {"task", "outcome", "reward", "checks_passed", "checks_total", "error", "duration_s"} <= result.keys()
    assert result["task"] == task.id and result["outcome"] != "correct"
    assert result["checks_total"] == task.checks_total and 0 <= result["reward"] < 1


def test_solve_json_runs_the_envs_episode(cache_dir, smoke_tasks) -> None:
    """`solve`: the tiny model's attempts through the env's step; a failed turn 1 is followed by
    a turn 2 (the env's truncation ends it), each attempt with its outcome and feedback."""
    env = {"COSMOCORE_CACHE": str(cache_dir)}
    task = smoke_tasks[0]
    out = cli("solve", "--task", task.id, "--suite", "smoke", "--model", "tiny", "--turns", "2",
              "--max-new-tokens", "16", "--json", env_extra=env)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["task"] == task.id and payload["model"] == "tiny"
    turns = [a["turn"] for a in payload["attempts"]]
    assert turns in ([1], [1, 2]) and (turns == [1]) == (payload["attempts"][0]["outcome"] == "correct")
    for a in payload["attempts"]:
        assert {"code", "outcome", "reward", "checks_total", "feedback", "completion"} <= a.keys()
        assert a["checks_total"] == task.checks_total and 0 <= a["reward"] <= 1
