"""The benchmark's verdicts: one row per claim (a metric, an arm against the uniform baseline)
with the paired estimate, its two-way bootstrap interval, the minimum detectable effect of this
run's design, rliable's interquartile means and probability of improvement, and one verdict word.

Verdict rules, in order:

- ``not run``: the arm or the baseline has no finished run (the row stays, so the table always
  shows every claim the product makes); ``no data``: both ran but no pair of seeds has the
  metric (an older store without a practice split, say).
- ``underpowered``: fewer than 3 paired seeds, or the 95% interval's half-width above 0.20
  (for cycles-to-zero-error, 0.20 of the cycle budget), or every run of both arms censored (two
  censorings compared say nothing about speed).
- ``supported``: the interval excludes 0 on the side the claim states (lower error, fewer
  cycles, less recurrence); ``refuted``: it excludes 0 on the other side.
- ``no detectable difference``: otherwise (read it beside ``mde``: differences smaller than it
  were not detectable by this design).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cosmocore.report import splits as S
from cosmocore.report import stats

BASELINE = "uniform"
CLAIM_ARMS = ("cosmocore", "cocos")  # claims made whether or not these arms ran
SUPPORTED, REFUTED, NO_DIFFERENCE, UNDERPOWERED = "supported", "refuted", "no detectable difference", "underpowered"
NOT_RUN, NO_DATA = "not run", "no data"
MIN_SEEDS = 3
MAX_HALF_WIDTH = 0.20
ALL = "all"  # the held-out group key for every task


@dataclass
class RunData:
    """What the claims read from one run's evaluation rows."""

    seed: int
    held_out_split: str | None = None
    held_out: dict[str, dict[Any, tuple[int, int]]] = field(default_factory=dict)  # group -> task -> (errors, n)
    held_out_first: dict[Any, tuple[int, int]] = field(default_factory=dict)  # at the first held-out cycle
    recurrence: dict[Any, tuple[int, int]] = field(default_factory=dict)  # task -> (recurrences, later attempts)
    practice_recurrence: dict[Any, tuple[int, int]] = field(default_factory=dict)  # the same on the practice set
    ctze: dict[str, Any] = field(default_factory=dict)  # splits.practice_cycles_to_zero_error
    practice_curve: dict[int, dict[Any, tuple[int, int]]] = field(default_factory=dict)  # cycle -> task -> (errors, n)


def run_data(seed: int, rows: Sequence[Mapping[str, Any]], budget: int) -> RunData:
    """One run's claim inputs: the held-out split's errors per task at its last scored cycle
    (all, and per practised/unpractised group), recurrence per task on the held-out split, the
    practice set's cycles to zero error and its per-cycle errors per task."""
    held = S.held_out_split(rows)
    held_rows = S.rows_of(rows, held)
    practice = S.rows_of(rows, S.PRACTICE)
    practised = S.practised_classes(rows)
    out = RunData(seed=seed, held_out_split=held, ctze=S.practice_cycles_to_zero_error(practice, budget))
    last = S.last_cycle(held_rows)
    if last is not None:
        out.held_out = {ALL: S.task_errors(held_rows, last)}
        for g in (S.PRACTISED, S.UNPRACTISED):
            out.held_out[g] = S.task_errors(held_rows, last, g, practised)
        first = min(int(r["cycle"]) for r in held_rows if r.get("cycle") is not None and r.get("turn") == 1)
        out.held_out_first = S.task_errors(held_rows, first)
    out.recurrence = S.task_recurrence(held_rows)
    out.practice_recurrence = S.task_recurrence(practice)
    for c in sorted({int(r["cycle"]) for r in practice if r.get("cycle") is not None}):
        out.practice_curve[c] = S.task_errors(practice, c)
    return out


@dataclass(frozen=True)
class ClaimSpec:
    """A claim: ``metric`` of an arm is lower than the baseline's (every claim here is a
    decrease: less error, fewer cycles, less recurrence)."""

    claim: str  # "{split}" names the held-out split scored (test, or dev while tuning)
    metric: str
    group: str | None = None  # held-out group for hallucination rates
    source: str = ""
    split: str | None = None  # None: the run's held-out split


