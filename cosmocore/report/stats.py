"""Statistics for a paired benchmark with few seeds: the two-way (seeds x tasks) bootstrap of a
paired difference, its minimum detectable effect, the interquartile mean and probability of
improvement of rliable (Agarwal et al. 2021), and Kaplan-Meier summaries of censored
cycles-to-zero-error.

Why a hand-built resampling index here: ``scipy.stats.bootstrap`` resamples one axis of
observations (optionally paired); a benchmark whose arms share seeds *and* tasks has two crossed
random factors, and an interval that resamples only seeds treats the task sample as fixed
(too narrow for generalisation claims). So the indices of both factors are drawn with numpy
(``paired_two_way_bootstrap`` says how the interval is formed from them); everything with a
library implementation (t and normal quantiles, the one-sample t interval, the trimmed mean,
Mann-Whitney U, Kaplan-Meier) comes from scipy. ``rliable`` itself is not used: its stratified
bootstrap resamples runs within fixed tasks (the tasks are strata, not a sample), and its
setup.py pins ``arch == 5.3.0`` and brings ``seaborn`` and ``absl-py`` for formulas that scipy
already has.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as st

LEVEL = 0.95
POWER = 0.80
RESAMPLES = 2000


def mde(se: float | None, level: float = LEVEL, power: float = POWER, df: float = math.inf) -> float | None:
    """Minimum detectable effect of a two-sided test at ``level`` with ``power``, for an
    estimate whose standard error is ``se``: (q_{1-alpha/2} + q_{power}) * se with Student-t
    quantiles of ``df`` degrees of freedom (normal ones by default: 2.80 se at 95%/80%). A true
    difference smaller than this is more likely missed than found by this design."""
    if se is None or not math.isfinite(se):
        return None
    dist = st.norm if math.isinf(df) else st.t(df)
    return float((dist.ppf((1 + level) / 2) + dist.ppf(power)) * se)


def _pooled(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Per seed (second-to-last axis) the pooled rate sum(num) / sum(den) over tasks (last
    axis); NaN for a seed with no scored task."""
    n, d = num.sum(axis=-1), den.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, n / np.where(d > 0, d, 1), np.nan)


