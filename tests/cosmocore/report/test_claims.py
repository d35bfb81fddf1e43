"""Verdicts, the practice set's cycles to zero error and the design block, on evaluation rows
written out by hand (and once through a real Delta store and the whole report)."""
from __future__ import annotations

import dataclasses

import json
from pathlib import Path

import pytest

from cosmocore.memory.schemas import EVALUATIONS_SCHEMA
from cosmocore.memory.store import Store
from cosmocore.report import claims as CL
from cosmocore.report import report as R
from cosmocore.report import splits as SP

C, W = "correct", "wrong_result"


# ------------------------------------------------------------------ verdict rules
def test_each_verdict_rule() -> None:
    assert CL.verdict(5, [-0.30, -0.05])[0] == CL.SUPPORTED
    assert CL.verdict(5, [0.02, 0.30])[0] == CL.REFUTED
    assert CL.verdict(5, [-0.10, 0.10])[0] == CL.NO_DIFFERENCE
    word, why = CL.verdict(2, [-0.30, -0.25])
    assert word == CL.UNDERPOWERED and "2 paired seeds" in why  # too few seeds, however narrow
    word, why = CL.verdict(5, [-0.50, -0.08])  # half-width 0.21 > 0.20 even though it excludes 0
    assert word == CL.UNDERPOWERED and "0.21" in why
    assert CL.verdict(5, [-0.45, -0.06])[0] == CL.SUPPORTED  # half-width 0.195
    # cycles: the half-width is read as a share of the cycle budget (here 20 cycles)
    assert CL.verdict(5, [-6.0, -1.0], scale=20)[0] == CL.SUPPORTED  # 2.5 / 20 = 0.125
    assert CL.verdict(5, [-12.0, -1.0], scale=20)[0] == CL.UNDERPOWERED  # 5.5 / 20 = 0.275
    assert CL.verdict(5, [None, None])[0] == CL.UNDERPOWERED


# ------------------------------------------------------------------ practice-set cycles to zero error
def _practice(outcomes: dict[str, list[str]], **extra: object) -> list[dict]:
    return [{"split": "practice", "task_id": t, "cycle": c, "turn": 1, "outcome": o, **extra}
            for t, outs in outcomes.items() for c, o in enumerate(outs)]


def test_practice_cycles_to_zero_error_is_the_first_all_correct_cycle() -> None:
    rows = _practice({"p0": [W, C, C, C, C], "p1": [W, W, C, W, C], "p2": [C, C, C, C, C]})
    got = SP.practice_cycles_to_zero_error(rows, budget=4)
    assert got["cycle"] == 2 and got["relapsed"] is True and got["tasks"] == 3 and got["censored_at"] is None
    steady = SP.practice_cycles_to_zero_error(_practice({"p0": [W, C, C], "p1": [W, C, C]}), budget=2)
    assert steady["cycle"] == 1 and steady["relapsed"] is False
    never = SP.practice_cycles_to_zero_error(_practice({"p0": [W, C, C], "p1": [W, W, W]}), budget=2)
    assert never["cycle"] is None and never["censored_at"] == 2
    stopped = SP.practice_cycles_to_zero_error(_practice({"p0": [W, W]}), budget=5)  # ran 1 of 5 cycles
    assert stopped["cycle"] is None and stopped["censored_at"] == 1
    # a cycle that lacks a practice task's row does not count as zero error
    gap = _practice({"p0": [W, C, C], "p1": [W, W, C]})
    gap = [r for r in gap if not (r["task_id"] == "p1" and r["cycle"] == 1)]
    assert SP.practice_cycles_to_zero_error(gap, budget=2)["cycle"] == 2
    # only sample 0 counts (a wrong second sample does not undo the greedy reply)
    sampled = _practice({"p0": [W, C]}, sample=0) + _practice({"p0": [W, W]}, sample=1)
    assert SP.practice_cycles_to_zero_error(sampled, budget=1)["cycle"] == 1
    assert SP.practice_cycles_to_zero_error([], budget=3) == {"cycle": None, "relapsed": None, "tasks": 0,
                                                              "cycles_scored": 0, "censored_at": 3}


