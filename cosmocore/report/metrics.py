"""Benchmark metrics: pure functions over the ``evaluations``/``episodes`` tables and the
trainer's per-cycle history dicts. The report quotes these docstrings, so each states exactly what
it counts.

Conventions. ``cycle`` counts training cycles done: evaluation rows at cycle 0 measure the
policy before any training (after the optional supervised warm start), cycle c >= 1 the policy
after c day + night cycles. So a run of N cycles has N + 1 eval points; a per-cycle list has
index == cycle and ``None`` where a cycle has no rows. Per-run metrics refuse a table that mixes runs
(``split_runs`` first), because pooling seeds would hide the seed-to-seed spread the CIs need.
Missing values (None, NaN, inf) are dropped, never averaged. Results are plain Python floats,
ints and lists (JSON-serialisable); an undefined statistic is ``None``, never NaN.
"""
from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import pyarrow as pa
from scipy import stats as st

from miniworld.checks import OUTCOMES

Rows = Union[pa.Table, Sequence[Mapping[str, Any]]]
Values = Union[Sequence[Any], Mapping[Any, Any]]
CORRECT = "correct"
MISSING = "missing"  # by_outcome key for a row whose outcome is null (counted as not correct)


# ------------------------------------------------------------------ helpers
def _rows(data: Rows | None) -> list[dict]:
    if data is None:
        return []
    return data.to_pylist() if isinstance(data, pa.Table) else [dict(r) for r in data]


def as_finite(x: Any) -> float | None:
    """``x`` as a finite float, else None (None, NaN, inf, non-numbers)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def finite_values(values: Sequence[Any]) -> list[float]:
    return [f for f in map(as_finite, values) if f is not None]


def _mean(values: Sequence[Any]) -> float | None:
    xs = finite_values(values)
    return float(sum(xs) / len(xs)) if xs else None


def split_runs(evaluations: Rows) -> dict[str, list[dict]]:
    """Rows grouped by ``run_id`` (one run = one (arm, seed)); a null run_id becomes ``""``."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in _rows(evaluations):
        out[r.get("run_id") or ""].append(r)
    return dict(out)


def _one_run(evaluations: Rows) -> list[dict]:
    rows = _rows(evaluations)
    runs = {r.get("run_id") for r in rows}
    if len(runs) > 1:
        raise ValueError(f"rows from {len(runs)} runs: split them with split_runs() first")
    return rows


def _by_cycle(rows: list[dict], turn: int) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("turn") == turn and r.get("cycle") is not None:
            out[int(r["cycle"])].append(r)
    return out


def _per_cycle(evaluations: Rows, turn: int, fn: Any) -> list[Any]:
    by = _by_cycle(_one_run(evaluations), turn)
    return [fn(by[c]) if c in by else None for c in range(max(by) + 1)] if by else []


def _fail_share(rows: list[dict]) -> float:
    return sum(r.get("outcome") != CORRECT for r in rows) / len(rows)


# ------------------------------------------------------------------ hallucination rate
def hallucination_rate_per_cycle(evaluations: Rows, turn: int = 1) -> list[float | None]:
    """Per cycle: the share of eval attempts at ``turn`` whose outcome is not ``correct`` (a null
    outcome counts as not correct). Index = cycle; None for a cycle with no such rows."""
    return _per_cycle(evaluations, turn, _fail_share)


def hallucination_rate_by_outcome(evaluations: Rows, turn: int = 1) -> list[dict[str, float] | None]:
    """Per cycle: outcome -> share of eval attempts at ``turn`` with that outcome. Every stable
    outcome name is a key (0.0 when absent), so the shares sum to 1 and the hallucination rate
    is 1 - share['correct']."""
    def shares(rows: list[dict]) -> dict[str, float]:
        out = dict.fromkeys(OUTCOMES, 0.0)
        for r in rows:
            key = r.get("outcome") or MISSING
            out[key] = out.get(key, 0.0) + 1 / len(rows)
        return out

    return _per_cycle(evaluations, turn, shares)


def hallucination_rate_by_bug_class(evaluations: Rows, turn: int = 1) -> list[dict[str, float] | None]:
    """Per cycle: bug class -> hallucination rate over that class's eval attempts at ``turn``."""
    def by_class(rows: list[dict]) -> dict[str, float]:
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            groups[r.get("bug_class") or MISSING].append(r)
        return {k: _fail_share(v) for k, v in sorted(groups.items())}

    return _per_cycle(evaluations, turn, by_class)


def final_rate(rates: Sequence[float | None]) -> float | None:
    """The rate at the last cycle that has one (None when no cycle has)."""
    xs = [as_finite(r) for r in rates]
    return next((x for x in reversed(xs) if x is not None), None)


