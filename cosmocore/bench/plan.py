"""A bench's design before it runs (``cosmocore bench --plan``): arms, seeds, cycles, how many
tasks each split holds and each run practises, and the wall time a cost model predicts.

The cost model (``benchmarks/cost_model.json``, written by ``benchmarks/cost_model.py --from
RUN_DIR`` from a finished bench's own timings) prices the three things a bench spends time on:
a reply generated and executed, a night's optimizer step and a warm-start step. Its figures
are per job with the profile's jobs running side by side, as measured."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmocore.bench.bench import BenchConfig, train_config

COST_MODEL = Path(__file__).resolve().parents[2] / "benchmarks" / "cost_model.json"


@dataclass(frozen=True)
class Work:
    """What one bench does, counted: replies (greedy and sampled), night steps, warm-start steps."""

    greedy_replies: int
    sampled_replies: int
    night_steps: int
    warmup_steps: int


def design(cfg: BenchConfig) -> dict[str, Any]:
    """The resolved design: counts of tasks per split from the suite (candidates before the
    Spark verification, which may drop an unobservable one) and what each run scores."""
    from miniworld.suites import catalog

    tasks = catalog.generate(catalog.load_suite(cfg.suite))
    split = {name: sum(t.split == name for t in tasks) for name in catalog.SPLITS}
    t = train_config(cfg, cfg.runs()[0], Path("."), None)
    held = split[t.eval_split] if not t.eval_tasks else min(t.eval_tasks, split[t.eval_split])
    return {"profile": cfg.profile, "model": cfg.model, "suite": cfg.suite, "arms": list(cfg.arms),
            "seeds": len(cfg.seeds), "cycles": cfg.cycles, "practice_tasks": min(t.practice_tasks, split["train"]),
            "train_tasks": split["train"], "dev_tasks": split["dev"], "test_tasks": split["test"],
            "eval_split": t.eval_split, "held_out_scored": held, "samples_per_task": 1,
            "held_out_cycles": held_out_cycles(cfg.cycles, t.eval_every)}


def held_out_cycles(cycles: int, every: int) -> list[int]:
    """The cycles at which the trainer scores the held-out split (see Trainer.evaluate)."""
    return sorted({0, cycles} | ({c for c in range(1, cycles + 1) if c % every == 0} if every else set()))


def work(cfg: BenchConfig, plan: dict[str, Any]) -> Work:
    """The bench's work as counts; cycle 0 and the warm start are shared by the arms of a seed."""
    t = train_config(cfg, cfg.runs()[0], Path("."), None)
    runs, seeds = len(cfg.runs()), len(cfg.seeds)
    later = len([c for c in plan["held_out_cycles"] if c > 0])
    greedy = seeds * (plan["practice_tasks"] + plan["held_out_scored"] * t.eval_turns) + runs * (
        cfg.cycles * plan["practice_tasks"] + later * plan["held_out_scored"] * t.eval_turns)
    sampled = runs * cfg.cycles * t.episodes_per_cycle * t.turns  # an upper bound: turn 2 only for failures
    steps = runs * cfg.cycles * (t.nocturnal_steps + t.correction_steps)
    return Work(greedy, sampled, steps, seeds * t.warmup_sft)


def estimate_s(w: Work, jobs: int, model: dict[str, Any]) -> float:
    """Wall seconds: the per-job costs of the cost model over ``jobs`` parallel jobs, plus the
    fixed start-up (Spark, suite verification, model load)."""
    busy = (w.greedy_replies * model["s_per_greedy_reply"] + w.sampled_replies * model["s_per_sampled_reply"]
            + w.night_steps * model["s_per_night_step"] + w.warmup_steps * model["s_per_warmup_step"])
    return model["fixed_s"] + busy / max(jobs, 1)


def load_cost_model(path: Path = COST_MODEL) -> dict[str, Any] | None:
    """The fitted cost model, or None where none was fitted yet."""
    return json.loads(path.read_text()) if path.exists() else None


def plan(cfg: BenchConfig, jobs: int) -> dict[str, Any]:
    """``bench --plan``: the design, the work, and the estimate (null without a cost model)."""
    out = design(cfg)
    w = work(cfg, out)
    model = load_cost_model()
    same = model is not None and model.get("model") == cfg.model
    out.update({"jobs": jobs, "work": w.__dict__,
                "estimated_wall_s": round(estimate_s(w, jobs, model)) if same else None,
                "cost_model": (model.get("source") if same else
                               f"none for {cfg.model}: fit one with benchmarks/cost_model.py --from RUN_DIR")})
    return out
