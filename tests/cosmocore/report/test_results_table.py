"""The README's results table comes from committed report.json files, never typed by hand."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cosmocore.report import results_table as rt


def _report(tmp_path: Path) -> Path:
    claim = {"claim": "x", "metric": "hallucination_rate", "split": "test", "arm": "cosmocore", "baseline": "uniform",
             "estimate": -0.05, "ci95": [-0.12, 0.02], "mde": 0.1, "verdict": "no detectable difference"}
    ctze = dict(claim, metric="cycles_to_zero_error", split="practice", estimate=-1.0, ci95=[-2.5, 0.5],
                verdict="underpowered")
    report = {"design": {"profile": "quick", "arms": ["uniform", "cosmocore"], "seeds": 3, "cycles": 3,
                         "practice_tasks": 12, "dev_tasks": 11, "test_tasks": 30, "samples_per_task": 1},
              "claims": [claim, ctze],
              "arms": {"uniform": {"practice_cycles_to_zero_error": {"per_seed": [None, 3, None]}},
                       "cosmocore": {"practice_cycles_to_zero_error": {"per_seed": [2, 3, None]}}}}
    path = tmp_path / "quick-2026-12-02" / "report.json"
    path.parent.mkdir()
    path.write_text(json.dumps(report))
    return path


def test_table_rows_carry_the_claims_and_zero_error_counts(tmp_path) -> None:
    text = rt.table([_report(tmp_path)])
    row = text.splitlines()[-1]
    assert "-0.05 [-0.12, +0.02] no detectable difference" in row and "-1.00 [-2.50, +0.50] underpowered" in row
    assert "2/3 vs 1/3" in row and "3 seeds x 3 cycles, 30 test tasks" in row


def test_write_replaces_only_the_marked_block_and_refuses_a_readme_without_it(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{rt.START}\nold\n{rt.END}\nafter\n")
    rt.write(readme, "new table")
    assert readme.read_text() == f"intro\n{rt.START}\nnew table\n{rt.END}\nafter\n"
    bare = tmp_path / "BARE.md"
    bare.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- results:start -->"):
        rt.write(bare, "x")
    assert bare.read_text() == "no markers\n"