def cycles_to_zero_error(rates: Sequence[float | None], target: float = 0.0) -> int | None:
    """The number of training cycles until the eval rate first reaches ``target`` or below: the
    first index c of the per-cycle rates (index = cycles trained) with rate <= target, so 0 when
    the policy is already there before training (the paper's "80 -> 44 cycles" is this count).
    None when no cycle reaches it: the run is censored at the budget (len(rates) - 1 cycles)."""
    for i, r in enumerate(rates):
        x = as_finite(r)
        if x is not None and x <= target + 1e-12:  # tolerance for shares like 3/10 vs 0.3
            return i
    return None


# ------------------------------------------------------------------ pass@k
def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator of the Codex paper (Chen et al. 2021) for one problem with
    ``n`` samples of which ``c`` are correct: the chance that at least one of ``k`` samples drawn
    without replacement from the ``n`` is correct, 1 - C(n-c, k) / C(n, k), computed as
    1 - prod_{i<k} (n-c-i) / (n-i) (no huge binomials). pass@1 = c / n."""
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k includes a correct sample
        return 1.0
    miss = 1.0
    for i in range(k):
        miss *= (n - c - i) / (n - i)
    return 1.0 - miss


def _pass_at_k_rows(rows: list[dict], k: int) -> float | None:
    samples: dict[Any, list[bool]] = defaultdict(list)
    for r in rows:
        samples[r.get("task_id")].append(r.get("outcome") == CORRECT)
    values = [pass_at_k(len(v), sum(v), k) for v in samples.values() if len(v) >= k]
    return sum(values) / len(values) if values else None


def pass_at_k_per_cycle(evaluations: Rows, k: int = 1, turn: int = 1) -> list[float | None]:
    """Per cycle: pass@k over the problems (tasks) of the eval attempts at ``turn``, the mean over
    problems of the unbiased estimator with n = that problem's attempts (samples) and c = its
    correct ones; problems with fewer than k samples are left out. With greedy decoding (one
    sample per problem) pass@1 is the share of problems solved, i.e. 1 - hallucination rate.
    Index = cycle; None for a cycle with no such rows."""
    return _per_cycle(evaluations, turn, lambda rows: _pass_at_k_rows(rows, k))


# ------------------------------------------------------------------ recurrence, self-correction
def bug_recurrence_rate(evaluations: Rows) -> dict[str, Any]:
    """Of the (task, bug class) pairs whose turn-1 eval attempt was ``correct`` at some cycle
    (the fix: the first such cycle), the share of that pair's turn-1 attempts at LATER cycles
    that are not correct ("the failure comes back"); pooled over pairs as
    ``recurrences / attempts``. ``strict_rate`` counts only a later outcome that already occurred
    on that pair before its fix (a pair correct at its first attempt has none, so it adds
    attempts but never strict recurrences). ``rate`` is None when nothing was ever fixed or no
    cycle followed a fix."""
    seqs: dict[tuple, list[tuple[int, Any]]] = defaultdict(list)
    for r in _one_run(evaluations):
        if r.get("turn") == 1 and r.get("cycle") is not None:
            seqs[(r.get("task_id"), r.get("bug_class"))].append((int(r["cycle"]), r.get("outcome")))
    fixed = attempts = recur = strict = 0
    for seq in seqs.values():
        seq.sort(key=lambda co: co[0])
        outcomes = [o for _, o in seq]
        if CORRECT not in outcomes:
            continue
        fix = outcomes.index(CORRECT)
        before, later = set(outcomes[:fix]), outcomes[fix + 1:]
        fixed += 1
        attempts += len(later)
        recur += sum(o != CORRECT for o in later)
        strict += sum(o != CORRECT and o in before for o in later)
    return {"rate": recur / attempts if attempts else None, "strict_rate": strict / attempts if attempts else None,
            "recurrences": recur, "strict_recurrences": strict, "attempts": attempts, "pairs_fixed": fixed}


def self_correction(evaluations: Rows, cycle: int | None = None) -> dict[str, Any]:
    """COCOS's self-correction at one cycle (the last by default), over the problems (tasks)
    with both a turn-1 and a turn-2 eval attempt there: delta_i_to_c = share incorrect at turn 1
    and correct at turn 2; delta_c_to_i = share correct at turn 1 and incorrect at turn 2;
    accuracy_t1/t2 = share correct at each turn. So accuracy_t2 - accuracy_t1 =
    delta_i_to_c - delta_c_to_i. All None when no problem has both turns."""
    rows = _one_run(evaluations)
    cycles = [int(r["cycle"]) for r in rows if r.get("cycle") is not None]
    cycle = max(cycles) if cycle is None and cycles else cycle
    turns: dict[int, dict[Any, bool]] = {1: {}, 2: {}}
    for r in rows:
        if r.get("cycle") == cycle and r.get("turn") in turns:
            turns[r["turn"]][r.get("task_id")] = r.get("outcome") == CORRECT
    probs = sorted(turns[1].keys() & turns[2].keys(), key=str)
    n = len(probs)
    if not n:
        return {"delta_i_to_c": None, "delta_c_to_i": None, "accuracy_t1": None, "accuracy_t2": None,
                "n": 0, "cycle": cycle}
    t1, t2 = [turns[1][p] for p in probs], [turns[2][p] for p in probs]
    return {"delta_i_to_c": sum(not a and b for a, b in zip(t1, t2)) / n,
            "delta_c_to_i": sum(a and not b for a, b in zip(t1, t2)) / n,
            "accuracy_t1": sum(t1) / n, "accuracy_t2": sum(t2) / n, "n": n, "cycle": cycle}


# ------------------------------------------------------------------ across seeds
def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom (scipy.stats.t)."""
    return float(st.t.ppf(p, df))


