"""The report's statistics on inputs whose answer is known: simulated paired benchmarks with a
known true difference (interval coverage), a balanced crossed design against the two-way ANOVA
closed form, and Kaplan-Meier curves small enough to work out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from cosmocore.report import stats as S


def _binary_bench(rng: np.random.Generator, seeds: int, tasks: int, effect: float) -> tuple[tuple, tuple]:
    """Paired binary outcomes: task difficulty shared by both arms and all seeds, the arm's
    error probability ``effect`` lower on every task (away from 0 and 1, so no clipping)."""
    p_base = rng.uniform(0.3, 0.8, size=(1, tasks))
    one = np.ones((seeds, tasks))
    arm = (rng.random((seeds, tasks)) < p_base + effect).astype(float)
    base = (rng.random((seeds, tasks)) < p_base).astype(float)
    return (arm, one), (base, one)


def test_two_way_bootstrap_covers_a_known_difference_about_95_percent() -> None:
    rng = np.random.default_rng(7)
    reps, hits, pigeon_wider = 150, 0, 0
    for i in range(reps):
        arm, base = _binary_bench(rng, seeds=4, tasks=30, effect=-0.15)
        got = S.paired_two_way_bootstrap(arm, base, resamples=400, seed=i)
        lo, hi = got["ci95"]
        hits += lo <= -0.15 <= hi
        p_lo, p_hi = got["ci95_pigeonhole"]
        pigeon_wider += (p_hi - p_lo) > (hi - lo)
    coverage = hits / reps
    assert 0.90 <= coverage <= 0.99, coverage
    # why ci95 is not the plain seeds-and-tasks percentile interval: it counts the cell noise twice
    assert pigeon_wider / reps > 0.8


def test_two_way_bootstrap_variance_matches_the_anova_closed_form() -> None:
    """Balanced crossed seeds x tasks with no missing cell: Var(mean) is estimated without any
    resampling by (MS_seeds + MS_tasks - MS_error) / (R C) (two-way random effects ANOVA)."""
    rng = np.random.default_rng(3)
    r, c = 6, 40
    d = 0.2 + rng.normal(0, 0.15, (r, 1)) + rng.normal(0, 0.1, (1, c)) + rng.normal(0, 0.3, (r, c))
    one = np.ones((r, c))
    got = S.paired_two_way_bootstrap((d, one), (np.zeros((r, c)), one), resamples=4000, seed=1)
    grand, rows, cols = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_r = c * np.sum((rows - grand) ** 2) / (r - 1)
    ms_c = r * np.sum((cols - grand) ** 2) / (c - 1)
    ms_e = np.sum((d - rows[:, None] - cols[None, :] + grand) ** 2) / ((r - 1) * (c - 1))
    closed = math.sqrt((ms_r + ms_c - ms_e) / (r * c))
    assert got["estimate"] == pytest.approx(grand)
    assert got["se"] == pytest.approx(closed, rel=0.2)
    assert got["ci95"][0] < grand < got["ci95"][1]
    assert got["mde"] == pytest.approx(got["se"] * (st.t.ppf(0.975, got["df"]) + st.t.ppf(0.8, got["df"])))


def test_two_way_bootstrap_pools_rates_and_pairs_by_seed() -> None:
    # seed 0: arm 1/4 errors, baseline 3/4; seed 1: arm 2/4, baseline 2/4 -> mean difference -0.25
    arm = (np.array([[0, 1, 0, 0], [1, 0, 1, 0]], float), np.ones((2, 4)))
    base = (np.array([[1, 1, 1, 0], [0, 1, 0, 1]], float), np.ones((2, 4)))
    got = S.paired_two_way_bootstrap(arm, base, resamples=500)
    assert got["estimate"] == pytest.approx(-0.25) and got["n_seeds"] == 2 and got["n_tasks"] == 4
    # k samples per task: rates are errors / executions; a task not scored (0/0) drops out
    arm = (np.array([[3, 0, 0]], float), np.array([[4, 4, 0]], float))
    base = (np.array([[4, 2, 1]], float), np.array([[4, 4, 4]], float))
    one_seed = S.paired_two_way_bootstrap(arm, base)
    assert one_seed["estimate"] == pytest.approx(3 / 8 - 7 / 12) and one_seed["ci95"] == [None, None]
    # the same difference on every cell: no spread, a point interval
    same = np.full((3, 5), 0.5)
    point = S.paired_two_way_bootstrap((same - 0.1, np.ones((3, 5))), (same, np.ones((3, 5))))
    assert point["ci95"] == pytest.approx([-0.1, -0.1]) and point["se"] == 0.0
    empty = S.paired_two_way_bootstrap((np.zeros((2, 0)),) * 2, (np.zeros((2, 0)),) * 2)
    assert empty["estimate"] is None and empty["n_seeds"] == 0
    with pytest.raises(ValueError, match="2-D"):
        S.paired_two_way_bootstrap((np.zeros(3),) * 2, (np.zeros(3),) * 2)


def test_seed_interval_is_the_paired_t_interval_and_covers_95_percent() -> None:
    arm, base = [10.0, 12.0, 9.0, 15.0, 11.0], [14.0, 13.0, 15.0, 16.0, 12.0]
    got = S.paired_seed_interval(arm, base)
    d = np.subtract(arm, base)
    half = st.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert got["estimate"] == pytest.approx(d.mean()) and got["ci95"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert got["df"] == 4 and got["ci95_bootstrap"][0] >= d.min()
    assert S.paired_seed_interval([1, 2, None], [2, 3, 4])["n_seeds"] == 2  # a missing seed drops out of both
    assert S.paired_seed_interval([3, 3, 3], [5, 5, 5])["ci95"] == [-2.0, -2.0]
    assert S.paired_seed_interval([3], [5])["ci95"] == [None, None]
    rng = np.random.default_rng(11)  # three seeds, a known difference of -1
    hits = 0
    for i in range(300):
        res = S.paired_seed_interval(rng.normal(-1, 2, 3), np.zeros(3), resamples=200, seed=i)
        hits += res["ci95"][0] <= -1 <= res["ci95"][1]
    assert 0.91 <= hits / 300 <= 0.99


def test_kaplan_meier_by_hand() -> None:
    # 5 runs, budget 5: reached zero at 0, 2, 3; two censored. S(t) = 0.8 on [0,2), 0.6 on [2,3), 0.4 after.
    km = S.kaplan_meier([0, 2, 3, None, None], 5)
    assert km["km_median"] == 3.0
    assert km["survival"] == {"t": [0.0, 2.0, 3.0, 5.0], "s": pytest.approx([0.8, 0.6, 0.4, 0.4])}
    # all censoring at the budget: the restricted mean is the mean of min(T, budget)
    assert km["restricted_mean"] == pytest.approx((0 + 2 + 3 + 5 + 5) / 5)
    # a run censored early (stopped at cycle 2): KM redistributes it, a plain mean cannot.
    # S: 3/4 after t=1; at t=3 two at risk -> 3/8; at t=4 one at risk -> 0.
    km = S.kaplan_meier([1, None, 3, 4], [6, 2, 6, 6])
    assert km["km_median"] == 3.0
    assert km["restricted_mean"] == pytest.approx(1 * 1 + 2 * 0.75 + 1 * 0.375 + 2 * 0.0)
    none = S.kaplan_meier([None, None, 4], 6)  # S never reaches 0.5: no median, yet a restricted mean
    assert none["km_median"] is None and none["restricted_mean"] == pytest.approx(4 + 2 * 2 / 3)
    assert S.kaplan_meier([], 5)["restricted_mean"] is None


def test_iqm_probability_of_improvement_and_mde() -> None:
    assert S.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # mean of the middle half
    assert S.iqm([0.1, 0.2, 0.3, 0.4, 100.0, float("nan")]) == pytest.approx(st.trim_mean([0.1, 0.2, 0.3, 0.4, 100], 0.25))
    assert S.iqm([]) is None
    # one task: arm errors {0, 0, 1} vs baseline {1, 1, 1}: 6 of 9 pairs lower, 3 ties -> (6 + 1.5) / 9
    arm, base = np.array([[0.0], [0.0], [1.0]]), np.array([[1.0], [1.0], [1.0]])
    assert S.probability_of_improvement(arm, base) == pytest.approx(7.5 / 9)
    assert S.probability_of_improvement(arm, base, lower_is_better=False) == pytest.approx(1.5 / 9)
    # averaged over tasks
    two = S.probability_of_improvement(np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]]))
    assert two == pytest.approx((1.0 + 0.5) / 2)
    assert S.mde(0.1) == pytest.approx(0.1 * (1.959964 + 0.841621), rel=1e-5)
    assert S.mde(None) is None
