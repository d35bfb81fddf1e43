"""The ``spark-submit`` entry point: the CLI as a Spark application (real spark-submit, local[2])."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from cosmocore.cli.spark_job import with_remote

ROOT = Path(__file__).resolve().parents[3]
SPARK_SUBMIT = Path(pyspark.__file__).parent / "bin" / "spark-submit"
JOB = ROOT / "cosmocore" / "cli" / "spark_job.py"


def spark_submit(*args: str, cache: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "COSMOCORE_CACHE": str(cache)}
    return subprocess.run([str(SPARK_SUBMIT), "--master", "local[2]", "--driver-memory", "1g",
                           "--conf", "spark.ui.enabled=false", str(JOB), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_with_remote_adds_the_endpoint_only_where_it_applies() -> None:
    remote = "sc://127.0.0.1:15002"
    assert with_remote(["train", "--cycles", "1"], remote)[-2:] == ["--spark-remote", remote]
    assert with_remote(["tasks", "verify"], remote)[-1] == remote
    assert with_remote(["tasks", "show", "x"], remote) == ["tasks", "show", "x"]  # runs no Spark
    assert with_remote(["report", "d"], remote) == ["report", "d"]
    given = ["run", "f.py", "--spark-remote=sc://h:1"]
    assert with_remote(given, remote) == given  # the user's choice wins
    assert with_remote(["train"], None) == ["train"]


@pytest.mark.slow
def test_bad_input_keeps_exit_status_2_through_spark_submit(tmp_path) -> None:
    out = spark_submit("tasks", "list", "--suite", "no_such_suite", cache=tmp_path, cwd=tmp_path)
    assert out.returncode == 2, out.stdout[-2000:]
    assert "error: unknown suite 'no_such_suite'" in out.stdout  # PythonRunner merges the streams


@pytest.mark.slow
def test_train_smoke_run_under_spark_submit(tmp_path) -> None:
    """From another directory (so imports do not lean on the checkout being the cwd)."""
    out = spark_submit("train", "--model", "tiny", "--suite", "smoke", "--cycles", "1",
                       "--episodes-per-cycle", "2", "--turns", "1", "--max-new-tokens", "16",
                       "--nocturnal-steps", "1", "--minibatch", "2", "--eval-tasks", "1",
                       "--store", str(tmp_path / "store"), "--out", str(tmp_path / "out"), "--json",
                       cache=tmp_path / "cache", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])  # the JSON object is the last line
    assert summary["cycles_completed"] == 1 and summary["episodes"] >= 2
    assert 0.0 <= summary["final_hallucination_rate"] <= 1.0
    assert (tmp_path / "store" / "episodes" / "_delta_log").is_dir()
    assert Path(summary["checkpoint"]).is_file()
