"""Benchmark metrics on hand-made tables with known answers, plus properties that must hold for
any table. No Spark; the one store test uses delta-rs only."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosmocore.report import metrics as M
from cosmocore.memory.schemas import EVALUATIONS_SCHEMA
from cosmocore.memory.store import Store
from miniworld.checks import OUTCOMES

pytestmark = pytest.mark.filterwarnings("error")  # "without warnings" is part of the contract
PROPS = settings(max_examples=60, deadline=None, database=None)  # no .hypothesis/ in the tree
C, W, U = "correct", "wrong_result", "unknown_reference"


def ev(grid: dict[str, list[str]], turn: int = 1, bug: dict[str, str] | None = None, run: str = "r0") -> list[dict]:
    """Rows from {task: [outcome at cycle 0, cycle 1, ...]}."""
    return [{"run_id": run, "cycle": c, "task_id": t, "bug_class": (bug or {}).get(t, "join_key"), "turn": turn,
             "outcome": o} for t, outs in grid.items() for c, o in enumerate(outs)]


# ------------------------------------------------------------------ hallucination rate
def test_hallucination_rate_per_cycle_counts_non_correct_turn1_only() -> None:
    rows = ev({"a": [W, C, C], "b": [U, U, C], "c": [C, C, C], "d": [W, W, C]}) + ev({"a": [C, C, C]}, turn=2)
    assert M.hallucination_rate_per_cycle(rows) == [0.75, 0.5, 0.0]
    assert M.hallucination_rate_per_cycle(rows, turn=2) == [0.0, 0.0, 0.0]
    assert M.hallucination_rate_per_cycle(pa.Table.from_pylist(rows)) == [0.75, 0.5, 0.0]


def test_breakdowns_by_outcome_and_bug_class() -> None:
    rows = ev({"a": [W, C], "b": [U, U], "c": [C, C], "d": [None, C]}, bug={"a": "null", "b": "null"})
    by_out = M.hallucination_rate_by_outcome(rows)
    assert set(OUTCOMES) <= set(by_out[0])
    assert by_out[0][W] == by_out[0][U] == by_out[0][C] == by_out[0][M.MISSING] == 0.25
    assert by_out[1][C] == 0.75 and by_out[1]["timeout"] == 0.0
    assert M.hallucination_rate_by_bug_class(rows) == [{"join_key": 0.5, "null": 1.0}, {"join_key": 0.0, "null": 0.5}]


def test_missing_cycles_are_none_and_empty_input_is_empty() -> None:
    rows = [r for r in ev({"a": [W, W, C]}) if r["cycle"] != 1]
    assert M.hallucination_rate_per_cycle(rows) == [1.0, None, 0.0]
    assert M.hallucination_rate_by_bug_class(rows)[1] is None
    for fn in (M.hallucination_rate_per_cycle, M.hallucination_rate_by_outcome, M.hallucination_rate_by_bug_class):
        assert fn([]) == [] and fn(pa.Table.from_pylist([], schema=EVALUATIONS_SCHEMA)) == []


def test_mixed_runs_are_refused_and_split_runs_separates_them() -> None:
    rows = ev({"a": [W]}, run="r0") + ev({"a": [C]}, run="r1")
    with pytest.raises(ValueError, match="split_runs"):
        M.hallucination_rate_per_cycle(rows)
    runs = M.split_runs(rows)
    assert {k: M.hallucination_rate_per_cycle(v) for k, v in runs.items()} == {"r0": [1.0], "r1": [0.0]}


def test_cycles_to_zero_error_counts_cycles_trained_and_censors_as_none() -> None:
    # index = cycles trained: rates[0] is the policy before training
    assert M.cycles_to_zero_error([0.5, 0.25, 0.0, 0.0]) == 2
    assert M.cycles_to_zero_error([0.0]) == 0
    assert M.cycles_to_zero_error([0.5, 0.5]) is None
    assert M.cycles_to_zero_error([]) is None
    assert M.cycles_to_zero_error([0.5, None, float("nan"), 0.3], target=0.3) == 3
    assert M.cycles_to_zero_error([0.9, 3 / 10], target=0.3) == 1
    assert M.final_rate([0.5, 0.2, None]) == 0.2 and M.final_rate([]) is None


@PROPS
@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), max_size=12), st.floats(0, 1))
def test_cycles_to_zero_error_is_the_first_hit(rates: list, target: float) -> None:
    k = M.cycles_to_zero_error(rates, target)
    hits = [i for i, r in enumerate(rates) if r is not None and r <= target + 1e-12]
    assert k == (hits[0] if hits else None)


# ------------------------------------------------------------------ recurrence
def test_bug_recurrence_known_answer() -> None:
    # a: fixed at cycle 1, then U (same as before: strict too) and C -> 1/2 later attempts fail
    # b: fixed at cycle 0, then W (new failure: not strict) and W -> 2/2
    # c: never fixed -> ignored;  d: fixed at the last cycle -> no later attempts
    rows = ev({"a": [U, C, U, C], "b": [C, W, W], "c": [W, W, W, W], "d": [W, W, W, C]})
    got = M.bug_recurrence_rate(rows + ev({"c": [C, C, C, C]}, turn=2))  # turn 2 never counts
    assert got == {"rate": 3 / 4, "strict_rate": 1 / 4, "recurrences": 3, "strict_recurrences": 1,
                   "attempts": 4, "pairs_fixed": 3}


def test_bug_recurrence_is_none_when_nothing_fixed_or_nothing_after() -> None:
    assert M.bug_recurrence_rate(ev({"a": [W, U]}))["rate"] is None
    assert M.bug_recurrence_rate([])["pairs_fixed"] == 0
    last = M.bug_recurrence_rate(ev({"a": [W, C]}))
    assert last["rate"] is None and last["pairs_fixed"] == 1 and last["attempts"] == 0


def test_bug_recurrence_orders_by_cycle_not_row_order() -> None:
    rows = ev({"a": [W, C, W]})
    assert M.bug_recurrence_rate(list(reversed(rows)))["rate"] == 1.0


outcome = st.sampled_from([C, W, U, "timeout"])
grids = st.dictionaries(st.sampled_from("abcdef"), st.lists(outcome, min_size=1, max_size=6), max_size=6)


@PROPS
@given(grids)
def test_recurrence_bounds(grid: dict) -> None:
    got = M.bug_recurrence_rate(ev(grid))
    assert 0 <= got["strict_recurrences"] <= got["recurrences"] <= got["attempts"]
    if got["rate"] is not None:
        assert 0.0 <= got["strict_rate"] <= got["rate"] <= 1.0
    json.dumps(got)


@PROPS
@given(grids)
def test_rates_are_shares_and_match_the_outcome_breakdown(grid: dict) -> None:
    rows = ev(grid)
    rates, by_out = M.hallucination_rate_per_cycle(rows), M.hallucination_rate_by_outcome(rows)
    assert len(rates) == (max(map(len, grid.values())) if grid else 0)
    for r, b in zip(rates, by_out):
        assert 0.0 <= r <= 1.0
        assert math.isclose(sum(b.values()), 1.0) and math.isclose(r, 1 - b[C], abs_tol=1e-12)


# ------------------------------------------------------------------ self-correction
def test_self_correction_known_answer_at_final_cycle() -> None:
    t1 = ev({"a": [W, W], "b": [W, C], "c": [C, C], "d": [W, W], "e": [C, W]})
    t2 = ev({"a": [W, C], "b": [W, W], "c": [C, C], "d": [W, W]}, turn=2)  # e lacks turn 2: not a problem
    got = M.self_correction(t1 + t2)
    assert got == {"delta_i_to_c": 0.25, "delta_c_to_i": 0.25, "accuracy_t1": 0.5, "accuracy_t2": 0.5,
                   "n": 4, "cycle": 1}
    early = M.self_correction(t1 + t2, cycle=0)
    assert early["delta_i_to_c"] == 0.0 and early["accuracy_t1"] == 0.25


def test_self_correction_empty_is_none() -> None:
    got = M.self_correction(ev({"a": [W]}))
    assert got["delta_i_to_c"] is None and got["n"] == 0
    assert M.self_correction([])["accuracy_t2"] is None


@PROPS
@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=20))
def test_self_correction_identity(pairs: list) -> None:
    rows = [{"run_id": "r", "cycle": 0, "task_id": f"t{i}", "turn": turn, "outcome": C if ok else W}
            for i, p in enumerate(pairs) for turn, ok in ((1, p[0]), (2, p[1]))]
    got = M.self_correction(rows)
    if pairs:
        assert math.isclose(got["accuracy_t2"] - got["accuracy_t1"], got["delta_i_to_c"] - got["delta_c_to_i"],
                            abs_tol=1e-12)


# ------------------------------------------------------------------ across seeds
@pytest.mark.parametrize("df,q", [(1, 12.7062047), (2, 4.3026527), (4, 2.7764451), (10, 2.2281389),
                                  (30, 2.0422725), (100, 1.9839715), (1000, 1.9623391)])
def test_t_quantile_matches_the_table(df: int, q: float) -> None:
    assert M.t_quantile(0.975, df) == pytest.approx(q, abs=1e-6)
    assert M.t_quantile(0.025, df) == pytest.approx(-q, abs=1e-6)


def test_mean_ci_t_known_answer() -> None:
    got = M.mean_ci([1.0, 2.0, 3.0])  # mean 2, sd 1, t_{.975,2} = 4.3026527
    assert got["mean"] == 2.0 and got["n"] == 3
    assert got["ci95"] == pytest.approx([2 - 4.3026527 / math.sqrt(3), 2 + 4.3026527 / math.sqrt(3)], abs=1e-6)


def test_mean_ci_edge_cases() -> None:
    assert M.mean_ci([]) == {"mean": None, "ci95": [None, None], "n": 0}
    assert M.mean_ci([None, float("nan")], method="bootstrap") == {"mean": None, "ci95": [None, None], "n": 0}
    assert M.mean_ci([0.4, None, float("nan")]) == {"mean": 0.4, "ci95": [0.4, 0.4], "n": 1}
    assert M.mean_ci([2.0, 2.0, 2.0], method="bootstrap")["ci95"] == [2.0, 2.0]
    with pytest.raises(ValueError):
        M.mean_ci([1.0], method="wald")


def test_bootstrap_is_seeded() -> None:
    xs = [0.1, 0.4, 0.35, 0.8, 0.5]
    assert M.mean_ci(xs, method="bootstrap", seed=3) == M.mean_ci(xs, method="bootstrap", seed=3)
    assert M.mean_ci(xs, method="bootstrap", seed=3)["ci95"] != M.mean_ci(xs, method="bootstrap", seed=4)["ci95"]


@PROPS
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30), st.sampled_from(["t", "bootstrap"]))
def test_mean_ci_brackets_the_mean(xs: list, method: str) -> None:
    got = M.mean_ci(xs, method=method, resamples=500)
    lo, hi = got["ci95"]
    tol = 1e-9 * (1 + max(map(abs, xs)))
    assert lo - tol <= got["mean"] <= hi + tol
    if method == "bootstrap":
        assert min(xs) - tol <= lo and hi <= max(xs) + tol
    assert all(type(v) is float for v in (got["mean"], lo, hi))
    json.dumps(got)


def test_curve_summary_aligns_cycles_across_seeds() -> None:
    got = M.curve_summary([[1.0, 0.5, 0.0], [0.5, None], [0.0, 0.5, 0.5]])
    assert got["mean"] == [0.5, 0.5, 0.25]
    assert got["ci95"][1] == [0.5, 0.5]
    assert M.curve_summary([]) == {"mean": [], "ci95": []}


def test_censored_summary() -> None:
    got = M.censored_summary([4, None, 6, None], budget=10)
    assert got["per_seed"] == [4, None, 6, None] and got["censored"] == 2
    assert got["mean"] == 5.0 and got["restricted_mean"] == 7.5
    assert got["ci95"][0] < 5.0 < got["ci95"][1]
    none = M.censored_summary([None, None], budget=3)
    assert none["mean"] is None and none["ci95"] == [None, None] and none["restricted_mean"] == 3.0
    assert M.censored_summary([], budget=3)["censored"] == 0
    json.dumps(got)


def test_relative_change_known_answer_paired_and_unpaired() -> None:
    got = M.relative_change([0.26, 0.52], [0.5, 1.0])  # paired by position: every seed -48%
    assert got["relative_change"] == pytest.approx(-0.48) and got["paired"]
    assert got["ci95"] == pytest.approx([-0.48, -0.48])
    keyed = M.relative_change({0: 0.26, 1: 0.52}, {1: 1.0, 0: 0.5})
    assert keyed["paired"] and keyed["ci95"] == pytest.approx([-0.48, -0.48])
    unpaired = M.relative_change([0.26, 0.52, 0.39], [0.5, 1.0])
    assert not unpaired["paired"] and unpaired["relative_change"] == pytest.approx(-0.48)
    lo, hi = unpaired["ci95"]
    assert lo < -0.48 < hi


def test_relative_change_drops_missing_pairs_and_handles_degenerate_baselines() -> None:
    got = M.relative_change([30, None, 20], [40, 44, 40])
    assert got["relative_change"] == pytest.approx(-0.375) and got["n_arm"] == got["n_baseline"] == 2
    assert M.relative_change([1.0], [0.0])["relative_change"] is None
    assert M.relative_change([], [1.0]) == {"relative_change": None, "ci95": [None, None], "paired": False,
                                            "n_arm": 0, "n_baseline": 1}


@pytest.mark.filterwarnings("error")
def test_relative_change_drops_resamples_with_a_zero_baseline_and_resamples_one_side() -> None:
    # paired seeds (1 vs 0) and (2 vs 2): a resample of only the first seed has no ratio and is
    # dropped; the others give 0 (second seed twice) or +50% (both seeds)
    got = M.relative_change([1.0, 2.0], [0.0, 2.0], resamples=2000)
    assert got["relative_change"] == pytest.approx(0.5) and got["ci95"] == pytest.approx([0.0, 0.5])
    # unpaired, one baseline seed: only the arm is resampled (its means 1, 2, 3 against 2)
    one = M.relative_change([1.0, 3.0, 2.0], [2.0], resamples=2000)
    assert one["relative_change"] == 0.0 and not one["paired"]
    assert -0.5 <= one["ci95"][0] < 0.0 < one["ci95"][1] <= 0.5


@PROPS
@given(st.lists(st.floats(0.01, 100), min_size=1, max_size=8), st.floats(0.1, 10))
def test_relative_change_scales(base: list, k: float) -> None:
    got = M.relative_change([k * b for b in base], base)
    assert got["relative_change"] == pytest.approx(k - 1, rel=1e-9, abs=1e-9)
    assert got["ci95"] == pytest.approx([k - 1, k - 1], rel=1e-9, abs=1e-9)


# ------------------------------------------------------------------ history helpers
HISTORY = [
    {"buffer_size": 16, "dream_queue": 2, "dream_share": 0.5, "entropy": 1.0, "confidence_variance": 0.1,
     "tagger_valence_auc": float("nan")},
    {"buffer_size": 40, "dream_queue": 9, "dream_share": 0.8, "entropy": 0.5, "confidence_variance": 0.3,
     "tagger_valence_auc": 0.75},
    {"buffer_size": 30, "dream_queue": 6, "dream_share": 0.8, "entropy": None, "confidence_variance": 0.2,
     "tagger_valence_auc": 0.85},
]


def test_history_helpers() -> None:
    occ = M.buffer_occupancy(HISTORY)
    assert occ == {"per_cycle": [16, 40, 30], "max": 40, "final": 30, "dream_queue_per_cycle": [2, 9, 6],
                   "dream_queue_max": 9}
    assert M.dream_queue_share(HISTORY) == pytest.approx(0.7)
    assert M.entropy_mean(HISTORY) == pytest.approx(0.75)
    assert M.confidence_variance(HISTORY) == pytest.approx(0.2)
    assert M.tagger_valence_auc(HISTORY) == pytest.approx(0.8)
    json.dumps(occ)


def test_history_helpers_on_empty_and_all_nan() -> None:
    assert M.buffer_occupancy([]) == {"per_cycle": [], "max": None, "final": None, "dream_queue_per_cycle": [],
                                      "dream_queue_max": None}
    for fn in (M.dream_queue_share, M.entropy_mean, M.confidence_variance, M.tagger_valence_auc):
        assert fn([]) is None
    assert M.tagger_valence_auc([{"tagger_valence_auc": float("nan")}, {}]) is None


def test_sampling_entropy_from_episodes() -> None:
    eps = [{"run_id": "r", "cycle": 0, "turn": 1, "entropy": 1.0}, {"run_id": "r", "cycle": 0, "turn": 1, "entropy": 2.0},
           {"run_id": "r", "cycle": 0, "turn": 2, "entropy": 9.0}, {"run_id": "r", "cycle": 1, "turn": 1, "entropy": None}]
    assert M.sampling_entropy_per_cycle(eps) == [1.5, None]


# ------------------------------------------------------------------ on a real Delta table
def test_metrics_read_the_evaluations_table(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    t1 = ev({"a": [W, C, C], "b": [U, W, C]})
    t2 = ev({"a": [C, C, C], "b": [W, C, W]}, turn=2)
    store.append_evaluations([{**r, "eval_id": f"{r['task_id']}-{r['cycle']}-{r['turn']}", "arm": "cosmocore",
                               "seed": 0, "split": "eval"} for r in t1 + t2])
    table = store.read_evaluations(filters=[("run_id", "=", "r0")])
    rates = M.hallucination_rate_per_cycle(table)
    assert rates == [1.0, 0.5, 0.0] and M.cycles_to_zero_error(rates) == 2
    assert M.bug_recurrence_rate(table)["pairs_fixed"] == 2
    assert M.self_correction(table)["delta_c_to_i"] == 0.5
