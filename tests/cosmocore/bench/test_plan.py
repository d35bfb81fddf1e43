"""``cosmocore bench --plan``: a profile's design and estimated wall time, nothing run or written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cosmocore.bench import bench as b
from cosmocore.bench.plan import Work, design, estimate_s, held_out_cycles, work

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_plan_json_shows_the_verdict_design_and_writes_nothing(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "cosmocore.cli", "bench", "--profile", "verdict", "--plan", "--json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["seeds"] >= 5 and plan["test_tasks"] >= 48 and set(plan["arms"]) >= {"uniform", "cosmocore", "cocos"}
    for key in ("profile", "arms", "seeds", "cycles", "practice_tasks", "dev_tasks", "test_tasks", "samples_per_task",
                "estimated_wall_s", "work"):
        assert key in plan, key
    assert list(tmp_path.iterdir()) == []  # no run directory, no store


def test_quick_design_counts_and_work() -> None:
    cfg = b.resolve("quick")
    plan = design(cfg)
    assert plan["seeds"] >= 3 and plan["test_tasks"] >= 24 and plan["practice_tasks"] == 12
    assert plan["held_out_cycles"] == [0, cfg.cycles] and plan["eval_split"] == "test"
    w = work(cfg, plan)
    runs = len(cfg.runs())
    # cycle 0 (practice + test) once per seed; practice every later cycle and test at the last, per run
    assert w.greedy_replies == 3 * (12 + 30) + runs * (cfg.cycles * 12 + 30)
    assert w.warmup_steps == 3 * cfg.train["warmup_sft"]
    dev = design(b.resolve("quick", train={"eval_split": "dev"}))
    assert dev["eval_split"] == "dev" and dev["held_out_scored"] == dev["dev_tasks"]


def test_estimate_adds_fixed_cost_to_per_job_work() -> None:
    model = {"s_per_greedy_reply": 2.0, "s_per_sampled_reply": 3.0, "s_per_night_step": 5.0,
             "s_per_warmup_step": 7.0, "fixed_s": 60.0}
    assert estimate_s(Work(10, 10, 2, 1), jobs=2, model=model) == 60.0 + (20 + 30 + 10 + 7) / 2
    assert held_out_cycles(10, 4) == [0, 4, 8, 10] and held_out_cycles(3, 0) == [0, 3]
