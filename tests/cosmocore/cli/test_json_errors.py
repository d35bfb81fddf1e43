"""Errors a script can read: with --json every refusal is one JSON object on stdout
({"error", "input", "exit_status"}), and bad input leaves no file behind (no store, no run folder)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmocore.cli", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=180)


def json_error(out: subprocess.CompletedProcess, status: int = 2) -> dict:
    """The one JSON object on stdout, checked against the exit status and the stderr line."""
    assert out.returncode == status, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout
    payload = json.loads(lines[0])
    assert set(payload) >= {"error", "input"} and payload["exit_status"] == status
    assert payload["error"] and payload["error"] in " ".join(out.stderr.split())
    return payload


def _dead_remote() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"sc://127.0.0.1:{s.getsockname()[1]}"


def test_train_and_bench_refuse_bad_input_before_creating_anything(tmp_path: Path) -> None:
    store, out, bench_out = tmp_path / "store", tmp_path / "out", tmp_path / "bench"
    common = ["--model", "tiny", "--cycles", "1", "--store", str(store), "--out", str(out), "--json"]
    payload = json_error(cli("train", "--suite", "nosuch", *common))
    assert "nosuch" in payload["error"]
    dead = _dead_remote()
    payload = json_error(cli("train", "--suite", "smoke", "--spark-remote", dead, *common))
    assert payload["input"] == dead and "cannot connect" in payload["error"]
    json_error(cli("bench", "--profile", "smoke", "--suite", "nosuch", "--out", str(bench_out), "--json"))
    payload = json_error(cli("bench", "--profile", "smoke", "--spark-remote", dead, "--out", str(bench_out), "--json"))
    assert payload["input"] == dead
    assert sorted(os.listdir(tmp_path)) == [], "a refused command left files behind"


def test_every_refusal_is_one_json_object(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    assert json_error(cli("run", str(missing), "--task", "x", "--json"))["input"] == str(missing)
    fix = tmp_path / "fix.py"
    fix.write_text("def transform(**kw):\n    return None\n")
    assert json_error(cli("run", str(fix), "--task", "no.such.task", "--json"))["input"] == "no.such.task"
    assert "--cycles" in json_error(cli("train", "--cycles", "many", "--json"))["error"]  # a usage error
    assert json_error(cli("buffer", "stats", "--store", str(tmp_path / "empty"), "--json"))["input"] == \
        str(tmp_path / "empty")
    assert "nosuch" in json_error(cli("tasks", "list", "--suite", "nosuch", "--json"))["error"]
    assert sorted(os.listdir(tmp_path)) == ["fix.py"]


@pytest.mark.slow
def test_tasks_list_piped_keeps_whole_ids_and_show_keeps_code(smoke_tasks) -> None:
    out = cli("tasks", "list", "--suite", "smoke")
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert [r[0] for r in rows] == [t.id for t in smoke_tasks] and all(len(r) == 4 for r in rows)
    task = max(smoke_tasks, key=lambda t: max(len(x) for x in t.reference_code.splitlines()))
    shown = subprocess.run([sys.executable, "-m", "cosmocore.cli", "tasks", "show", task.id, "--suite", "smoke"],
                           cwd=ROOT, env={**os.environ, "COLUMNS": "40"}, capture_output=True, text=True,
                           timeout=180)
    assert shown.returncode == 0 and task.reference_code.strip() in shown.stdout
