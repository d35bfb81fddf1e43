"""The bug-recurrence benchmark report: from a bench run directory to ``report.json``,
``report.md``, a self-contained ``report.html`` and PNG plots.

Every number is recomputed here from what the runs wrote (each run's ``summary.json`` history and
its own rows of the Delta ``evaluations``/``episodes`` tables) with the functions of
``cosmocore.report.metrics``, so the report never trusts a number it cannot trace to a table. Per-run
metrics come first (one value per seed); across seeds an arm gets a mean and a 95% t interval;
each arm is compared with the ``uniform`` arm by a paired bootstrap of the relative change. A
paper's claim is called reproduced only when that interval says so, never on a point estimate.

The run directory (written by ``cosmocore bench``)::

    bench.json                  settings: profile, model, suite, arms, seeds, cycles, target, store, runs
    runs/ARM-sSEED/summary.json Trainer.summary() + wall_s; absent while the run is unfinished
    store/                      the Delta store (unless bench.json names another URI)
"""
from __future__ import annotations

import datetime as dt
import inspect
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmocore import atomic
from cosmocore.report import metrics as M

SCHEMA_VERSION = 1
BASELINE = "uniform"
NOT_MEASURABLE, REPRODUCED, NOT_REPRODUCED = "not measurable", "reproduced", "not reproduced"
EVAL_COLUMNS = ["run_id", "arm", "seed", "cycle", "split", "task_id", "family", "bug_class", "turn", "outcome",
                "entropy"]
EPISODE_COLUMNS = ["run_id", "arm", "seed", "cycle", "turn", "entropy", "valence", "arousal", "bin"]
# Headline comparisons of every arm against the baseline: report metric -> per-arm value key.
HEADLINE = ("final_hallucination_rate", "cycles_to_zero_error", "bug_recurrence_rate",
            "self_correction.delta_i_to_c", "self_correction.delta_c_to_i", "buffer_occupancy_max")


class ReportError(ValueError):
    """The run directory cannot be reported (no bench.json, unreadable store ...)."""


@dataclass(frozen=True)
class Claim:
    """A published effect, as a relative change of ``metric`` for ``arm`` vs ``baseline``."""

    metric: str
    arm: str
    baseline: str
    source: str
    text: str
    value: float | None  # the claimed relative change; None when only a direction is claimed
    direction: int  # -1: the claim is a decrease, +1: an increase


COSMOCORE = "CosmoCore (arXiv 2510.18895)"
COCOS = "COCOS (arXiv 2505.23060)"
CLAIMS = (
    Claim("final_hallucination_rate", "cosmocore", BASELINE, COSMOCORE, "48% fewer hallucinations", -0.48, -1),
    Claim("cycles_to_zero_error", "cosmocore", BASELINE, COSMOCORE,
          "45% faster self-correction: 80 -> 44 cycles to zero error (44/80 - 1 = -0.45)", -0.45, -1),
    Claim("buffer_occupancy_max", "no_pruning", "cosmocore", COSMOCORE, "+25% buffer bloat without pruning", 0.25, +1),
    Claim("self_correction.delta_i_to_c", "cocos", BASELINE, COCOS,
          "online self-correction RL raises Δi→c (wrong at turn 1, right at turn 2)", None, +1),
    Claim("self_correction.delta_c_to_i", "cocos", BASELINE, COCOS,
          "online self-correction RL lowers Δc→i (right at turn 1, wrong at turn 2)", None, -1),
)

# What each report key means: the docstring of the metric that computes it.
DEFINITIONS: dict[str, Callable[..., Any]] = {
    "hallucination_rate_per_cycle": M.hallucination_rate_per_cycle,
    "hallucination_rate_by_outcome": M.hallucination_rate_by_outcome,
    "hallucination_rate_by_bug_class": M.hallucination_rate_by_bug_class,
    "pass_at_1": M.pass_at_k_per_cycle,
    "pass@k estimator": M.pass_at_k,
    "final_hallucination_rate": M.final_rate,
    "cycles_to_zero_error": M.cycles_to_zero_error,
    "cycles_to_zero_error (across seeds)": M.censored_summary,
    "bug_recurrence_rate": M.bug_recurrence_rate,
    "self_correction": M.self_correction,
    "entropy_mean": M.entropy_mean,
    "sampling_entropy_per_cycle": M.sampling_entropy_per_cycle,
    "confidence_variance": M.confidence_variance,
    "buffer_occupancy_max": M.buffer_occupancy,
    "dream_queue_share": M.dream_queue_share,
    "tagger_valence_auc": M.tagger_valence_auc,
    "mean, ci95": M.mean_ci,
    "relative_change": M.relative_change,
}


