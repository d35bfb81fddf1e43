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


@pytest.mark.slow
def test_trl_self_correction_feeds_back_and_rewards_the_accumulated_return(smoke_tasks, tmp_path: Path) -> None:
    """--turns 2: the rollout's second prompt carries the first attempt and the sandbox's feedback
    on it, GRPO trains on the second attempt, and its reward is gamma * r1 + (r2 - r1) with r2
    scored again here."""
    from miniworld import trl_multiturn

    seen: list[dict] = []
    rollout, reward = trl_multiturn.SelfCorrection.rollout, trl_multiturn.AccumulatedReward.__call__

    def spy_rollout(self, prompts, trainer):
        out = rollout(self, prompts, trainer)
        seen.append({**out, "second_prompt": trainer.processing_class.batch_decode(out["prompt_ids"])})
        return out

    def spy_reward(self, prompts, completions, task_id, first_reward, **kw):
        values = reward(self, prompts, completions, task_id, first_reward, **kw)
        r2 = self.scorer(prompts, completions, task_id)  # the sandbox is open: score turn 2 again
        seen[-1]["check"] = (values, [0.5 * a + (b - a) for a, b in zip(first_reward, r2)])
        return values

    trl_multiturn.SelfCorrection.rollout, trl_multiturn.AccumulatedReward.__call__ = spy_rollout, spy_reward
    try:
        spec = importlib.util.spec_from_file_location("trl_grpo_example_turns", EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        summary = module.main(["--model", "tiny", "--steps", "1", "--generations", "2", "--max-new-tokens", "16",
                               "--turns", "2", "--gamma", "0.5", "--out", str(tmp_path / "out")])
    finally:
        trl_multiturn.SelfCorrection.rollout, trl_multiturn.AccumulatedReward.__call__ = rollout, reward
    assert summary["steps"] == 1 and summary["turns"] == 2 and seen
    out = seen[0]
    assert len(out["completion_ids"]) == len(out["task_id"]) == len(out["first_reward"]) == 2
    assert [len(lp) for lp in out["logprobs"]] == [len(c) for c in out["completion_ids"]]
    assert all("## Your attempt 1" in p and "Result of running it:" in p for p in out["second_prompt"])
    values, expected = out["check"]
    assert values == pytest.approx(expected)
    shares = {k: v for k, v in summary["last"].items() if k.startswith("miniworld/outcome/")}
    assert len(shares) == 8 and abs(sum(shares.values()) - 1.0) < 1e-6, summary