SPECS = (
    ClaimSpec("{split} hallucination rate is lower", "hallucination_rate", ALL,
              "CosmoCore (arXiv 2510.18895): 48% fewer hallucinations"),
    ClaimSpec("{split} hallucination rate is lower on practised bug classes (new mutants)", "hallucination_rate",
              S.PRACTISED),
    ClaimSpec("{split} hallucination rate is lower on bug classes never practised", "hallucination_rate", S.UNPRACTISED),
    ClaimSpec("practice-set cycles to zero error are fewer", "cycles_to_zero_error", None,
              "CosmoCore (arXiv 2510.18895): 45% faster self-correction, 80 -> 44 cycles", S.PRACTICE),
    ClaimSpec("bug recurrence is lower on held-out tasks", "bug_recurrence_rate", None),
    # the practice set is scored every cycle: a fixed bug has many chances to come back there
    ClaimSpec("bug recurrence is lower on the practice set", "bug_recurrence_rate", None, split=S.PRACTICE),
)


# ------------------------------------------------------------------ inputs as matrices
def _cells(run: RunData, spec: ClaimSpec) -> dict[Any, tuple[int, int]]:
    if spec.metric == "hallucination_rate":
        return run.held_out.get(spec.group or ALL, {})
    return run.practice_recurrence if spec.split == S.PRACTICE else run.recurrence


Cells = Mapping[Any, tuple[int, int]]


def cell_matrices(runs: Sequence[RunData], tasks: Sequence[Any],
                  get: Callable[[RunData], Cells]) -> tuple[np.ndarray, np.ndarray]:
    """(num, den) arrays, seeds x tasks, of the per-task cells ``get(run)`` returns."""
    num, den = np.zeros((len(runs), len(tasks))), np.zeros((len(runs), len(tasks)))
    col = {t: j for j, t in enumerate(tasks)}
    for i, run in enumerate(runs):
        for t, (k, n) in get(run).items():
            num[i, col[t]], den[i, col[t]] = k, n
    return num, den


