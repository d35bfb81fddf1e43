"""``cosmocore bench`` end to end on the smoke profile: real Spark, real Delta tables, the tiny
transformer. One bench is started, killed with SIGKILL after its first (arm, seed) run finished,
and resumed; the other tests read the run directory it leaves."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cosmocore.bench import bench as b

ROOT = Path(__file__).resolve().parents[3]


def _cli(*args: str, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmocore.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the Spark server runs in its own session, so a kill of the
    bench's process group would not reach it)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory, cache_dir, smoke_tasks) -> dict:
    run_dir = tmp_path_factory.mktemp("bench") / "smoke"
    env = {**os.environ, "COSMOCORE_CACHE": str(cache_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "cosmocore.cli", "bench", "--profile", "smoke", "--out",
                             str(run_dir)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = run_dir / "runs" / "uniform-s0" / "summary.json"
    deadline = time.monotonic() + 600
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert first.exists(), proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "first run never finished"
    second = run_dir / "runs" / "cosmocore-s0" / "checkpoint.pt"
    while not second.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # kill the second run part-way: after a checkpointed cycle
    victims = [proc.pid] + _descendants(proc.pid)
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    killed_mtime = first.stat().st_mtime_ns
    finished_before = sorted(p.parent.name for p in run_dir.glob("runs/*/summary.json"))
    resumed = _cli("bench", "--resume", str(run_dir), "--json", "--mlflow", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"dir": run_dir, "env": env, "payload": json.loads(resumed.stdout), "first": first,
            "killed_mtime": killed_mtime, "finished_before": finished_before, "stderr": resumed.stderr}


@pytest.mark.slow
def test_killed_bench_resumes_without_redoing_finished_runs(bench_dir) -> None:
    from cosmocore.memory.store import Store

    run_dir = bench_dir["dir"]
    assert bench_dir["finished_before"] == ["uniform-s0"]
    assert bench_dir["first"].stat().st_mtime_ns == bench_dir["killed_mtime"], "a finished run was redone"
    cfg = b.load(run_dir)
    assert [r["dir"] for r in cfg.runs()] == ["runs/uniform-s0", "runs/cosmocore-s0", "runs/uniform-s1", "runs/cosmocore-s1"]
    store = Store.open(str(run_dir / "store"))
    episodes = store.read_episodes(columns=["episode_id", "run_id", "cycle"]).to_pylist()
    ids = [e["episode_id"] for e in episodes]
    assert len(ids) == len(set(ids)), "a resumed run duplicated episodes"
    for run in cfg.runs():
        summary = json.loads((run_dir / run["dir"] / "summary.json").read_text())
        assert summary["cycles_completed"] == cfg.cycles
        assert summary["checkpoint"] is None and not (run_dir / run["dir"] / "checkpoint.pt").exists()
        cycles = {e["cycle"] for e in episodes if e["run_id"] == run["run_id"]}
        assert len(cycles) == cfg.cycles, (run["run_id"], cycles)
    evals = store.read_evaluations(columns=["eval_id"]).to_pylist()
    assert len(evals) == len({e["eval_id"] for e in evals})


@pytest.mark.slow
def test_bench_prints_where_the_report_is(bench_dir) -> None:
    payload = bench_dir["payload"]
    run_dir = bench_dir["dir"]
    assert Path(payload["report"]) == run_dir / "report.html"
    for name in ("report.json", "report.md", "report.html"):
        assert (run_dir / name).stat().st_size > 0


@pytest.mark.slow
def test_bench_bad_input_is_one_line_and_exit_2(tmp_path, bench_dir) -> None:
    env = bench_dir["env"]
    cases = [(["--profile", "nope"], "unknown profile"), (["--arms", "uniform,bogus"], "bogus"),
             (["--seeds", "0"], "--seeds"), (["--set", "lr=fast"], "lr=fast"), (["--set", "nope=1"], "nope=1"),
             (["--resume", str(tmp_path / "missing")], "missing"),
             (["--resume", str(bench_dir["dir"]), "--cycles", "9"], "--cycles"),
             (["--out", str(bench_dir["dir"])], "--resume")]
    # all at once: each is a fresh interpreter that fails before a model or Spark loads
    procs = [(args, needle, subprocess.Popen([sys.executable, "-m", "cosmocore.cli", "bench", *args], cwd=ROOT, env=env,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for args, needle in cases]
    for args, needle, proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, (args, stderr)
        assert needle in stderr and len(stderr.strip().splitlines()) == 1, (args, stderr)


def test_flags_override_profile_fields() -> None:
    cfg = b.resolve("smoke", arms=["cocos"], seeds=3, cycles=5, train=b.parse_set(["lr=2e-5", "turns=1"]))
    assert cfg.arms == ["cocos"] and cfg.seeds == [0, 1, 2] and cfg.cycles == 5
    assert cfg.train["lr"] == 2e-5 and cfg.train["turns"] == 1
    assert cfg.train["episodes_per_cycle"] == b.PROFILES["smoke"].train["episodes_per_cycle"]
    assert b.resolve("paper").arms == list(b.PROFILES["paper"].arms) and len(b.resolve("paper").seeds) == 5
    with pytest.raises(b.BenchError, match="model"):
        b.parse_set(["model=x"])


@pytest.mark.slow
def test_report_numbers_recompute_from_the_evaluations_table(bench_dir) -> None:
    """Per-cycle and final hallucination rates redone here from the raw Delta table (delta-rs,
    no cosmocore code) must equal the report's."""
    from deltalake import DeltaTable

    run_dir = bench_dir["dir"]
    rep = json.loads((run_dir / "report.json").read_text())
    rows = DeltaTable(str(run_dir / "store" / "evaluations")).to_pyarrow_table().to_pylist()
    cfg = b.load(run_dir)
    assert rep["schema_version"] == 1 and rep["seeds"] == cfg.seeds and rep["cycles"] == cfg.cycles
    for arm in cfg.arms:
        curves = []
        for seed in cfg.seeds:
            mine = [r for r in rows if r["arm"] == arm and r["seed"] == seed and r["turn"] == 1]
            practice = {r["cycle"] for r in mine if r["split"] == "practice"}
            assert practice == set(range(cfg.cycles + 1)), practice  # every cycle, cycle 0 before any training
            test = [r for r in mine if r["split"] == "test"]
            assert {r["cycle"] for r in test} == {0, cfg.cycles}  # the held-out split: before and after
            curves.append([sum(r["outcome"] != "correct" for r in test if r["cycle"] == c) /
                           sum(r["cycle"] == c for r in test) if c in (0, cfg.cycles) else None
                           for c in range(cfg.cycles + 1)])
        got = rep["arms"][arm]
        assert got["final_hallucination_rate"]["per_seed"] == pytest.approx([c[-1] for c in curves])
        means = got["hallucination_rate_per_cycle"]["mean"]
        assert [means[0], means[-1]] == pytest.approx([sum(c[i] for c in curves) / len(curves) for i in (0, -1)])
        zero = [next((i for i, x in enumerate(c) if x is not None and x <= cfg.target), None) for c in curves]
        assert got["cycles_to_zero_error"]["per_seed"] == zero
        assert got["cycles_to_zero_error"]["censored"] == sum(z is None for z in zero)
    assert {"metric", "arm", "baseline", "relative_change", "ci95", "paper_claim"} <= rep["comparisons"][0].keys()