def _bootstrap_distribution(data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], paired: bool,
                            seed: int, resamples: int) -> np.ndarray:
    """The finite values of scipy's bootstrap distribution of ``statistic`` (a resample where it
    is undefined, such as a ratio over a zero baseline mean, is dropped: scipy warns on those)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.DegenerateDataWarning)
        res = st.bootstrap(data, statistic, paired=paired, vectorized=True, n_resamples=resamples,
                           method="percentile", random_state=np.random.default_rng(seed))
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    return dist[np.isfinite(dist)]


def mean_ci(values: Sequence[Any], level: float = 0.95, method: str = "t", seed: int = 0,
            resamples: int = 4000) -> dict[str, Any]:
    """Mean of the finite ``values`` and a two-sided ``level`` interval (key ``ci95`` whatever
    the level, as the report names it). ``t``: mean +- t_{(1+level)/2, n-1} * sd / sqrt(n), the
    honest choice for the few seeds a benchmark has. ``bootstrap``: percentile interval of
    ``resamples`` seeded resample means (too narrow for n below ~10). n=1 gives [mean, mean];
    no values give None."""
    if method not in ("t", "bootstrap"):
        raise ValueError(f"method must be 't' or 'bootstrap', not {method!r}")
    x = np.array(finite_values(values), dtype=float)
    n = len(x)
    if n == 0:
        return {"mean": None, "ci95": [None, None], "n": 0}
    m = float(x.mean())
    if n == 1:
        return {"mean": m, "ci95": [m, m], "n": 1}
    if method == "t":
        half = t_quantile((1 + level) / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
        lo, hi = m - half, m + half
    else:
        means = _bootstrap_distribution((x,), np.mean, False, seed, resamples)
        lo, hi = (float(v) for v in np.percentile(means, [50 * (1 - level), 50 * (1 + level)]))
    return {"mean": m, "ci95": [float(lo), float(hi)], "n": n}


def curve_summary(per_seed_curves: Sequence[Sequence[float | None]], **ci: Any) -> dict[str, list]:
    """Per cycle index, ``mean_ci`` across seeds of the per-seed curves (a seed whose curve is
    shorter or None at that cycle is left out there): the report's CI bands."""
    length = max((len(c) for c in per_seed_curves), default=0)
    cols = [mean_ci([c[i] for c in per_seed_curves if i < len(c)], **ci) for i in range(length)]
    return {"mean": [c["mean"] for c in cols], "ci95": [c["ci95"] for c in cols]}


def censored_summary(per_seed: Sequence[int | None], budget: int, **ci: Any) -> dict[str, Any]:
    """Cycles-to-zero-error across seeds. ``mean``/``ci95`` are over the seeds that reached the
    target only (a conditional mean: optimistic when some are censored), so ``censored`` (seeds
    that never reached it within ``budget`` cycles) must be read beside them. ``restricted_mean``
    /``restricted_ci95`` count a censored seed as ``budget`` (the mean of min(T, budget)): every
    seed used, still a lower bound on the true mean when any is censored."""
    clean = [None if as_finite(v) is None else int(v) for v in per_seed]
    reached = mean_ci([v for v in clean if v is not None], **ci)
    restricted = mean_ci([budget if v is None else v for v in clean], **ci)
    return {"per_seed": clean, "mean": reached["mean"], "ci95": reached["ci95"],
            "censored": sum(v is None for v in clean), "budget": int(budget),
            "restricted_mean": restricted["mean"], "restricted_ci95": restricted["ci95"]}


def _aligned(arm: Values, base: Values) -> tuple[list, list, bool]:
    """Both sides as lists, and whether they pair up seed by seed."""
    if isinstance(arm, Mapping) and isinstance(base, Mapping) and set(arm) == set(base):
        keys = sorted(arm, key=str)
        return [arm[k] for k in keys], [base[k] for k in keys], True
    a = list(arm.values()) if isinstance(arm, Mapping) else list(arm)
    b = list(base.values()) if isinstance(base, Mapping) else list(base)
    return a, b, not isinstance(arm, Mapping) and not isinstance(base, Mapping) and len(a) == len(b)


