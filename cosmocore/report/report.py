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
from cosmocore.report import claims as CL
from cosmocore.report import metrics as M
from cosmocore.report import splits as SP
from cosmocore.report import stats
from cosmocore.report.comparisons import (  # noqa: F401  (re-exported: the report's public names)
    CLAIMS, NOT_MEASURABLE, NOT_REPRODUCED, REPRODUCED, Claim, claims_table, compare, comparisons, verdict)

SCHEMA_VERSION = 1
BASELINE = "uniform"
EVAL_COLUMNS = ["run_id", "arm", "seed", "cycle", "split", "task_id", "family", "bug_class", "turn", "outcome",
                "entropy", "group", "sample"]  # group, sample: read where the store's schema has them
EPISODE_COLUMNS = ["run_id", "arm", "seed", "cycle", "turn", "entropy", "valence", "arousal", "bin"]


class ReportError(ValueError):
    """The run directory cannot be reported (no bench.json, unreadable store ...)."""


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
    "practice_cycles_to_zero_error": SP.practice_cycles_to_zero_error,
    "km_median, restricted_mean": stats.kaplan_meier,
    "test_hallucination_rate": CL.arm_figures,
    "held-out split": SP.held_out_split,
    "claims: estimate, ci95": stats.paired_two_way_bootstrap,
    "claims: cycles to zero error": stats.paired_seed_interval,
    "claims: mde": stats.mde,
    "claims: iqm": stats.iqm,
    "claims: probability_of_improvement": stats.probability_of_improvement,
    "claims: verdict": CL.verdict,
    "design": SP.design,
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
    from cosmocore.memory.schemas import TABLES

    columns = [c for c in EVAL_COLUMNS if c in TABLES["evaluations"].schema.names]
    evals = M.split_runs(store.read_evaluations(filters=where, columns=columns))
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
    """Every per-run number of the report, from one run's own rows and history. The evaluation
    metrics read the held-out split (``splits.held_out_split``: test, or an older store's eval);
    the ones that follow one reply per task through cycles read its sample 0."""
    history = summary.get("history") or []
    evals = SP.rows_of(evals, SP.held_out_split(evals))
    rates = M.hallucination_rate_per_cycle(evals)
    sc = M.self_correction(SP.first_sample(evals))
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
        "recurrence": M.bug_recurrence_rate(SP.first_sample(evals)),
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
    claim_runs: dict[str, dict[int, CL.RunData]] = {}
    for arm in bench.get("arms") or sorted({r.arm for r in runs}):
        mine = [r for r in done if r.arm == arm]
        if not mine:
            continue
        per_run = [run_metrics(evals.get(r.run_id, []), episodes.get(r.run_id, []), r.summary or {}, target)
                   for r in mine]
        arms[arm] = arm_summary([r.seed for r in mine], [r.run_id for r in mine], per_run, cycles)
        arm_episodes[arm] = [e for r in mine for e in episodes.get(r.run_id, [])]
        claim_runs[arm] = {r.seed: CL.run_data(r.seed, evals.get(r.run_id, []), cycles) for r in mine}
        arms[arm].update(CL.arm_figures(claim_runs[arm], cycles))
    for arm in arms:
        if arm != BASELINE and BASELINE in claim_runs:
            arms[arm]["practice_difference_per_cycle"] = CL.paired_curve(claim_runs[arm], claim_runs[BASELINE])
    cmps = comparisons(arms)
    report = {
        "schema_version": SCHEMA_VERSION, "profile": bench.get("profile"), "model": bench.get("model"),
        "suite": bench.get("suite"), "seeds": bench.get("seeds", []), "cycles": cycles, "arms": arms,
        "comparisons": cmps,
        "design": SP.design(bench, {r.run_id: evals.get(r.run_id, []) for r in done}),
        "claims": CL.claims(claim_runs, cycles),
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
        "claims_statistics": "claims: paired difference arm - uniform (mean over seeds of per-seed pooled rates, "
                             "errors / executions); its variance from a two-way bootstrap over seeds and tasks "
                             "(one draw for both arms), split by moments into seed, task and cell parts, and the "
                             "95% interval estimate +- t x se with Satterthwaite degrees of freedom; cycles to "
                             "zero error: per seed, a censored run at its censoring cycle, paired t interval over "
                             "seeds (the same rule with one random factor); mde = (t_0.975 + t_0.80) x se, 80% "
                             "power at 5% two-sided",
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
                     f"{fmt(ctze['mean'])} ({ctze['censored']}/{len(a['seeds'])} seeds censored); practice set: "
                     f"KM median {fmt((a.get('practice_cycles_to_zero_error') or {}).get('km_median'))} cycles")
    for c in report.get("claims") or []:
        if c["verdict"] == CL.NOT_RUN:
            continue
        source = f" [{c['source']}]" if c.get("source") else ""
        lines.append(f"  {c['arm']} vs {c['baseline']}: {c['claim']} ({c['split']}){source}: {c['verdict']}: "
                     f"{c['reason']}")
    return "\n".join(lines)