def test_arm_figures_count_censored_runs_through_kaplan_meier() -> None:
    runs = {s: CL.run_data(s, _practice(outs), budget=3) for s, outs in enumerate([
        {"p0": [W, C, C, C]},  # 1
        {"p0": [W, W, W, C]},  # 3
        {"p0": [W, W, W, W]},  # censored at 3
        {"p0": [W, W, W, W]},  # censored at 3
    ])}
    p = CL.arm_figures(runs, budget=3)["practice_cycles_to_zero_error"]
    assert p["per_seed"] == [1, 3, None, None] and p["censored"] == 2 and p["runs"] == 4
    assert p["km_median"] == 3.0  # S(1) = 0.75, S(3) = 0.5
    assert p["restricted_mean"] == pytest.approx((1 + 3 + 3 + 3) / 4)


def test_practice_bug_recurrence_counts_later_failures_of_fixed_tasks() -> None:
    # p0 fixed at cycle 1, then wrong, right, wrong: 2 of 3 later attempts; p1 never fixed: left out
    run = CL.run_data(0, _practice({"p0": [W, C, W, C, W], "p1": [W, W, W, W, W]}), budget=4)
    assert run.practice_recurrence == {"p0": (2, 3)}
    assert CL.arm_figures({0: run}, budget=4)["practice_bug_recurrence_rate"]["per_seed"] == [pytest.approx(2 / 3)]


# ------------------------------------------------------------------ held-out split, groups, samples
def _held(split: str, cycle: int, cells: dict[str, list[str]], bug: dict[str, str], group: bool = True) -> list[dict]:
    return [{"split": split, "task_id": t, "cycle": cycle, "turn": 1, "outcome": o, "sample": k,
             "bug_class": bug[t], **({"group": "practised" if bug[t] == "join" else "unpractised"} if group else {})}
            for t, outs in cells.items() for k, o in enumerate(outs)]


def test_run_data_reads_test_split_by_group_and_every_sample() -> None:
    bug = {"x0": "join", "x1": "join", "y0": "window"}
    rows = (_practice({"p0": [W, C]}) + [{**r, "bug_class": "join"} for r in _practice({"p1": [C, C]})]
            + _held("test", 0, {"x0": [W, W], "x1": [W, W], "y0": [W, W]}, bug)
            + _held("test", 1, {"x0": [C, C], "x1": [C, W], "y0": [W, W]}, bug)
            + _held("dev", 1, {"d0": [C]}, {"d0": "join"}))
    run = CL.run_data(0, rows, budget=1)
    assert run.held_out_split == "test"  # dev rows never enter the headline
    assert run.held_out[CL.ALL] == {"x0": (0, 2), "x1": (1, 2), "y0": (2, 2)}
    assert run.held_out["practised"] == {"x0": (0, 2), "x1": (1, 2)} and run.held_out["unpractised"] == {"y0": (2, 2)}
    assert run.held_out_first["x1"] == (2, 2)
    assert run.recurrence == {"x0": (0, 0), "x1": (0, 0)}  # sample 0 fixed at the last cycle: no later attempt
    # an older store: no group column -> practised = the bug class is among the practice set's
    legacy = CL.run_data(0, _practice({"p1": [C, C]}, bug_class="join")
                         + _held("eval", 1, {"x0": [W], "y0": [C]}, bug, group=False), budget=1)
    assert legacy.held_out_split == "eval"
    assert legacy.held_out["practised"] == {"x0": (1, 1)} and legacy.held_out["unpractised"] == {"y0": (0, 1)}


def _arm_runs(per_seed_errors: list[list[int]], tasks: int = 20) -> dict[int, CL.RunData]:
    """Runs whose test split has ``tasks`` tasks, the listed ones wrong at the last cycle."""
    out = {}
    for s, wrong in enumerate(per_seed_errors):
        cells = {f"t{j:02d}": ((1 if j in wrong else 0), 1) for j in range(tasks)}
        out[s] = CL.RunData(seed=s, held_out_split="test", held_out={CL.ALL: cells, "practised": {}, "unpractised": {}},
                            ctze={"cycle": 2 + s, "censored_at": None, "tasks": 12})
    return out