def _mean_paired(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Mean over seeds (last axis) of ra - rb, leaving out a seed undefined on either side."""
    diff = ra - rb
    ok = np.isfinite(diff)
    k = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, np.where(ok, diff, 0.0).sum(axis=-1) / np.where(k > 0, k, 1), np.nan)


def paired_two_way_bootstrap(arm: tuple[np.ndarray, np.ndarray], baseline: tuple[np.ndarray, np.ndarray],
                             level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Estimate and 95% interval of the paired difference of a pooled rate between two arms.

    Each side is ``(num, den)``, two seeds x tasks arrays in the same task order (0/0 where a
    task was not scored): a seed's rate is sum(num) / sum(den) over its tasks (errors /
    executions, recurrences / later attempts), and the estimate is the mean over seeds of
    arm - baseline. Seeds and tasks are two crossed random factors (every seed scores the same
    tasks, on both arms). Every resample uses one draw for both arms (pairing), and four
    resampling schemes measure the variance: seeds only (``v_seeds``), tasks only, shared by all
    seeds (``v_tasks``), tasks drawn anew within each seed (``v_nested``), and seeds and tasks
    together (the "pigeonhole" bootstrap, whose percentile interval is ``ci95_pigeonhole``).
    The pigeonhole bootstrap counts the seed x task noise once per factor, so with binary
    outcomes (noise-dominated) it is too wide; the three one-factor variances solve for the
    seed, task and cell components by moments, whose sum is ``se``^2, and ``ci95`` is
    estimate +- t * se with Satterthwaite's degrees of freedom (``df``: near seeds - 1 when the
    seed component dominates, large when the cell noise does). Simulated coverage is in
    tests/cosmocore/report/test_stats.py. ``mde`` comes from ``se`` and ``df``."""
    na, da = (np.asarray(x, dtype=float) for x in arm)
    nb, db = (np.asarray(x, dtype=float) for x in baseline)
    if not na.shape == da.shape == nb.shape == db.shape or na.ndim != 2:
        raise ValueError(f"arm and baseline need equal 2-D (seeds x tasks) shapes, got {na.shape}, {nb.shape}")
    n_seeds, n_tasks = na.shape
    out: dict[str, Any] = {"estimate": None, "ci95": [None, None], "se": None, "mde": None, "df": None,
                           "n_seeds": 0, "n_tasks": int(n_tasks), "resamples": resamples,
                           "ci95_pigeonhole": [None, None], "components": None}
    per_seed = _pooled(na, da) - _pooled(nb, db)
    out["n_seeds"] = int(np.isfinite(per_seed).sum())
    if not out["n_seeds"]:
        return out
    out["estimate"] = est = float(np.nanmean(per_seed))
    if out["n_seeds"] < 2:
        return out

    def resampled(si: np.ndarray, ti: np.ndarray) -> np.ndarray:
        e = _mean_paired(_pooled(na[si, ti], da[si, ti]), _pooled(nb[si, ti], db[si, ti]))
        return e[np.isfinite(e)]  # a draw holding only tasks its seeds lack has no value

    rng = np.random.default_rng(seed)
    every_seed = np.broadcast_to(np.arange(n_seeds)[None, :, None], (resamples, n_seeds, 1))
    every_task = np.broadcast_to(np.arange(n_tasks)[None, None, :], (resamples, 1, n_tasks))
    si = rng.integers(0, n_seeds, size=(resamples, n_seeds))[:, :, None]
    ti = rng.integers(0, n_tasks, size=(resamples, n_tasks))[:, None, :]
    both = resampled(si, ti)
    if len(both) < 2:
        return out
    out["ci95_pigeonhole"] = [float(v) for v in np.percentile(both, [50 * (1 - level), 50 * (1 + level)])]
    v_seeds = float(np.var(resampled(si, every_task), ddof=1))
    v_tasks = float(np.var(resampled(every_seed, ti), ddof=1))
    v_nested = float(np.var(resampled(every_seed, rng.integers(0, n_tasks, size=(resamples, n_seeds, n_tasks))),
                            ddof=1))
    r, c = n_seeds, n_tasks
    if c > 1:  # v_tasks = task + cell, v_nested = task / r + cell, v_seeds = seed + cell
        task = max((v_tasks - v_nested) * r / (r - 1), 0.0)
        cell = max(v_tasks - task, 0.0)
    else:  # one task: nothing to resample but seeds
        task, cell = 0.0, 0.0
    seed_part = max(v_seeds - cell, 0.0)
    var = seed_part + task + cell
    out["components"] = {"seeds": seed_part, "tasks": task, "cells": cell,
                         "v_seeds": v_seeds, "v_tasks": v_tasks, "v_nested": v_nested}
    if var <= 1e-18:  # float noise of identical resamples: no spread at all
        out.update(ci95=[est, est], se=0.0, mde=0.0)
        return out
    denom = seed_part**2 / (r - 1) + (task**2 / (c - 1) + cell**2 / ((r - 1) * (c - 1)) if c > 1 else 0.0)
    df = var**2 / denom if denom > 0 else math.inf
    se = math.sqrt(var)
    q = float(st.t.ppf((1 + level) / 2, df))
    out.update(ci95=[est - q * se, est + q * se], se=se, df=df, mde=mde(se, level, df=df))
    return out


def paired_seed_interval(arm: Sequence[float | None], baseline: Sequence[float | None], level: float = LEVEL,
                         resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """The same summary for a per-seed metric (one number per run, such as cycles to zero
    error), paired by position: the mean of arm - baseline over seeds with both, and
    estimate +- t_{n-1} * sd / sqrt(n) (scipy's one-sample t interval): the two-way interval's
    rule when the seed is the only random factor. ``ci95_bootstrap`` is scipy's percentile
    bootstrap over seeds, for reference only: with 3 / 5 / 8 seeds of normal data it covered
    the true difference 76% / 86% / 90% of the time (a simulation while writing this), which is
    why it does not decide."""
    a = np.array([np.nan if v is None else v for v in arm], dtype=float)
    b = np.array([np.nan if v is None else v for v in baseline], dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    out: dict[str, Any] = {"estimate": None, "ci95": [None, None], "se": None, "mde": None, "df": None,
                           "n_seeds": int(len(d)), "n_tasks": None, "ci95_bootstrap": [None, None]}
    if not len(d):
        return out
    out["estimate"] = est = float(d.mean())
    if len(d) < 2:
        return out
    if np.all(d == d[0]):  # no spread: a point interval
        out.update(ci95=[est, est], ci95_bootstrap=[est, est], se=0.0, mde=0.0, df=len(d) - 1)
        return out
    ci = st.ttest_1samp(d, 0.0).confidence_interval(confidence_level=level)
    se = float(st.sem(d))
    out.update(ci95=[float(ci.low), float(ci.high)], se=se, df=len(d) - 1, mde=mde(se, level, df=len(d) - 1))
    boot = st.bootstrap((d,), np.mean, confidence_level=level, n_resamples=resamples, method="percentile",
                        random_state=np.random.default_rng(seed))
    out["ci95_bootstrap"] = [float(boot.confidence_interval.low), float(boot.confidence_interval.high)]
    return out


def iqm(values: Any) -> float | None:
    """Interquartile mean (rliable's aggregate): the mean of the middle 50% of the finite
    values (``scipy.stats.trim_mean`` cutting 25% at each end); robust to an outlier seed yet
    less noisy than the median."""
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    return float(st.trim_mean(x, 0.25)) if len(x) else None


def probability_of_improvement(arm: np.ndarray, baseline: np.ndarray, lower_is_better: bool = True) -> float | None:
    """rliable's P(arm > baseline): for each task (column), the Mann-Whitney U statistic of the
    arm's per-seed scores against the baseline's divided by n*m (the chance that a random run of
    the arm beats a random run of the baseline, ties counting one half), averaged over tasks.
    "Beats" means a lower score when ``lower_is_better`` (error rates, cycles)."""
    a, b = np.atleast_2d(np.asarray(arm, float)), np.atleast_2d(np.asarray(baseline, float))
    if lower_is_better:
        a, b = -a, -b
    per_task = []
    for j in range(min(a.shape[1], b.shape[1])):
        x, y = a[:, j][np.isfinite(a[:, j])], b[:, j][np.isfinite(b[:, j])]
        if len(x) and len(y):
            u = st.mannwhitneyu(x, y, alternative="two-sided").statistic  # U of x: #(x > y) + ties/2
            per_task.append(u / (len(x) * len(y)))
    return float(np.mean(per_task)) if per_task else None


# ------------------------------------------------------------------ censored times
def kaplan_meier(times: Sequence[int | None], budgets: Sequence[int] | int) -> dict[str, Any]:
    """Kaplan-Meier summary of cycles-to-zero-error with right censoring: ``times[i]`` is run
    i's cycle count, or None when it never reached zero within ``budgets[i]`` cycles (censored
    there). ``scipy.stats.ecdf`` on ``CensoredData`` gives the survival curve S(t) = P(T > t).
    ``km_median``: the smallest t with S(t) <= 0.5 (None when the curve never falls that low:
    more than half the runs censored). ``restricted_mean``: the area under S(t) from 0 to the
    largest budget (the mean of min(T, budget); equal to the plain mean of
    ``budget if censored else T`` when every censoring is at that budget)."""
    n = len(times)
    budget_list = [int(budgets)] * n if isinstance(budgets, (int, np.integer)) else [int(b) for b in budgets]
    out: dict[str, Any] = {"km_median": None, "restricted_mean": None, "horizon": max(budget_list, default=None),
                           "survival": None}
    if not n:
        return out
    obs = np.array([budget_list[i] if t is None else t for i, t in enumerate(times)], float)
    cens = np.array([t is None for t in times])
    res = st.ecdf(st.CensoredData.right_censored(obs, cens))
    q, s = np.asarray(res.sf.quantiles, float), np.asarray(res.sf.probabilities, float)
    below = np.nonzero(s <= 0.5 + 1e-12)[0]
    out["km_median"] = float(q[below[0]]) if len(below) else None
    tau = float(max(budget_list))
    edges = np.concatenate([[0.0], q[q < tau], [tau]])
    levels = np.concatenate([[1.0], s[q < tau]])  # S on [edges[i], edges[i+1])
    out["restricted_mean"] = float(np.sum(np.diff(edges) * levels))
    out["survival"] = {"t": [float(v) for v in q], "s": [float(v) for v in s]}
    return out