def relative_change(arm_values: Values, baseline_values: Values, seed: int = 0, level: float = 0.95,
                    resamples: int = 4000) -> dict[str, Any]:
    """(mean(arm) - mean(baseline)) / mean(baseline) over finite per-seed values (-0.48 = 48%
    fewer), with a percentile bootstrap interval. Paired (the same resampled seeds on both
    sides) when the two are mappings with the same seed keys, or sequences of equal length
    aligned by position (as the report's per_seed lists are); a seed missing on either side
    then drops out of both. Otherwise unpaired (independent resamples). None when a side is
    empty or the baseline mean is 0."""
    a_raw, b_raw, paired = _aligned(arm_values, baseline_values)
    if paired:
        pairs = [(as_finite(a), as_finite(b)) for a, b in zip(a_raw, b_raw)]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        a, b = np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)
    else:
        a, b = np.array(finite_values(a_raw), float), np.array(finite_values(b_raw), float)
    out = {"relative_change": None, "ci95": [None, None], "paired": paired, "n_arm": len(a), "n_baseline": len(b)}
    if not len(a) or not len(b) or b.mean() == 0:
        return out
    rc = float((a.mean() - b.mean()) / b.mean())
    out["relative_change"] = rc

    def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        mx, my = np.mean(x, axis=axis), np.mean(y, axis=axis)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(my != 0, (mx - my) / np.where(my != 0, my, 1.0), np.nan)

    if paired and len(a) > 1:
        rel = _bootstrap_distribution((a, b), ratio, True, seed, resamples)
    elif not paired and len(a) > 1 and len(b) > 1:
        rel = _bootstrap_distribution((a, b), ratio, False, seed, resamples)
    elif not paired and len(a) > 1:  # the baseline is a single value: resample the arm alone
        rel = _bootstrap_distribution((a,), lambda x, axis=-1: ratio(x, b, axis), False, seed, resamples)
    elif not paired and len(b) > 1:  # the arm is a single value
        rel = _bootstrap_distribution((b,), lambda y, axis=-1: ratio(a, y, axis), False, seed, resamples)
    else:  # one value per side: nothing to resample
        rel = np.array([rc])
    if len(rel):
        out["ci95"] = [float(v) for v in np.percentile(rel, [50 * (1 - level), 50 * (1 + level)])]
    return out


# ------------------------------------------------------------------ trainer history
def _series(history: Sequence[Mapping[str, Any]], key: str) -> list[float | None]:
    return [as_finite(h.get(key)) for h in history or ()]


def buffer_occupancy(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Replay-buffer entries after each night (``buffer_size``, after pruning) and Dream Queue
    entries (``dream_queue``): one entry per history record (None for a record without a
    night, such as the cycle-0 evaluation), max and final. Bloat without pruning is the ratio of
    the no_pruning arm's max to the cosmocore arm's."""
    size, dream = _series(history, "buffer_size"), _series(history, "dream_queue")
    as_int = lambda xs: [None if x is None else int(x) for x in xs]  # noqa: E731
    fin = lambda xs: [x for x in as_int(xs) if x is not None]  # noqa: E731
    return {"per_cycle": as_int(size), "max": max(fin(size), default=None), "final": final_rate(as_int(size)),
            "dream_queue_per_cycle": as_int(dream), "dream_queue_max": max(fin(dream), default=None)}


def dream_queue_share(history: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean over cycles of the share of nocturnal minibatch samples drawn from the Dream Queue
    (``dream_share``; CosmoCore aims at 0.8, less while the queue is short)."""
    return _mean(_series(history, "dream_share"))


def entropy_mean(history: Sequence[Mapping[str, Any]], key: str = "entropy") -> float | None:
    """Mean over cycles of the per-cycle mean token entropy (nats) recorded under ``key``."""
    return _mean(_series(history, key))


def sampling_entropy_per_cycle(episodes: Rows, turn: int = 1) -> list[float | None]:
    """Per cycle: mean over the day phase's sampled attempts at ``turn`` of their mean token
    entropy (nats), from the ``episodes`` table: the exploration entropy of sampling."""
    return _per_cycle(episodes, turn, lambda rows: _mean([r.get("entropy") for r in rows]))


def confidence_variance(history: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean over cycles of the variance of the sampled tokens' probabilities exp(logprob) in
    the day phase (``confidence_variance``; it tunes pruning strength)."""
    return _mean(_series(history, "confidence_variance"))


def tagger_valence_auc(history: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean over cycles of the tagger's valence ROC AUC against correct/incorrect (the trainer
    records NaN before the tagger is fitted or when a cycle has one class; those are skipped)."""
    return _mean(_series(history, "tagger_valence_auc"))