# ------------------------------------------------------------------ reading the run directory
@dataclass
class Run:
    """One (arm, seed) of the bench; ``summary`` is None while it is unfinished."""

    arm: str
    seed: int
    run_id: str
    dir: str
    summary: dict | None


def load_bench(run_dir: Path) -> dict:
    path = run_dir / "bench.json"
    try:
        bench = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{str(run_dir)!r} is not a bench run directory (no bench.json)") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"{str(path)!r} is not readable JSON: {exc}") from None
    if bench.get("schema_version") != SCHEMA_VERSION:
        raise ReportError(f"{str(path)!r}: schema_version {bench.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return bench


def load_runs(run_dir: Path, bench: Mapping[str, Any]) -> list[Run]:
    """The bench's runs (from ``runs``, else every arm x seed), each with its summary if finished."""
    entries = bench.get("runs") or [{"arm": a, "seed": s, "run_id": None, "dir": f"runs/{a}-s{s}"}
                                    for s in bench.get("seeds", []) for a in bench.get("arms", [])]
    runs = []
    for e in entries:
        path = run_dir / e["dir"] / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else None
        run_id = (summary or {}).get("run_id") or e.get("run_id") or ""
        runs.append(Run(e["arm"], int(e["seed"]), run_id, e["dir"], summary))
    return runs


def store_uri(run_dir: Path, bench: Mapping[str, Any]) -> str:
    """bench.json's store URI; a relative path is taken from the working directory when it is a
    directory there, else from the run directory (so a moved run directory still reports)."""
    uri = bench.get("store")
    if not uri:
        return str(run_dir / "store")
    if "://" in uri or os.path.isabs(uri) or os.path.isdir(uri):
        return uri
    return str(run_dir / uri)


def read_tables(uri: str, run_ids: Sequence[str]) -> tuple[dict[str, list[dict]], dict[str, list[dict]], dict[str, int]]:
    """Evaluation and episode rows per run id (only the columns the report needs), and the
    Delta table versions they were read at."""
    from cosmocore.memory.store import Store, StoreError

    if not run_ids:  # nothing finished: the store may not even exist yet
        return {}, {}, {}
    try:
        store = Store.open(uri, create=False)
    except StoreError as exc:
        raise ReportError(str(exc)) from None
    where = [("run_id", "in", list(run_ids))]
    rows = store.read_evaluations(filters=where, columns=EVAL_COLUMNS).to_pylist()
    evals = M.split_runs([r for r in rows if r["split"] != "practice"])  # held-out rows (older stores: "eval")
    episodes = M.split_runs(store.read_episodes(filters=where, columns=EPISODE_COLUMNS))
    return evals, episodes, store.versions()


# ------------------------------------------------------------------ per run
# histories hold NaN for undefined values: the metrics' own finite-or-None reading
_num = M.as_finite
_finite = M.finite_values


def history_curve(history: Sequence[Mapping[str, Any]], key: str) -> list[float | None]:
    """A history series indexed by each record's ``cycle`` (None where a cycle has no value)."""
    points = {int(h.get("cycle", i)): _num(h.get(key)) for i, h in enumerate(history)}
    return [points.get(c) for c in range(max(points) + 1)] if points else []


def run_metrics(evals: list[dict], episodes: list[dict], summary: Mapping[str, Any], target: float) -> dict:
    """Every per-run number of the report, from one run's own rows and history."""
    history = summary.get("history") or []
    rates = M.hallucination_rate_per_cycle(evals)
    sc = M.self_correction(evals)
    wall = _num(summary.get("wall_s"))
    if wall is None:  # an older summary without wall_s: the cycles' own timings
        wall = sum(_finite(h.get("wall_s") for h in history)) or None
    # a day read from the arm that sampled it (cycle 1, ``day_cached``) took none of this run's time
    tokens = sum(_finite(h.get("tokens_generated") for h in history if not h.get("day_cached")))
    episodes_n = summary.get("episodes") if summary.get("episodes") is not None else len(episodes)
    return {
        "rates": rates,
        "rates_turn2": M.hallucination_rate_per_cycle(evals, turn=2),
        "pass_at_1": M.pass_at_k_per_cycle(evals, k=1),
        "by_outcome": M.hallucination_rate_by_outcome(evals),
        "by_bug_class": M.hallucination_rate_by_bug_class(evals),
        "final": M.final_rate(rates),
        "initial": _num(rates[0]) if rates else None,
        "ctze": M.cycles_to_zero_error(rates, target),
        "recurrence": M.bug_recurrence_rate(evals),
        "self_correction": sc,
        "entropy_mean": M.entropy_mean(history),
        "sampling_entropy": M.sampling_entropy_per_cycle(episodes),
        "confidence_variance": M.confidence_variance(history),
        "buffer": M.buffer_occupancy(history),
        "buffer_curve": history_curve(history, "buffer_size"),
        "dream_queue_share": M.dream_queue_share(history),
        "tagger_valence_auc": M.tagger_valence_auc(history),
        "wall_s": wall,
        "episodes": episodes_n,
        "episodes_per_s": episodes_n / wall if wall and episodes_n is not None else None,
        "tokens_per_s": tokens / wall if wall and tokens else None,
        "cycles_completed": summary.get("cycles_completed"),
    }


# ------------------------------------------------------------------ across seeds
SHARE, NONNEG = (0.0, 1.0), (0.0, math.inf)  # ranges a metric cannot leave


def _clip(ci: list[Any] | None, bounds: tuple[float, float] | None) -> list[Any] | None:
    """A t interval cut to the metric's range: with two seeds t_{0.975,1} = 12.7 makes a rate's
    interval run past [0, 1], which says nothing more than the range itself does."""
    if not ci or ci[0] is None or bounds is None:
        return ci
    return [max(ci[0], bounds[0]), min(ci[1], bounds[1])]


def _stat(per_seed: list[Any], bounds: tuple[float, float] | None = None) -> dict:
    """per_seed values with their mean and 95% t interval (None when undefined; with one seed
    the interval is None too: one value has no spread to measure)."""
    s = M.mean_ci(per_seed)
    return {"per_seed": per_seed, "mean": s["mean"], "ci95": _clip(s["ci95"], bounds) if s["n"] > 1 else None,
            "n": s["n"]}


def _curves(curves: list[list[Any]], bounds: tuple[float, float] | None = None) -> dict:
    s = M.curve_summary(curves)
    n = [sum(i < len(c) and _num(c[i]) is not None for c in curves) for i in range(len(s["mean"]))]
    return {"mean": s["mean"], "ci95": [_clip(ci, bounds) if k > 1 else None for ci, k in zip(s["ci95"], n)],
            "per_seed": curves}


def _keyed_curves(per_seed: list[list[dict | None]]) -> dict[str, dict]:
    """{key: curve summary} for per-cycle dicts (by outcome, by bug class)."""
    keys = sorted({k for curve in per_seed for d in curve if d for k in d})
    return {k: {key: v for key, v in _curves([[d.get(k) if d else None for d in c] for c in per_seed], SHARE).items()
                if key != "per_seed"} for k in keys}


def arm_summary(seeds: list[int], run_ids: list[str], per_run: list[dict], cycles: int) -> dict:
    """The DESIGN.md per-arm block (plus added keys) from the per-run metrics of one arm."""
    col = lambda f: [f(r) for r in per_run]  # noqa: E731
    ctze = M.censored_summary(col(lambda r: r["ctze"]), budget=cycles)
    ctze["ci95"] = _clip(ctze["ci95"], (0, cycles)) if sum(v is not None for v in ctze["per_seed"]) > 1 else None
    ctze["restricted_ci95"] = _clip(ctze["restricted_ci95"], (0, cycles)) if len(per_run) > 1 else None
    sc = {k: _stat(col(lambda r, k=k: r["self_correction"][k]), SHARE) for k in ("delta_i_to_c", "delta_c_to_i", "accuracy_t1", "accuracy_t2")}
    return {
        "seeds": seeds,
        "run_ids": run_ids,
        "cycles_to_zero_error": ctze,
        "hallucination_rate_per_cycle": _curves(col(lambda r: r["rates"]), SHARE),
        "final_hallucination_rate": _stat(col(lambda r: r["final"]), SHARE),
        "bug_recurrence_rate": {**_stat(col(lambda r: r["recurrence"]["rate"]), SHARE),
                                "strict": _stat(col(lambda r: r["recurrence"]["strict_rate"]), SHARE),
                                "pairs_fixed": col(lambda r: r["recurrence"]["pairs_fixed"]),
                                "attempts": col(lambda r: r["recurrence"]["attempts"])},
        "self_correction": {**sc, "cycle": col(lambda r: r["self_correction"]["cycle"]),
                            "n": col(lambda r: r["self_correction"]["n"])},
        "entropy_mean": _stat(col(lambda r: r["entropy_mean"]), NONNEG),
        "confidence_variance": _stat(col(lambda r: r["confidence_variance"]), NONNEG),
        "buffer_occupancy_max": _stat(col(lambda r: r["buffer"]["max"]), NONNEG),
        "dream_queue_share": _stat(col(lambda r: r["dream_queue_share"]), SHARE),
        "wall_time_s": {**_stat(col(lambda r: r["wall_s"]), NONNEG), "total": sum(_finite(col(lambda r: r["wall_s"])))},
        # added beyond DESIGN.md
        "hallucination_rate_change": _stat(col(lambda r: None if r["final"] is None or r["initial"] is None
                                                 else r["final"] - r["initial"]), (-1.0, 1.0)),
        "hallucination_rate_per_cycle_turn2": _curves(col(lambda r: r["rates_turn2"]), SHARE),
        "hallucination_rate_by_outcome": _keyed_curves(col(lambda r: r["by_outcome"])),
        "hallucination_rate_by_bug_class": _keyed_curves(col(lambda r: r["by_bug_class"])),
        "sampling_entropy_per_cycle": _curves(col(lambda r: r["sampling_entropy"]), NONNEG),
        "buffer_occupancy_per_cycle": _curves(col(lambda r: r["buffer_curve"]), NONNEG),
        "tagger_valence_auc": _stat(col(lambda r: r["tagger_valence_auc"]), SHARE),
        # pass@1 (the standard code-generation metric; with greedy eval, 1 - hallucination rate)
        "pass_at_1": _stat(col(lambda r: M.final_rate(r["pass_at_1"])), SHARE),
        "pass_at_1_per_cycle": _curves(col(lambda r: r["pass_at_1"]), SHARE),
        "throughput": {"episodes_per_s": _stat(col(lambda r: r["episodes_per_s"]), NONNEG),
                       "tokens_per_s": _stat(col(lambda r: r["tokens_per_s"]), NONNEG),
                       "episodes": col(lambda r: r["episodes"])},
    }


def _metric_values(arm: Mapping[str, Any], metric: str) -> dict[int, Any]:
    """{seed: value} of a headline metric; cycles-to-zero-error counts a censored seed as the
    budget (the restricted mean: a lower bound, so a comparison is conservative)."""
    if metric == "cycles_to_zero_error":
        c = arm["cycles_to_zero_error"]
        values = [c["budget"] if v is None else v for v in c["per_seed"]]
    elif metric.startswith("self_correction."):
        values = arm["self_correction"][metric.split(".", 1)[1]]["per_seed"]
    else:
        values = arm[metric]["per_seed"]
    return dict(zip(arm["seeds"], values))


def compare(arms: Mapping[str, Mapping[str, Any]], metric: str, arm: str, baseline: str) -> dict:
    """relative_change of ``metric`` for ``arm`` vs ``baseline``, paired by seed where both
    arms have the same finished seeds, with why it is undefined when it is."""
    a, b = _metric_values(arms[arm], metric), _metric_values(arms[baseline], metric)
    rc = M.relative_change(a, b)
    out = {"metric": metric, "arm": arm, "baseline": baseline, "relative_change": rc["relative_change"],
           "ci95": rc["ci95"] if min(rc["n_arm"], rc["n_baseline"]) > 1 else None, "paired": rc["paired"],
           "n_arm": rc["n_arm"], "n_baseline": rc["n_baseline"],
           "arm_mean": M.mean_ci(list(a.values()))["mean"], "baseline_mean": M.mean_ci(list(b.values()))["mean"], "note": None}
    if metric == "cycles_to_zero_error":
        censored = [arms[x]["cycles_to_zero_error"]["censored"] for x in (arm, baseline)]
        if any(censored):
            out["note"] = (f"censored seeds (arm {censored[0]}, baseline {censored[1]}) count as the budget of "
                           f"{arms[arm]['cycles_to_zero_error']['budget']} cycles")
        if all(arms[x]["cycles_to_zero_error"]["censored"] == len(arms[x]["seeds"]) for x in (arm, baseline)):
            out.update(relative_change=None, ci95=None, note="no seed of either arm reached the target")
    return out


MIN_SEEDS_FOR_CLAIM = 3


def verdict(claim: Claim, cmp: Mapping[str, Any] | None, arms: Sequence[str]) -> tuple[str, str]:
    """Reproduced when the whole 95% interval of the relative change lies on the claimed side of
    zero and reaches the claimed size (or, for a direction-only claim, just the side)."""
    missing = [x for x in (claim.arm, claim.baseline) if x not in arms]
    if missing:
        return NOT_MEASURABLE, f"the bench has no finished {' or '.join(missing)} run"
    assert cmp is not None
    if cmp.get("note") == "no seed of either arm reached the target":
        return NOT_MEASURABLE, "no seed of either arm reached the target within the cycle budget"
    if cmp["relative_change"] is None:
        return NOT_MEASURABLE, "undefined: the baseline mean is 0 or a side has no value"
    if cmp["ci95"] is None or cmp["ci95"][0] is None:
        return NOT_MEASURABLE, "one seed per arm: no confidence interval (run more seeds)"
    n = min(cmp["n_arm"], cmp["n_baseline"])
    if n < MIN_SEEDS_FOR_CLAIM:  # a resampled interval over 2 seeds can collapse to a point
        return NOT_MEASURABLE, f"{n} seeds per arm: a verdict needs at least {MIN_SEEDS_FOR_CLAIM} (run more seeds)"
    lo, hi = sorted(claim.direction * x for x in cmp["ci95"])  # effect size in the claimed direction
    ci = f"95% CI [{cmp['ci95'][0]:+.1%}, {cmp['ci95'][1]:+.1%}]"
    if hi < 0:
        return NOT_REPRODUCED, f"{ci}: the effect goes the opposite way"
    if lo <= 0:
        return NOT_REPRODUCED, f"{ci} includes no change"
    if claim.value is not None and hi < claim.direction * claim.value:
        return NOT_REPRODUCED, f"{ci}: in the claimed direction but smaller than the claimed {claim.value:+.0%}"
    return REPRODUCED, f"{ci} lies on the claimed side" + ("" if claim.value is None else
                                                           f" and reaches the claimed {claim.value:+.0%}")


def comparisons(arms: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """Every arm vs the baseline on the headline metrics, plus each paper claim's own pair (an
    arm that keeps no replay buffer is left out of the buffer comparison)."""
    pairs = [(m, a, BASELINE) for a in arms if a != BASELINE and BASELINE in arms for m in HEADLINE]
    pairs += [(c.metric, c.arm, c.baseline) for c in CLAIMS
              if c.baseline != BASELINE and c.arm in arms and c.baseline in arms]
    no_buffer = {a for a, v in arms.items() if not any(v["buffer_occupancy_max"]["per_seed"])}  # cocos: no replay
    out = []
    for metric, arm, base in pairs:
        if metric == "buffer_occupancy_max" and {arm, base} & no_buffer:
            continue
        cmp = compare(arms, metric, arm, base)
        claim = next((c for c in CLAIMS if (c.metric, c.arm, c.baseline) == (metric, arm, base)), None)
        cmp["paper_claim"] = claim.value if claim else None
        if claim:
            cmp["claim"] = f"{claim.source}: {claim.text}"
            cmp["verdict"], cmp["reason"] = verdict(claim, cmp, list(arms))
        out.append(cmp)
    return out


def claims_table(arms: Mapping[str, Mapping[str, Any]], cmps: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Every published claim with this run's measurement and verdict (claims whose arms did
    not run say so)."""
    rows = []
    for c in CLAIMS:
        cmp = next((x for x in cmps if (x["metric"], x["arm"], x["baseline"]) == (c.metric, c.arm, c.baseline)), None)
        v, why = (cmp["verdict"], cmp["reason"]) if cmp else verdict(c, None, list(arms))
        rows.append({"source": c.source, "claim": c.text, "metric": c.metric, "arm": c.arm, "baseline": c.baseline,
                     "claimed_relative_change": c.value, "direction": "decrease" if c.direction < 0 else "increase",
                     "measured_relative_change": cmp["relative_change"] if cmp else None,
                     "ci95": cmp["ci95"] if cmp else None, "verdict": v, "reason": why})
    return rows


def definitions() -> dict[str, str]:
    """The report's metric definitions, quoted from the docstrings of the functions computing them."""
    return {k: " ".join(inspect.getdoc(f).replace("``", "`").split()) for k, f in DEFINITIONS.items()}


# ------------------------------------------------------------------ the report
def compute(run_dir: Path) -> tuple[dict, dict[str, list[dict]]]:
    """The report dict, and the episode rows per arm (for the valence/arousal plot)."""
    bench = load_bench(run_dir)
    runs = load_runs(run_dir, bench)
    done = [r for r in runs if r.summary is not None]
    evals, episodes, versions = read_tables(store_uri(run_dir, bench), [r.run_id for r in done])
    target, cycles = float(bench.get("target") or 0.0), int(bench["cycles"])
    arms: dict[str, dict] = {}
    arm_episodes: dict[str, list[dict]] = {}
    for arm in bench.get("arms") or sorted({r.arm for r in runs}):
        mine = [r for r in done if r.arm == arm]
        if not mine:
            continue
        per_run = [run_metrics(evals.get(r.run_id, []), episodes.get(r.run_id, []), r.summary or {}, target)
                   for r in mine]
        arms[arm] = arm_summary([r.seed for r in mine], [r.run_id for r in mine], per_run, cycles)
        arm_episodes[arm] = [e for r in mine for e in episodes.get(r.run_id, [])]
    cmps = comparisons(arms)
    report = {
        "schema_version": SCHEMA_VERSION, "profile": bench.get("profile"), "model": bench.get("model"),
        "suite": bench.get("suite"), "seeds": bench.get("seeds", []), "cycles": cycles, "arms": arms,
        "comparisons": cmps,
        # added beyond DESIGN.md
        "bench_id": bench.get("bench_id"), "target": target, "baseline": BASELINE,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "runs_finished": len(done), "runs_total": len(runs),
        "missing_runs": [{"arm": r.arm, "seed": r.seed, "run_id": r.run_id, "dir": r.dir} for r in runs if r.summary is None],
        "runs_without_evaluations": [r.run_id for r in done if not evals.get(r.run_id)],
        "paper_claims": claims_table(arms, cmps),
        "store_versions": versions,
        "statistics": "per arm: mean over seeds with a 95% Student-t interval (null with one seed), cut to the "
                      "metric's range (shares to [0, 1]); comparisons: "
                      "relative change of the means with a 95% percentile bootstrap interval, paired by seed "
                      "(too narrow below ~10 seeds: read it as optimistic)",
        "definitions": definitions(),
    }
    return _clean(report), arm_episodes


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float) or hasattr(x, "item"):
        f = float(x)
        return f if math.isfinite(f) else None
    return str(x)


def build(run_dir: Path) -> dict:
    """Compute the report of ``run_dir`` and write report.json, report.md, report.html and
    plots/*.png there; returns the report dict (what report.json holds)."""
    from cosmocore.report import format as report_format, plots

    run_dir = Path(run_dir)
    report, arm_episodes = compute(run_dir)
    figures = plots.write_all(report, arm_episodes, run_dir / "plots")
    report["plots"] = {k: str(p.relative_to(run_dir)) for k, p in figures.items()}
    atomic.write_text(run_dir / "report.json", json.dumps(report, indent=2, allow_nan=False))
    atomic.write_text(run_dir / "report.md", report_format.markdown(report))
    atomic.write_text(run_dir / "report.html", report_format.html(report, run_dir))
    return report



def headline(report: Mapping[str, Any]) -> str:
    """A few plain lines for the terminal: each arm's final rate and cycles to zero error, and
    each paper claim's verdict."""
    from cosmocore.report.format import fmt, fmt_ci, pct

    lines = [f"bench {report.get('bench_id') or ''} ({report.get('profile')}, {report.get('model')}, "
             f"{report['runs_finished']}/{report['runs_total']} runs, {report['cycles']} cycles)"]
    for name, a in report["arms"].items():
        ctze = a["cycles_to_zero_error"]
        lines.append(f"  {name}: final hallucination rate {pct(a['final_hallucination_rate']['mean'])} "
                     f"{fmt_ci(a['final_hallucination_rate']['ci95'], pct)}; pass@1 "
                     f"{pct((a.get('pass_at_1') or {}).get('mean'))}; cycles to zero error "
                     f"{fmt(ctze['mean'])} ({ctze['censored']}/{len(a['seeds'])} seeds censored)")
    for c in report["paper_claims"]:
        lines.append(f"  claim '{c['claim']}' ({c['arm']} vs {c['baseline']}): {c['verdict']}: {c['reason']}")
    return "\n".join(lines)