@pytest.mark.slow
def test_two_seeds_give_different_per_seed_numbers(bench_dir) -> None:
    from deltalake import DeltaTable

    run_dir = bench_dir["dir"]
    rep = json.loads((run_dir / "report.json").read_text())
    for arm in ("uniform", "cosmocore"):
        entropy = rep["arms"][arm]["entropy_mean"]["per_seed"]
        assert len(entropy) == 2 and entropy[0] != entropy[1], entropy
    episodes = DeltaTable(str(run_dir / "store" / "episodes")).to_pyarrow_table(columns=["seed", "task_id", "completion"])
    by_seed = {s: [(r["task_id"], r["completion"]) for r in episodes.to_pylist() if r["seed"] == s] for s in (0, 1)}
    assert by_seed[0] and by_seed[1] and by_seed[0] != by_seed[1]


@pytest.mark.slow
def test_bench_logs_to_mlflow_when_asked(bench_dir) -> None:
    from cosmocore.report import mlflow_log

    mlflow = mlflow_log.require()
    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_log.default_tracking_uri(bench_dir["dir"]))
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4, [r.data.tags for r in runs]


@pytest.mark.slow
def test_parallel_jobs_share_one_server(tmp_path, bench_dir) -> None:
    """--jobs 2: two (arm, seed) runs in spawned processes against one confined Spark server."""
    out = _cli("bench", "--profile", "smoke", "--seeds", "1", "--cycles", "1", "--jobs", "2", "--out",
               str(tmp_path / "par"), "--json", env=bench_dir["env"])
    assert out.returncode == 0, out.stderr[-3000:]
    rep = json.loads((tmp_path / "par" / "report.json").read_text())
    assert sorted(rep["arms"]) == ["cosmocore", "uniform"]
    cached = []
    for arm in ("uniform", "cosmocore"):
        summary = json.loads((tmp_path / "par" / "runs" / f"{arm}-s0" / "summary.json").read_text())
        assert summary["cycles_completed"] == 1 and summary["episodes"] > 0
        cached.append(summary["history"][0].get("eval_cached", False))
    # the two jobs are the arms of one seed, started together: the cache's lock makes one wait for
    # the other's cycle-0 evaluation and load it, instead of both decoding it
    assert sorted(cached) == [False, True]


def test_quick_profile_runs_two_jobs_arm_major() -> None:
    assert b.default_jobs("quick") == 2 and b.default_jobs("smoke") == 1
    cfg = b.resolve("quick", bench_id="t")
    order = [(r["arm"], r["seed"]) for r in b.parallel_order(cfg, cfg.runs())]
    assert order == [("uniform", 0), ("uniform", 1), ("uniform", 2), ("cosmocore", 0), ("cosmocore", 1),
                     ("cosmocore", 2)]
    # threads per job come from the cores this process may use (its affinity), not the machine's
    assert 1 <= b.usable_cpus() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert b.usable_cpus() == len(os.sched_getaffinity(0))
