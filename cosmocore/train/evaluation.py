"""Evaluation: greedy scores of a cycle. The practice set every cycle (turn 1: cycles-to-zero-
error counts on it), the held-out split (``eval_split``) at cycle 0, the last cycle and every
``eval_every`` cycles, as rows of the ``evaluations`` table. Cycle 0's scores are shared by the
arms of a seed (they start from the same warm start), through ``warmup_cache``."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from cosmocore import atomic
from cosmocore.train import shared_cache, warmstart
from cosmocore.train.run_state import RunState
from miniworld.task import Task


def evaluate(tr: RunState) -> dict:
    """Greedy scores of this cycle: the practice set every cycle (turn 1: cycles-to-zero-error
    counts on it), the held-out split (``eval_split``, all its turns) at cycle 0, the last
    cycle and every ``eval_every`` cycles. Cycle 0's are read from the arms' shared cache."""
    cfg, tasks = tr.cfg, tr.run_tasks
    tr.eval_replies = 0
    held = tr.cycle in (0, cfg.cycles) or bool(cfg.eval_every and tr.cycle % cfg.eval_every == 0)
    out: dict[str, Any] = {}
    practice = scored(tr, "practice", tasks.practice, 1)
    out["practice_errors"] = sum(r["outcome"] != "correct" for r in practice)
    out["practice_hallucination_rate"] = out["practice_errors"] / len(practice)
    rows = practice
    if held:
        held_rows = scored(tr, cfg.eval_split, tasks.held_out, cfg.eval_turns)
        first = [r for r in held_rows if r["turn"] == 1]
        out.update({"eval_split": cfg.eval_split,
                    "eval_hallucination_rate": float(np.mean([r["outcome"] != "correct" for r in first])),
                    "eval_reward": float(np.mean([r["reward"] for r in first])),
                    "eval_outcomes": {o: sum(r["outcome"] == o for r in first)
                                      for o in sorted({r["outcome"] for r in first})}})
        rows = rows + held_rows
    tr.store.append_evaluations(
        [{"eval_id": f"{cfg.run_id}-c{tr.cycle}-{r['split']}-{r['task_id']}-t{r['turn']}-k0",
          "run_id": cfg.run_id, "arm": cfg.arm, "seed": cfg.seed, "cycle": tr.cycle, "sample": 0,
          "model_version": f"{cfg.run_id}@c{tr.cycle}", **r} for r in rows])
    out["eval_replies"] = tr.eval_replies  # decoded now (a cached cycle 0 decodes none): the cost model's count
    if tr.eval_cached:
        out["eval_cached"] = True
    return out


def scored(tr: RunState, split: str, tasks: list[Task], turns: int) -> list[dict]:
    """Greedy attempts at ``tasks`` as evaluation rows (without the run's ids); at cycle 0
    through the seed's shared cache, which the arms after the first read."""
    shared = shared_eval_path(tr, tasks, turns) if tr.cycle == 0 else None
    with shared_cache.cache_lock(shared) if shared is not None else contextlib.nullcontext():
        if shared is not None and shared.exists():
            tr.eval_cached = True
            tr.progress("eval", turns, turns)  # a bar waiting on it completes
            return json.loads(shared.read_text())
        tr.eval_cached = False
        attempts = tr.rollout(tasks, turns, greedy=True, phase="eval")
        tr.eval_replies += len(attempts)
        rows = [{"split": split, "group": tr.run_tasks.group(a.task) if split != "practice" else None,
                 "task_id": a.task.id, "family": a.task.family, "bug_class": a.task.bug_class,
                 "turn": a.turn, "outcome": a.result.outcome, "checks_passed": a.result.checks_passed,
                 "checks_total": a.result.checks_total, "reward": a.result.reward,
                 "entropy": float(np.mean(a.generation.entropy)) if a.generation.entropy else 0.0}
                for a in attempts]
        if shared is not None:
            atomic.write_text(shared, json.dumps(rows))
        return rows


def shared_eval_path(tr: RunState, tasks: list[Task], turns: int) -> Path | None:
    """Where cycle 0's evaluation is kept beside the warm start it measures (``warmup_cache``):
    every arm of a seed starts from the same weights and evaluates greedily, so the arms
    after the first read that evaluation instead of decoding it again."""
    if not tr.cfg.warmup_cache:
        return None
    cfg = tr.cfg
    key = shared_cache.key({"v": 2, "warmup": warmstart.warmup_key(tr), "warmed_up": tr.warmed_up,
                            "turns": turns, "max_new_tokens": tr.max_new_tokens, "temperature": cfg.temperature,
                            "timeout_s": cfg.timeout_s, "tasks": [[t.id, t.buggy_code] for t in tasks]})
    return Path(cfg.warmup_cache) / f"eval0-{key}.json"