def test_claim_rows_supported_refuted_and_not_run() -> None:
    good = _arm_runs([[0, 1], [2], [3, 4], [5]])  # 1-2 of 20 wrong
    bad = _arm_runs([list(range(12)), list(range(13)), list(range(11)), list(range(12))])  # ~12 of 20 wrong
    spec = CL.SPECS[0]
    row = CL.claim_row(spec, "cosmocore", good, bad, budget=10)
    assert row["estimate"] == pytest.approx((2 + 1 + 2 + 1) / 80 - (12 + 13 + 11 + 12) / 80)
    assert row["verdict"] == CL.SUPPORTED and row["ci95"][1] < 0 and row["split"] == "test"
    assert row["claim"] == "test hallucination rate is lower"
    on_dev = {s: dataclasses.replace(r, held_out_split="dev") for s, r in good.items()}
    assert CL.claim_row(spec, "cosmocore", on_dev, on_dev, budget=10)["claim"] == "dev hallucination rate is lower"
    assert row["n_seeds"] == 4 and row["n_tasks"] == 20 and row["mde"] > 0
    assert row["probability_of_improvement"] > 0.5 and row["iqm"]["arm"] < row["iqm"]["baseline"]
    assert CL.claim_row(spec, "cosmocore", bad, good, budget=10)["verdict"] == CL.REFUTED
    assert CL.claim_row(spec, "cosmocore", good, good, budget=10)["verdict"] == CL.NO_DIFFERENCE
    three = {s: good[s] for s in (0, 1)}
    assert CL.claim_row(spec, "cosmocore", three, bad, budget=10)["verdict"] == CL.UNDERPOWERED  # 2 paired seeds
    absent = CL.claim_row(spec, "cocos", None, bad, budget=10)
    assert absent["verdict"] == CL.NOT_RUN and "cocos" in absent["reason"]
    # cycles to zero error: both arms 2, 3, 4, 5 -> difference 0 on every seed
    ctze = CL.claim_row(CL.SPECS[3], "cosmocore", good, bad, budget=10)
    assert ctze["estimate"] == 0.0 and ctze["verdict"] == CL.NO_DIFFERENCE and ctze["unit"] == "cycles"
    censored = {s: CL.RunData(seed=s, ctze={"cycle": None, "censored_at": 10, "tasks": 12}) for s in range(4)}
    assert CL.claim_row(CL.SPECS[3], "cosmocore", censored, censored, budget=10)["verdict"] == CL.UNDERPOWERED
    floor = _arm_runs([list(range(20))] * 4)  # every sample of both arms wrong: [0, 0] says nothing
    at_floor = CL.claim_row(spec, "cosmocore", floor, floor, budget=10)
    assert at_floor["estimate"] == 0.0 and at_floor["verdict"] == CL.UNDERPOWERED and "floor" in at_floor["reason"]
    ceiling = _arm_runs([[]] * 4)
    assert CL.claim_row(spec, "cosmocore", ceiling, ceiling, budget=10)["verdict"] == CL.UNDERPOWERED
    rows = CL.claims({"uniform": bad, "cosmocore": good, "no_pruning": good}, budget=10)
    assert {(r["arm"], r["verdict"]) for r in rows if r["metric"] == "hallucination_rate"} == {
        ("cosmocore", CL.SUPPORTED), ("cocos", CL.NOT_RUN), ("no_pruning", CL.SUPPORTED)}
    assert len(rows) == 3 * len(CL.SPECS)


