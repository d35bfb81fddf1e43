"""Fit the bench's cost model from a finished bench's own timings; print it as JSON.

    python benchmarks/cost_model.py --from RUN_DIR [--wall-s SECONDS] [--only ARM-sSEED,...] [--write]

Each trainer's cycle records carry their phase times and counts (day_s / day_attempts,
night_s / optimizer steps, eval_s / eval_replies, warmup_s / sft_steps): their ratios are the
per-job seconds of one sampled reply, night step, greedy reply and warm-start step, measured
with the bench's jobs running side by side. ``--wall-s`` (the bench's measured wall time) gives
the fixed start-up cost as what the per-job costs do not explain. ``--write`` saves it as
benchmarks/cost_model.json, which ``cosmocore bench --plan`` reads.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cosmocore.bench import bench as b  # noqa: E402
from cosmocore.bench.plan import COST_MODEL, design, estimate_s, work  # noqa: E402


def fit(run_dir: Path, wall_s: float | None, only: set[str] | None = None) -> dict:
    cfg = b.load(run_dir)
    t = b.train_config(cfg, cfg.runs()[0], run_dir, None)
    steps = t.nocturnal_steps + t.correction_steps
    sums = dict(day_s=0.0, day=0, night_s=0.0, night=0, eval_s=0.0, eval=0, warm_s=0.0, warm=0)
    for run in cfg.runs():
        if only and Path(run["dir"]).name not in only:
            continue
        summary = json.loads((run_dir / run["dir"] / "summary.json").read_text())
        for r in summary["history"]:
            if r.get("day_cached") is None and "day_s" in r:
                sums["day_s"] += r["day_s"]
                sums["day"] += r["day_attempts"]
            if "night_s" in r:
                sums["night_s"] += r["night_s"]
                sums["night"] += steps
            if r.get("eval_replies"):
                sums["eval_s"] += r["eval_s"]
                sums["eval"] += r["eval_replies"]
            if r.get("sft_steps") and not r.get("warmup_cached"):
                sums["warm_s"] += r["warmup_s"]
                sums["warm"] += r["sft_steps"]
    runs = f", runs {','.join(sorted(only))}" if only else ""
    model = {"model": cfg.model, "source": f"{run_dir.name} ({cfg.profile}, {b.default_jobs(cfg.profile)} jobs{runs})",
             "s_per_sampled_reply": sums["day_s"] / max(sums["day"], 1),
             "s_per_night_step": sums["night_s"] / max(sums["night"], 1),
             "s_per_greedy_reply": sums["eval_s"] / max(sums["eval"], 1),
             "s_per_warmup_step": sums["warm_s"] / max(sums["warm"], 1), "fixed_s": 0.0}
    if wall_s is not None:
        busy = estimate_s(work(cfg, design(cfg)), b.default_jobs(cfg.profile), model)
        model["fixed_s"] = max(wall_s - busy, 0.0)
        model["measured_wall_s"] = wall_s
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in model.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="run_dir", type=Path, required=True, help="a finished bench run directory")
    parser.add_argument("--wall-s", type=float, default=None, help="the bench's measured wall time")
    parser.add_argument("--only", default="", help="fit on these runs only (ARM-sSEED,...): those timed on an idle machine")
    parser.add_argument("--write", action="store_true", help=f"save as {COST_MODEL.relative_to(ROOT)}")
    args = parser.parse_args()
    model = fit(args.run_dir, args.wall_s, set(filter(None, args.only.split(","))) or None)
    if args.write:
        COST_MODEL.write_text(json.dumps(model, indent=2) + "\n")
    print(json.dumps(model))


if __name__ == "__main__":
    main()