def _rates(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _restricted(run: RunData) -> float | None:
    """Cycles to zero error with a censored run counted at its censoring cycle (min(T, budget))."""
    c = run.ctze
    if not c.get("tasks"):
        return None
    return float(c["cycle"] if c.get("cycle") is not None else c["censored_at"])


# ------------------------------------------------------------------ verdicts
def verdict(n_seeds: int, ci: Sequence[float | None] | None, scale: float = 1.0) -> tuple[str, str]:
    """The verdict word and why, for a lower-is-better claim whose paired difference (arm -
    baseline) has the 95% interval ``ci`` over ``n_seeds`` paired seeds; ``scale`` divides the
    half-width before it is compared with 0.20 (the cycle budget for cycles-to-zero-error)."""
    if n_seeds < MIN_SEEDS:
        return UNDERPOWERED, f"{n_seeds} paired seeds; a verdict needs at least {MIN_SEEDS}"
    if not ci or ci[0] is None or ci[1] is None:
        return UNDERPOWERED, "no interval"
    lo, hi = float(ci[0]), float(ci[1])
    half = (hi - lo) / 2 / scale
    if half > MAX_HALF_WIDTH:
        unit = " of the cycle budget" if scale != 1.0 else ""
        return UNDERPOWERED, f"95% half-width {half:.2f}{unit} > {MAX_HALF_WIDTH:.2f}"
    if hi < 0:
        return SUPPORTED, f"95% interval [{lo:+.3g}, {hi:+.3g}] lies below 0"
    if lo > 0:
        return REFUTED, f"95% interval [{lo:+.3g}, {hi:+.3g}] lies above 0: the arm does worse"
    return NO_DIFFERENCE, f"95% interval [{lo:+.3g}, {hi:+.3g}] includes 0"


def _row(spec: ClaimSpec, arm: str, split: str | None) -> dict[str, Any]:
    metric = spec.metric if spec.group in (None, ALL) else f"{spec.metric}.{spec.group}"
    return {"claim": spec.claim.format(split=split), "metric": metric,
            "split": split, "arm": arm, "baseline": BASELINE, "estimate": None, "ci95": [None, None], "mde": None,
            "verdict": NOT_RUN, "reason": "", "source": spec.source or None, "direction": "lower is better",
            "n_seeds": 0, "n_tasks": None, "half_width": None, "se": None, "df": None, "iqm": {"arm": None, "baseline": None},
            "probability_of_improvement": None, "unit": "cycles" if spec.metric == "cycles_to_zero_error" else "share"}


def claim_row(spec: ClaimSpec, arm: str, arm_runs: Mapping[int, RunData] | None,
              base_runs: Mapping[int, RunData] | None, budget: int, seed: int = 0) -> dict[str, Any]:
    """One claim of ``arm`` against the baseline, paired by seed (and by task). Besides the
    verdict: ``iqm`` holds rliable's interquartile mean of each side's scores (per seed and task
    rates, or per seed cycles) and ``probability_of_improvement`` the chance that a run of the
    arm scores lower than a run of the baseline on a task (rliable's Mann-Whitney form, averaged
    over tasks)."""
    split = spec.split or next(
        (r.held_out_split for r in (*(arm_runs or {}).values(), *(base_runs or {}).values()) if r.held_out_split),
        S.TEST)
    row = _row(spec, arm, split)
    missing = [x for x, runs in ((arm, arm_runs), (BASELINE, base_runs)) if not runs]
    if missing:
        row["reason"] = f"no finished {' or '.join(missing)} run"
        return row
    assert arm_runs is not None and base_runs is not None
    seeds = sorted(set(arm_runs) & set(base_runs))
    a_runs, b_runs = [arm_runs[s] for s in seeds], [base_runs[s] for s in seeds]
    scale = 1.0
    if spec.metric == "cycles_to_zero_error":
        a, b = np.array([_restricted(r) for r in a_runs], float), np.array([_restricted(r) for r in b_runs], float)
        res = stats.paired_seed_interval(a, b, seed=seed)
        row["iqm"] = {"arm": stats.iqm(a), "baseline": stats.iqm(b)}
        row["probability_of_improvement"] = stats.probability_of_improvement(a[:, None], b[:, None])
        scale = float(max(budget, 1))
        bound = None
        all_censored = all(r.ctze.get("cycle") is None for r in (*a_runs, *b_runs))
    else:
        tasks = sorted({t for r in (*a_runs, *b_runs) for t in _cells(r, spec)}, key=str)
        get = lambda r: _cells(r, spec)  # noqa: E731
        (na, da), (nb, db) = cell_matrices(a_runs, tasks, get), cell_matrices(b_runs, tasks, get)
        res = stats.paired_two_way_bootstrap((na, da), (nb, db), seed=seed)
        ra, rb = _rates(na, da), _rates(nb, db)
        row["iqm"] = {"arm": stats.iqm(ra), "baseline": stats.iqm(rb)}
        row["probability_of_improvement"] = stats.probability_of_improvement(ra, rb)
        all_censored = False
        errors, executions = float(na.sum() + nb.sum()), float(da.sum() + db.sum())
        bound = "wrong" if executions and errors == executions else "right" if executions and errors == 0 else None
    row.update(estimate=res["estimate"], ci95=res["ci95"], mde=res["mde"], se=res["se"], df=res["df"],
               n_seeds=res["n_seeds"], n_tasks=res["n_tasks"])
    if res["ci95"][0] is not None:
        row["half_width"] = (res["ci95"][1] - res["ci95"][0]) / 2
    if res["estimate"] is None:
        row["verdict"], row["reason"] = NO_DATA, f"no paired seed has {spec.metric} on the {split} split"
    elif all_censored:
        row["verdict"], row["reason"] = UNDERPOWERED, "every run of both arms is censored (never reached zero error)"
    elif bound:
        edge = {"wrong": "a floor", "right": "a ceiling"}[bound]
        row["verdict"], row["reason"] = UNDERPOWERED, f"every scored sample of both arms was {bound} ({edge}): no difference could show"
    else:
        row["verdict"], row["reason"] = verdict(res["n_seeds"], res["ci95"], scale)
    return row


def claims(runs: Mapping[str, Mapping[int, RunData]], budget: int) -> list[dict[str, Any]]:
    """Every claim for cosmocore and cocos (rows say ``not run`` when an arm is absent) and for
    every other arm present, each against the uniform baseline."""
    arms = list(CLAIM_ARMS) + [a for a in runs if a not in CLAIM_ARMS and a != BASELINE]
    return [claim_row(spec, arm, runs.get(arm), runs.get(BASELINE), budget) for arm in arms for spec in SPECS]


def paired_curve(arm_runs: Mapping[int, RunData], base_runs: Mapping[int, RunData],
                 resamples: int = 1000) -> dict[str, list]:
    """Per practice cycle, the paired difference of the practice-set error rate (arm -
    baseline) with its two-way bootstrap interval: the learning curves' difference band."""
    seeds = sorted(set(arm_runs) & set(base_runs))
    cycles = sorted({c for s in seeds for r in (arm_runs[s], base_runs[s]) for c in r.practice_curve})
    mean: list[float | None] = []
    ci: list[list[float | None]] = []
    for c in cycles:
        get = lambda r, c=c: r.practice_curve.get(c, {})  # noqa: E731
        tasks = sorted({t for s in seeds for r in (arm_runs[s], base_runs[s]) for t in get(r)}, key=str)
        res = stats.paired_two_way_bootstrap(cell_matrices([arm_runs[s] for s in seeds], tasks, get),
                                             cell_matrices([base_runs[s] for s in seeds], tasks, get),
                                             resamples=resamples)
        mean.append(res["estimate"])
        ci.append(res["ci95"])
    return {"cycle": cycles, "mean": mean, "ci95": ci, "baseline": BASELINE, "n_seeds": len(seeds)}


# ------------------------------------------------------------------ per-arm figures
def _pooled_rate(cells: Mapping[Any, tuple[int, int]]) -> float | None:
    n = sum(v[1] for v in cells.values())
    return sum(v[0] for v in cells.values()) / n if n else None


def _summary(per_seed: list[float | None]) -> dict[str, Any]:
    xs = [x for x in per_seed if x is not None]
    return {"per_seed": per_seed, "mean": float(np.mean(xs)) if xs else None, "iqm": stats.iqm(xs) if xs else None}


def arm_figures(runs: Mapping[int, RunData], budget: int) -> dict[str, Any]:
    """The per-arm blocks issue 21 adds: the practice set's cycles to zero error (per seed, and
    the censored runs counted through Kaplan-Meier), the held-out split's final hallucination
    rate (errors / executions, every sample) overall and per group, the practice set's bug
    recurrence (recurrences / later attempts, sample 0) and its error rate per cycle (per seed:
    the learning curves)."""
    seeds = sorted(runs)
    rs = [runs[s] for s in seeds]
    ctze = [r.ctze for r in rs]
    have = [c for c in ctze if c.get("tasks")]
    # a censored run is censored where it stopped; the restricted mean's horizon is the budget
    km = stats.kaplan_meier([c["cycle"] for c in have],
                            [c["censored_at"] if c["cycle"] is None else budget for c in have]) if have else {}
    practice_ctze = {
        "per_seed": [c.get("cycle") if c.get("tasks") else None for c in ctze],
        "censored": sum(c.get("cycle") is None for c in have), "runs": len(have), "budget": budget,
        "km_median": km.get("km_median"), "restricted_mean": km.get("restricted_mean"),
        "censored_at": [c.get("censored_at") for c in ctze], "relapsed": sum(bool(c.get("relapsed")) for c in have),
        "practice_tasks": [c.get("tasks") for c in ctze], "survival": km.get("survival"),
    }
    held = {g: _summary([_pooled_rate(r.held_out.get(g, {})) for r in rs]) for g in (ALL, S.PRACTISED, S.UNPRACTISED)}
    cycles = sorted({c for r in rs for c in r.practice_curve})
    curve = [[_pooled_rate(r.practice_curve[c]) if c in r.practice_curve else None for c in cycles] for r in rs]
    cols = [[x[i] for x in curve if x[i] is not None] for i in range(len(cycles))]
    return {
        "practice_cycles_to_zero_error": practice_ctze,
        "practice_bug_recurrence_rate": _summary([_pooled_rate(r.practice_recurrence) for r in rs]),
        "test_hallucination_rate": {"split": next((r.held_out_split for r in rs if r.held_out_split), None),
                                    **held[ALL], "practised": held[S.PRACTISED], "unpractised": held[S.UNPRACTISED],
                                    "initial": _summary([_pooled_rate(r.held_out_first) for r in rs])},
        "practice_hallucination_rate_per_cycle": {"cycle": cycles, "per_seed": curve,
                                                  "mean": [float(np.mean(c)) if c else None for c in cols]},
    }