# ------------------------------------------------------------------ design
def test_design_counts_come_from_the_rows() -> None:
    evals = {}
    for arm in ("uniform", "cosmocore"):
        for seed in (0, 1, 2):
            rid = f"{arm}-{seed}"
            rows = [{"run_id": rid, "arm": arm, "seed": seed, "split": "practice", "task_id": f"p{t}", "cycle": c,
                     "turn": 1, "outcome": C, "sample": 0} for t in range(12) for c in range(6)]
            rows += [{"run_id": rid, "arm": arm, "seed": seed, "split": "test", "task_id": f"x{t}", "cycle": c,
                      "turn": 1, "outcome": W, "sample": k} for t in range(24) for c in (0, 5) for k in range(4)]
            rows += [{"run_id": rid, "arm": arm, "seed": seed, "split": "test", "task_id": f"x{t}", "cycle": 5,
                      "turn": 2, "outcome": C, "sample": 0} for t in range(24)]  # turn 2 is not a sample
            evals[rid] = rows
    bench = {"profile": "quick", "arms": ["uniform", "cosmocore"], "cycles": 6}
    d = SP.design(bench, evals)
    assert {k: d[k] for k in ("profile", "arms", "seeds", "cycles", "practice_tasks", "dev_tasks", "test_tasks",
                              "samples_per_task")} == {
        "profile": "quick", "arms": ["uniform", "cosmocore"], "seeds": 3, "cycles": 5, "practice_tasks": 12,
        "dev_tasks": 0, "test_tasks": 24, "samples_per_task": 4}
    assert d["held_out_split"] == "test" and d["held_out_cycles"] == [0, 5] and d["cycle_budget"] == 6
    evals["uniform-0"] = [r for r in evals["uniform-0"] if r["task_id"] != "x3"]  # one run scored fewer tasks
    assert SP.design(bench, evals)["test_tasks"] == 23


# ------------------------------------------------------------------ the whole report
def _bench(root: Path, seeds: int = 3, cycles: int = 3, samples: int = 0) -> Path:
    """A bench directory whose store holds practice and test rows (cosmocore learns faster);
    with ``samples``, test rows carry the ``sample`` and ``group`` columns, and every sample but
    the first is wrong."""
    arms = ["uniform", "cosmocore"]
    runs = [{"arm": a, "seed": s, "run_id": f"b-{a}-s{s}", "dir": f"runs/{a}-s{s}"} for s in range(seeds) for a in arms]
    root.mkdir(parents=True)
    (root / "bench.json").write_text(json.dumps({"schema_version": 1, "bench_id": "b", "profile": "quick",
                                                 "model": "tiny", "suite": "s", "arms": arms,
                                                 "seeds": list(range(seeds)), "cycles": cycles, "runs": runs}))
    rows = []
    for run in runs:
        fast = run["arm"] == "cosmocore"
        base = {"run_id": run["run_id"], "arm": run["arm"], "seed": run["seed"], "turn": 1}
        for t in range(4):  # practice: task t fixed at cycle t//2 + 1 (cosmocore) or never for t=3 (uniform)
            fixed = t // 2 + 1 if fast else (t + 1 if t < 3 else cycles + 1)
            rows += [{**base, "eval_id": f"{run['run_id']}-p{t}-{c}", "split": "practice", "task_id": f"p{t}",
                      "bug_class": "join", "cycle": c, "outcome": C if c >= fixed else W} for c in range(cycles + 1)]
        for t in range(8):  # test at cycles 0 and the last: 'join' tasks are practised, 'window' not
            wrong_end = t % 4 == 0 if fast else t % 4 != 3
            for c, wrong in ((0, True), (cycles, wrong_end)):
                row = {**base, "eval_id": f"{run['run_id']}-x{t}-{c}", "split": "test", "task_id": f"x{t}",
                       "bug_class": "join" if t < 4 else "window", "cycle": c, "outcome": W if wrong else C}
                if not samples:
                    rows.append(row)
                    continue
                group = "practised" if t < 4 else "unpractised"
                rows += [{**row, "eval_id": f"{row['eval_id']}-k{k}", "sample": k, "group": group,
                          "outcome": row["outcome"] if k == 0 else W} for k in range(samples)]
        out = root / run["dir"]
        out.mkdir(parents=True)
        (out / "summary.json").write_text(json.dumps({"run_id": run["run_id"], "arm": run["arm"], "seed": run["seed"],
                                                      "cycles_completed": cycles, "history": [], "wall_s": 1.0}))
    Store.open(root / "store").append_evaluations(rows)
    return root


