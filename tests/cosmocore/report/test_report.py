"""The benchmark report on a hand-made run directory: bench.json, summary.json files and a real
Delta store (delta-rs) holding evaluations with known outcomes, so every headline number can be
checked against a value worked out by hand below. No Spark, no model."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cosmocore.report import report as R
from cosmocore.memory.store import Store

pytestmark = pytest.mark.filterwarnings("error")  # the report is written without warnings
C, W, U = "correct", "wrong_result", "unknown_reference"
T975_1 = 12.706204736174705  # Student t quantile, 0.975, 1 degree of freedom (two seeds)
CYCLES = 3
BUG = {"t0": "join_key", "t1": "join_key", "t2": "null_handling", "t3": "null_handling"}

# Turn-1 eval outcome per task at cycles 0..3 (cycle 0 = before training), per (arm, seed).
TURN1 = {
    ("uniform", 0): {"t0": [W, C, W, C], "t1": [U, W, C, C], "t2": [W, W, W, W], "t3": [W, W, W, U]},
    ("uniform", 1): {"t0": [W, W, C, C], "t1": [W, W, W, C], "t2": [U, U, U, U], "t3": [W, W, W, W]},
    ("cosmocore", 0): {"t0": [W, C, C, C], "t1": [U, C, C, C], "t2": [W, W, C, C], "t3": [W, W, W, C]},
    ("cosmocore", 1): {"t0": [C, W, C, C], "t1": [W, C, C, C], "t2": [W, C, C, C], "t3": [W, C, C, C]},
}
# Turn-2 outcome at the last cycle.
TURN2 = {
    ("uniform", 0): {"t0": C, "t1": W, "t2": C, "t3": U},  # i->c 1/4, c->i 1/4
    ("uniform", 1): {"t0": C, "t1": C, "t2": C, "t3": C},  # i->c 2/4
    ("cosmocore", 0): {"t0": C, "t1": C, "t2": C, "t3": C},  # 0, 0
    ("cosmocore", 1): {"t0": W, "t1": C, "t2": C, "t3": C},  # c->i 1/4
}
RATES = {  # worked out from TURN1 by hand
    ("uniform", 0): [1.0, 0.75, 0.75, 0.5], ("uniform", 1): [1.0, 1.0, 0.75, 0.5],
    ("cosmocore", 0): [1.0, 0.5, 0.25, 0.0], ("cosmocore", 1): [0.75, 0.25, 0.0, 0.0],
}
BUFFER = {("uniform", 0): [10, 20, 30], ("uniform", 1): [10, 20, 30],
          ("cosmocore", 0): [8, 12, 14], ("cosmocore", 1): [8, 10, 16]}


def _history(arm: str, seed: int) -> list[dict]:
    """A cycle-0 eval-only record, then one record per training cycle (as the trainer writes)."""
    out = [{"cycle": 0, "eval_hallucination_rate": RATES[arm, seed][0], "wall_s": 1.0}]
    for c in range(1, CYCLES + 1):
        out.append({"cycle": c, "day_reward": 0.5, "entropy": 0.5 + 0.1 * seed, "confidence_variance": 0.01,
                    "tagger_valence_auc": float("nan") if c == 1 else 0.7, "buffer_size": BUFFER[arm, seed][c - 1],
                    "dream_queue": 2, "dream_share": 0.8 if arm == "cosmocore" else 0.0, "tokens_generated": 100,
                    "eval_hallucination_rate": RATES[arm, seed][c], "eval_outcomes": {"correct": 1}, "wall_s": 3.0})
    return out


def make_bench(root: Path, arms: list[str], seeds: list[int], unfinished: set[tuple[str, int]] = frozenset()) -> Path:
    """A run directory as ``cosmocore bench`` leaves it."""
    runs = [{"arm": a, "seed": s, "run_id": f"b-{a}-s{s}", "dir": f"runs/{a}-s{s}"} for s in seeds for a in arms]
    bench = {"schema_version": 1, "bench_id": "b", "profile": "smoke", "model": "tiny", "suite": "smoke", "arms": arms,
             "seeds": seeds, "cycles": CYCLES, "target": 0.0, "store": None, "train": {"lr": 1e-5}, "runs": runs}
    root.mkdir(parents=True)
    (root / "bench.json").write_text(json.dumps(bench))
    store = Store.open(root / "store")
    evals, episodes = [], []
    for run in runs:
        key, rid = (run["arm"], run["seed"]), run["run_id"]
        base = {"run_id": rid, "arm": run["arm"], "seed": run["seed"], "split": "eval"}
        for task, outs in TURN1[key].items():
            for c, o in enumerate(outs):
                evals.append({**base, "eval_id": f"{rid}-c{c}-{task}-t1", "cycle": c, "task_id": task,
                              "bug_class": BUG[task], "turn": 1, "outcome": o})
        for task, o in TURN2[key].items():
            evals.append({**base, "eval_id": f"{rid}-c{CYCLES}-{task}-t2", "cycle": CYCLES, "task_id": task,
                          "bug_class": BUG[task], "turn": 2, "outcome": o})
        for i, (v, a, b) in enumerate([(-0.9, 0.9, "dream"), (-0.6, 0.8, "dream"), (0.1, 0.1, "prune"), (0.4, 0.5, "main")]):
            episodes.append({"episode_id": f"{rid}-e{i}", "run_id": rid, "arm": run["arm"], "seed": run["seed"],
                             "cycle": 1, "turn": 1, "entropy": 0.5, "valence": v, "arousal": a, "bin": b})
        if key in unfinished:
            continue
        out = root / run["dir"]
        out.mkdir(parents=True)
        history = _history(*key)
        summary = {"run_id": rid, "arm": run["arm"], "seed": run["seed"], "cycles_completed": CYCLES, "episodes": 40,
                   "final_hallucination_rate": RATES[key][-1], "checkpoint": None, "history": history, "wall_s": 10.0}
        (out / "summary.json").write_text(json.dumps(summary))  # NaN is written as NaN, as json.dumps does
    store.append_evaluations(evals)
    store.append_episodes(episodes)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = make_bench(tmp_path_factory.mktemp("bench") / "run", ["uniform", "cosmocore"], [0, 1])
    return run_dir, R.build(run_dir)


def _ci(xs: list[float], lo: float = 0.0, hi: float = 1.0) -> list[float]:
    """The 95% t interval of two values, cut to the metric's range [lo, hi]."""
    m, sd = sum(xs) / len(xs), math.sqrt(sum((x - sum(xs) / len(xs)) ** 2 for x in xs) / (len(xs) - 1))
    half = T975_1 * sd / math.sqrt(len(xs))
    return [max(m - half, lo), min(m + half, hi)]


