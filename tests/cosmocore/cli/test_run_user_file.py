"""`cosmocore run my_pipeline.py --task ...` takes the file that `tasks import` took, unchanged:
a realistic script (SparkSession builder, typing hints, a computed constant, a loader helper and a
__main__ block) scores `correct` on its own task, and the mutated version does not."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SESSIONS = ROOT / "tests" / "data" / "user_pipelines" / "sessions.py"


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmocore.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_imported_script_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "COSMOCORE_SUITES": str(tmp_path / "suites"), "COSMOCORE_CACHE": str(tmp_path / "cache")}
    suite = str(tmp_path / "mine.yaml")
    imported = cli("tasks", "import", str(SESSIONS), "--function", "sessionize", "--suite", suite, "--json",
                   env=env)
    assert imported.returncode == 0, imported.stderr
    listed = cli("tasks", "list", "--suite", suite, "--json", env=env)
    task = json.loads(listed.stdout)["tasks"][0]["id"]
    ran = cli("run", str(SESSIONS), "--task", task, "--suite", suite, "--timeout", "120", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["outcome"] == "correct" and result["reward"] == 1.0, result
    assert "running sessionize()" in ran.stderr
    broken = tmp_path / "broken.py"
    broken.write_text(SESSIONS.read_text().replace('.alias("started_at")', '.alias("start")'))
    wrong = cli("run", str(broken), "--task", task, "--suite", suite, "--timeout", "120", "--json", env=env)
    assert wrong.returncode == 0, wrong.stderr
    assert json.loads(wrong.stdout)["outcome"] == "wrong_result"  # the output column is misnamed