def test_report_opens_with_verdicts_and_carries_design_and_practice_blocks(tmp_path: Path) -> None:
    run_dir = _bench(tmp_path / "run")
    rep = R.build(run_dir)
    d = rep["design"]
    assert (d["seeds"], d["cycles"], d["practice_tasks"], d["test_tasks"], d["samples_per_task"]) == (3, 3, 4, 8, 1)
    cos = rep["arms"]["cosmocore"]
    assert cos["practice_cycles_to_zero_error"]["per_seed"] == [2, 2, 2]
    assert rep["arms"]["uniform"]["practice_cycles_to_zero_error"]["censored"] == 3
    assert rep["arms"]["uniform"]["practice_cycles_to_zero_error"]["km_median"] is None
    assert cos["test_hallucination_rate"]["mean"] == pytest.approx(2 / 8)
    assert cos["test_hallucination_rate"]["practised"]["mean"] == pytest.approx(1 / 4)
    assert rep["arms"]["uniform"]["test_hallucination_rate"]["mean"] == pytest.approx(6 / 8)
    assert cos["practice_bug_recurrence_rate"]["per_seed"] == [0.0] * 3  # fixed practice tasks stay fixed
    # the old keys read the held-out split only, never the practice rows
    assert rep["arms"]["uniform"]["final_hallucination_rate"]["per_seed"] == pytest.approx([6 / 8] * 3)
    assert cos["hallucination_rate_per_cycle"]["mean"] == [1.0, None, None, pytest.approx(0.25)]
    diff = cos["practice_difference_per_cycle"]
    assert diff["cycle"] == [0, 1, 2, 3] and diff["mean"][0] == 0.0 and diff["mean"][2] == pytest.approx(0 - 2 / 4)
    claims = {(c["metric"], c["arm"]): c for c in rep["claims"]}
    halluc = claims["hallucination_rate", "cosmocore"]
    assert halluc["estimate"] == pytest.approx(-0.5) and halluc["split"] == "test"
    assert claims["cycles_to_zero_error", "cosmocore"]["estimate"] == pytest.approx(-1.0)  # 2 vs censored at 3
    assert claims["hallucination_rate", "cocos"]["verdict"] == CL.NOT_RUN
    recurrence = {c["split"]: c for c in rep["claims"] if c["metric"] == "bug_recurrence_rate" and c["arm"] == "cosmocore"}
    # no fixed practice task came back wrong in either arm: a ceiling, where [0, 0] says nothing
    assert recurrence["practice"]["estimate"] == 0.0 and recurrence["practice"]["verdict"] == CL.UNDERPOWERED
    assert "ceiling" in recurrence["practice"]["reason"]
    assert recurrence["test"]["verdict"] == CL.NO_DATA  # every test task was wrong at cycle 0: nothing fixed before
    md = (run_dir / "report.md").read_text()
    assert md.index("## Verdicts") < md.index("## Paper claims as relative changes") < md.index("## Results per arm")
    assert "learning_curves.png" in md and (run_dir / rep["plots"]["learning_curves"]).exists()


@pytest.mark.skipif("sample" not in EVALUATIONS_SCHEMA.names, reason="the store has no sample/group columns yet")
def test_report_reads_samples_and_groups_from_the_store(tmp_path: Path) -> None:
    rep = R.build(_bench(tmp_path / "run", samples=3))
    assert rep["design"]["samples_per_task"] == 3 and rep["design"]["test_tasks"] == 8
    t = rep["arms"]["cosmocore"]["test_hallucination_rate"]
    # errors / executions: sample 0 wrong on x0 and x4, samples 1 and 2 always wrong -> (2 + 16) / 24
    assert t["mean"] == pytest.approx(18 / 24) and t["practised"]["mean"] == pytest.approx(9 / 12)
    # the per-cycle keys of old read every sample; self-correction and recurrence read sample 0
    assert rep["arms"]["cosmocore"]["final_hallucination_rate"]["per_seed"] == pytest.approx([18 / 24] * 3)