# ------------------------------------------------------------------ the numbers
def test_design_keys_exist(built: tuple[Path, dict]) -> None:
    _, rep = built
    assert {"schema_version", "profile", "model", "suite", "seeds", "cycles", "arms", "comparisons"} <= set(rep)
    assert rep["schema_version"] == 1 and rep["seeds"] == [0, 1] and rep["cycles"] == CYCLES
    for a in rep["arms"].values():
        assert {"cycles_to_zero_error", "hallucination_rate_per_cycle", "final_hallucination_rate", "bug_recurrence_rate",
                "self_correction", "entropy_mean", "confidence_variance", "buffer_occupancy_max", "dream_queue_share",
                "wall_time_s"} <= set(a)
        assert {"per_seed", "mean", "ci95", "censored"} <= set(a["cycles_to_zero_error"])
        assert {"mean", "ci95"} <= set(a["hallucination_rate_per_cycle"])
        for k in ("final_hallucination_rate", "bug_recurrence_rate"):
            assert {"per_seed", "mean", "ci95"} <= set(a[k])
        assert {"delta_i_to_c", "delta_c_to_i"} <= set(a["self_correction"])
    for c in rep["comparisons"]:
        assert {"metric", "arm", "baseline", "relative_change", "ci95", "paper_claim"} <= set(c)
    assert json.loads((built[0] / "report.json").read_text()) == rep


def test_rate_curves_and_final_rate(built: tuple[Path, dict]) -> None:
    _, rep = built
    for arm in ("uniform", "cosmocore"):
        a = rep["arms"][arm]
        assert a["seeds"] == [0, 1]
        curve = a["hallucination_rate_per_cycle"]
        assert curve["per_seed"] == [RATES[arm, 0], RATES[arm, 1]]
        assert len(curve["mean"]) == CYCLES + 1  # cycle 0 (before training) .. CYCLES
        for c in range(CYCLES + 1):
            pair = [RATES[arm, 0][c], RATES[arm, 1][c]]
            assert curve["mean"][c] == pytest.approx(sum(pair) / 2)
            if pair[0] != pair[1]:
                assert curve["ci95"][c] == pytest.approx(_ci(pair))
    assert rep["arms"]["uniform"]["hallucination_rate_per_cycle"]["mean"] == pytest.approx([1.0, 0.875, 0.75, 0.5])
    # 0.5 +- 12.7 * 0.25 / sqrt(2) runs past both ends of a rate's range
    assert rep["arms"]["cosmocore"]["hallucination_rate_per_cycle"]["ci95"][1] == [0.0, 1.0]
    ent = rep["arms"]["cosmocore"]["entropy_mean"]["ci95"]
    assert ent == pytest.approx(_ci([0.5, 0.6], 0, math.inf))
    assert rep["arms"]["cosmocore"]["final_hallucination_rate"]["per_seed"] == [0.0, 0.0]
    assert rep["arms"]["uniform"]["final_hallucination_rate"]["mean"] == 0.5
    assert rep["arms"]["cosmocore"]["hallucination_rate_change"]["per_seed"] == [-1.0, -0.75]


