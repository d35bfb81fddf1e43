"""examples/trl_grpo.py as a TRL user runs it: GRPOTrainer on the tiny model, on CPU, with the
Mini-World reward on real Spark; the outcome shares reach TRL's logs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trl_grpo.py"


@pytest.mark.slow
def test_trl_grpo_example_trains_and_logs_outcomes(smoke_tasks, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("trl_grpo_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.main(["--model", "tiny", "--steps", "1", "--generations", "2", "--max-new-tokens", "16",
                           "--out", str(tmp_path / "out")])
    assert summary["steps"] == 1
    shares = {k: v for k, v in summary["last"].items() if k.startswith("miniworld/outcome/")}
    assert len(shares) == 8 and abs(sum(shares.values()) - 1.0) < 1e-6, summary
    assert 0.0 <= summary["last"]["reward"] <= 1.0