def test_cycles_to_zero_error_counts_cycles_trained_and_censors(built: tuple[Path, dict]) -> None:
    _, rep = built
    cos = rep["arms"]["cosmocore"]["cycles_to_zero_error"]
    assert cos["per_seed"] == [3, 2] and cos["censored"] == 0 and cos["mean"] == 2.5
    assert cos["ci95"] == pytest.approx(_ci([3, 2], 0, CYCLES)) == [0.0, 3.0]
    uni = rep["arms"]["uniform"]["cycles_to_zero_error"]
    assert uni["per_seed"] == [None, None] and uni["censored"] == 2 and uni["mean"] is None
    assert uni["restricted_mean"] == CYCLES


def test_recurrence_self_correction_and_history_metrics(built: tuple[Path, dict]) -> None:
    _, rep = built
    uni, cos = rep["arms"]["uniform"], rep["arms"]["cosmocore"]
    assert uni["bug_recurrence_rate"]["per_seed"] == pytest.approx([1 / 3, 0.0])
    assert cos["bug_recurrence_rate"]["per_seed"] == pytest.approx([0.0, 1 / 9])
    assert uni["bug_recurrence_rate"]["strict"]["per_seed"] == pytest.approx([1 / 3, 0.0])
    assert uni["self_correction"]["delta_i_to_c"]["per_seed"] == [0.25, 0.5]
    assert uni["self_correction"]["delta_c_to_i"]["per_seed"] == [0.25, 0.0]
    assert cos["self_correction"]["delta_c_to_i"]["per_seed"] == [0.0, 0.25]
    assert cos["buffer_occupancy_max"]["per_seed"] == [14, 16]
    assert cos["buffer_occupancy_per_cycle"]["mean"] == [None, 8.0, 11.0, 15.0]  # indexed by cycle
    assert cos["dream_queue_share"]["mean"] == pytest.approx(0.8)
    assert cos["entropy_mean"]["per_seed"] == pytest.approx([0.5, 0.6])
    assert cos["tagger_valence_auc"]["mean"] == pytest.approx(0.7)  # the NaN cycle is skipped
    assert cos["wall_time_s"]["total"] == 20.0
    assert cos["throughput"]["episodes_per_s"]["mean"] == pytest.approx(4.0)
    by_class = cos["hallucination_rate_by_bug_class"]
    assert by_class["join_key"]["mean"][0] == pytest.approx(0.75)  # (2/2 + 1/2) / 2
    assert cos["hallucination_rate_by_outcome"]["unknown_reference"]["mean"][0] == pytest.approx(0.125)


def test_comparisons_against_uniform(built: tuple[Path, dict]) -> None:
    _, rep = built
    cmp = {(c["metric"], c["arm"]): c for c in rep["comparisons"]}
    assert all(c["baseline"] == "uniform" and c["arm"] == "cosmocore" for c in rep["comparisons"])
    final = cmp["final_hallucination_rate", "cosmocore"]
    assert final["relative_change"] == -1.0 and final["ci95"] == [-1.0, -1.0] and final["paired"]
    assert final["paper_claim"] == -0.48 and final["verdict"] == R.NOT_MEASURABLE  # two seeds: no verdict
    assert "at least 3" in final["reason"]
    # censored uniform seeds count as the budget: (2.5 - 3) / 3; paired bootstrap over two seeds
    ctze = cmp["cycles_to_zero_error", "cosmocore"]
    assert ctze["relative_change"] == pytest.approx(-1 / 6) and "censored" in ctze["note"]
    assert ctze["ci95"] == pytest.approx([-1 / 3, 0.0])
    assert ctze["verdict"] == R.NOT_MEASURABLE
    assert cmp["bug_recurrence_rate", "cosmocore"]["relative_change"] == pytest.approx(-2 / 3)
    assert cmp["buffer_occupancy_max", "cosmocore"]["relative_change"] == pytest.approx(-0.5)
    assert cmp["self_correction.delta_i_to_c", "cosmocore"]["relative_change"] == pytest.approx(-1.0)


def test_paper_claims_cover_arms_that_did_not_run(built: tuple[Path, dict]) -> None:
    _, rep = built
    claims = {(c["metric"], c["arm"]): c for c in rep["paper_claims"]}
    assert len(claims) == len(R.CLAIMS)
    assert claims["buffer_occupancy_max", "no_pruning"]["verdict"] == R.NOT_MEASURABLE
    assert "no_pruning" in claims["buffer_occupancy_max", "no_pruning"]["reason"]
    assert claims["self_correction.delta_i_to_c", "cocos"]["verdict"] == R.NOT_MEASURABLE
    assert rep["definitions"]["cycles_to_zero_error"].startswith("The number of training cycles")


def test_verdict_rules() -> None:
    claim = R.CLAIMS[0]  # -48%
    arms = ["uniform", "cosmocore"]
    base = {"relative_change": -0.5, "note": None, "n_arm": 3, "n_baseline": 3}
    assert R.verdict(claim, {**base, "ci95": [-0.7, -0.3]}, arms)[0] == R.REPRODUCED
    assert R.verdict(claim, {**base, "ci95": [-0.3, -0.1]}, arms)[1].endswith("smaller than the claimed -48%")
    assert R.verdict(claim, {**base, "ci95": [-0.3, 0.1]}, arms)[0] == R.NOT_REPRODUCED
    assert "opposite" in R.verdict(claim, {**base, "ci95": [0.1, 0.3]}, arms)[1]
    assert R.verdict(claim, {**base, "ci95": None}, arms)[0] == R.NOT_MEASURABLE
    assert R.verdict(claim, None, ["cosmocore"])[0] == R.NOT_MEASURABLE
    assert R.verdict(claim, {**base, "ci95": [-0.7, -0.6], "n_arm": 2}, arms)[0] == R.NOT_MEASURABLE


# ------------------------------------------------------------------ the files
def test_html_is_self_contained_and_pngs_are_valid(built: tuple[Path, dict]) -> None:
    run_dir, rep = built
    page = (run_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<script" not in page and "<link" not in page
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert set(rep["plots"]) == {"learning_curves", "hallucination_rate", "cycles_to_zero_error", "recurrence_self_correction",
                                 "buffer_occupancy", "valence_arousal"}
    for rel in rep["plots"].values():
        with Image.open(run_dir / rel) as img:
            assert img.format == "PNG" and img.size[0] > 300
            img.verify()
    md = (run_dir / "report.md").read_text()
    assert "48% fewer hallucinations" in md and "reproduced" in md and "## Definitions" in md
    assert "![hallucination rate per cycle](plots/hallucination_rate.png)" in md


def test_headline_names_each_arm(built: tuple[Path, dict]) -> None:
    text = R.headline(built[1])
    assert "uniform" in text and "cosmocore" in text and "48% fewer hallucinations" in text


def test_pass_at_1_is_the_share_solved_at_the_last_cycle(built: tuple[Path, dict]) -> None:
    run_dir, rep = built
    for arm in ("uniform", "cosmocore"):
        a = rep["arms"][arm]
        per_seed = [1 - RATES[arm, s][-1] for s in (0, 1)]  # greedy eval: one sample per task
        assert a["pass_at_1"]["per_seed"] == pytest.approx(per_seed)
        assert a["pass_at_1"]["mean"] == pytest.approx(sum(per_seed) / 2)
        assert a["pass_at_1_per_cycle"]["per_seed"][0] == pytest.approx([1 - r for r in RATES[arm, 0]])
    assert "pass@1" in (run_dir / "report.md").read_text() and "pass@1" in R.headline(rep)


# ------------------------------------------------------------------ degenerate benches
def test_single_seed_bench_reports_without_intervals(tmp_path: Path) -> None:
    rep = R.build(make_bench(tmp_path / "run", ["uniform", "cosmocore"], [1]))
    cos = rep["arms"]["cosmocore"]
    assert cos["final_hallucination_rate"] == {"per_seed": [0.0], "mean": 0.0, "ci95": None, "n": 1}
    assert cos["cycles_to_zero_error"]["per_seed"] == [2] and cos["cycles_to_zero_error"]["ci95"] is None
    assert all(ci is None for ci in cos["hallucination_rate_per_cycle"]["ci95"])
    final = next(c for c in rep["comparisons"] if c["metric"] == "final_hallucination_rate")
    assert final["relative_change"] == -1.0 and final["ci95"] is None and final["verdict"] == R.NOT_MEASURABLE
    assert "(no CI)" in (tmp_path / "run" / "report.md").read_text()


def test_unfinished_run_is_left_out_and_named(tmp_path: Path) -> None:
    rep = R.build(make_bench(tmp_path / "run", ["uniform", "cosmocore"], [0, 1], unfinished={("cosmocore", 1)}))
    assert rep["runs_finished"] == 3 and rep["runs_total"] == 4
    assert rep["missing_runs"] == [{"arm": "cosmocore", "seed": 1, "run_id": "b-cosmocore-s1", "dir": "runs/cosmocore-s1"}]
    cos = rep["arms"]["cosmocore"]
    assert cos["seeds"] == [0] and cos["final_hallucination_rate"]["per_seed"] == [0.0]
    ctze = next(c for c in rep["comparisons"] if c["metric"] == "cycles_to_zero_error")
    assert not ctze["paired"] and ctze["ci95"] is None  # seeds {0} vs {0, 1}: unpaired, one value on a side
    assert "cosmocore seed 1" in (tmp_path / "run" / "report.md").read_text()


def test_bench_without_baseline_or_finished_runs(tmp_path: Path) -> None:
    rep = R.build(make_bench(tmp_path / "a", ["cosmocore"], [0]))
    assert rep["comparisons"] == [] and all(c["verdict"] == R.NOT_MEASURABLE for c in rep["paper_claims"])
    empty = make_bench(tmp_path / "b", ["uniform", "cosmocore"], [0], unfinished={("uniform", 0), ("cosmocore", 0)})
    rep = R.build(empty)
    assert rep["arms"] == {} and rep["runs_finished"] == 0 and len(rep["missing_runs"]) == 2
    assert all((empty / "plots" / f"{k}.png").exists() for k in rep["plots"])


def test_arm_without_buffer_is_left_out_of_the_buffer_comparison(tmp_path: Path) -> None:
    run_dir = make_bench(tmp_path / "run", ["uniform", "cosmocore"], [0])
    summary = run_dir / "runs/cosmocore-s0/summary.json"
    data = json.loads(summary.read_text())
    for h in data["history"]:
        h["buffer_size"] = 0 if "buffer_size" in h else None
    summary.write_text(json.dumps(data))
    rep = R.build(run_dir)
    assert "buffer_occupancy_max" not in {c["metric"] for c in rep["comparisons"]}


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(R.ReportError, match="no bench.json"):
        R.build(tmp_path)


# ------------------------------------------------------------------ MLflow
def test_mlflow_missing_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from cosmocore.report import mlflow_log

    monkeypatch.setitem(__import__("sys").modules, "mlflow", None)
    with pytest.raises(mlflow_log.MlflowMissing, match=r"pip install 'cosmocore-miniworld\[mlflow\]'"):
        mlflow_log.log_bench(Path("."), {})


@pytest.mark.filterwarnings("default")  # MLflow's own deprecation notices are not ours to fail on
def test_mlflow_logs_parent_children_metrics_and_artifacts(built: tuple[Path, dict], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from cosmocore.report import mlflow_log

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow-skinny has no SQL backend
    run_dir = tmp_path / "run"
    shutil.copytree(built[0], run_dir)
    uri = (tmp_path / "mlruns").as_uri()
    parent_id = mlflow_log.log_bench(run_dir, built[1], tracking_uri=uri)
    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["profile"] == "smoke" and parent.data.params["train.lr"] == "1e-05"
    assert parent.data.tags["delta.version.evaluations"] == str(built[1]["store_versions"]["evaluations"])
    assert parent.data.metrics["cosmocore/final_hallucination_rate"] == 0.0
    assert parent.data.metrics["cosmocore/test_hallucination_rate"] == 0.0
    assert parent.data.tags["claim.cosmocore.hallucination_rate.eval"] == "underpowered"  # two seeds
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"report.json", "report.md", "report.html", "plots"} <= artifacts
    assert len(client.list_artifacts(parent_id, "plots")) == 6
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(r.info.run_name for r in children) == ["cosmocore-s0", "cosmocore-s1", "uniform-s0", "uniform-s1"]
    child = next(r for r in children if r.info.run_name == "cosmocore-s1")
    curve = client.get_metric_history(child.info.run_id, "eval/hallucination_rate")
    assert sorted((m.step, m.value) for m in curve) == list(enumerate(RATES["cosmocore", 1]))
    buffer = client.get_metric_history(child.info.run_id, "buffer_size")
    assert sorted((m.step, m.value) for m in buffer) == [(1, 8.0), (2, 10.0), (3, 16.0)]
    assert child.data.params == {"arm": "cosmocore", "seed": "1", "run_id": "b-cosmocore-s1"}
