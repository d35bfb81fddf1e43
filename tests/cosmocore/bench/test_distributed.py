"""A smoke bench (2 arms x 1 seed x 1 cycle) spread over two torchrun ranks by Spark's real
``TorchDistributor`` (classic local[2] session, ``local_mode=True``, ``use_gpu=False``: there is
no GPU here), the ranks sharing one local Spark Connect server for their sandboxes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cosmocore.bench import bench as b
from cosmocore.bench import distributed as d


@pytest.fixture(scope="module")
def distributed_bench(tmp_path_factory, cache_dir) -> dict:
    from pyspark.sql import SparkSession

    run_dir = tmp_path_factory.mktemp("distributed") / "smoke"
    cfg = b.resolve("smoke", seeds=1, cycles=1)
    b.create(cfg, run_dir)
    had_session = SparkSession.getActiveSession() is not None
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    try:
        results = d.distribute_bench(run_dir, num_processes=2, use_gpu=False, spark=spark)
        summaries = {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("runs/*/summary.json")}
        again = d.distribute_bench(run_dir, num_processes=2, use_gpu=False, spark=spark)
    finally:
        if not had_session:
            spark.stop()
    return {"dir": run_dir, "cfg": cfg, "results": results, "summaries": summaries, "again": again}


@pytest.mark.slow
def test_two_ranks_train_disjoint_shares_covering_every_run(distributed_bench) -> None:
    results = distributed_bench["results"]
    cfg = distributed_bench["cfg"]
    assert [r["rank"] for r in results] == [0, 1] and {r["world_size"] for r in results} == {2}
    assert {r["device"] for r in results} == {"cpu"}
    pids = {r["pid"] for r in results}
    assert len(pids) == 2 and os.getpid() not in pids, "the ranks did not run in their own processes"
    keys = [k for r in results for k in r["runs"]]
    assert sorted(keys) == sorted(f"{run['arm']}-s{run['seed']}" for run in cfg.runs())
    assert len(keys) == len(set(keys)), "a run was trained by two ranks"
    assert all(r["runs"] for r in results), "a rank got no run"


@pytest.mark.slow
def test_every_run_finished_once_in_one_store(distributed_bench) -> None:
    from deltalake import DeltaTable

    run_dir, cfg = distributed_bench["dir"], distributed_bench["cfg"]
    episodes = DeltaTable(str(run_dir / "store" / "episodes")).to_pyarrow_table(
        columns=["episode_id", "run_id", "cycle"]).to_pylist()
    ids = [e["episode_id"] for e in episodes]
    assert len(ids) == len(set(ids)), "duplicated episode rows"
    for run in cfg.runs():
        summary = json.loads((run_dir / run["dir"] / "summary.json").read_text())
        assert summary["cycles_completed"] == cfg.cycles
        assert not (run_dir / run["dir"] / "checkpoint.pt").exists()
        assert len({e["cycle"] for e in episodes if e["run_id"] == run["run_id"]}) == cfg.cycles


@pytest.mark.slow
def test_rank_zero_wrote_the_report(distributed_bench) -> None:
    run_dir, cfg = distributed_bench["dir"], distributed_bench["cfg"]
    results = distributed_bench["results"]
    assert results[0]["report"] == str(run_dir.resolve() / "report.json") and results[1]["report"] is None
    rep = json.loads((run_dir / "report.json").read_text())
    assert sorted(rep["arms"]) == sorted(cfg.arms) and rep["cycles"] == cfg.cycles
    assert (run_dir / "report.html").stat().st_size > 0


@pytest.mark.slow
def test_a_finished_bench_is_not_redone(distributed_bench) -> None:
    run_dir = distributed_bench["dir"]
    assert distributed_bench["again"] == []
    after = {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("runs/*/summary.json")}
    assert after == distributed_bench["summaries"]


@pytest.mark.slow
def test_plain_torchrun_entry_on_a_finished_bench(distributed_bench) -> None:
    """The same rank body under ``torchrun`` without Spark's scheduler: nothing is left to train,
    so the ranks only agree on that (gloo), rewrite the report and print the gathered results."""
    run_dir = distributed_bench["dir"]
    before = (run_dir / "report.json").stat().st_mtime_ns
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "cosmocore.bench.distributed", str(run_dir)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["rank"] for r in results] == [0, 1] and all(r["runs"] == [] for r in results)
    assert (run_dir / "report.json").stat().st_mtime_ns > before
    after = {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("runs/*/summary.json")}
    assert after == distributed_bench["summaries"]


@pytest.mark.parametrize("n_runs,world", [(1, 2), (4, 2), (5, 3), (25, 8)])
def test_round_robin_shares_cover_each_run_exactly_once(n_runs: int, world: int) -> None:
    runs = [{"run_id": str(i)} for i in range(n_runs)]
    shares = [d.share(runs, rank, world) for rank in range(world)]
    assert sorted(r["run_id"] for s in shares for r in s) == sorted(r["run_id"] for r in runs)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_rank_device_without_a_real_gpu() -> None:
    """GPU counts are passed in: no GPU exists here, so the CUDA branch is checked on numbers."""
    assert d.rank_device(0, None, 0) is None and d.rank_device(1, "cpu", 4) == "cpu"
    assert d.rank_device(1, None, 4) == "cuda:1" and d.rank_device(5, "cuda", 4) == "cuda:1"
    assert d.rank_device(0, "cuda:3", 4) == "cuda:3"


def test_rank_outside_torchrun_is_refused() -> None:
    with pytest.raises(d.DistributedError, match="RANK"):
        d.Rank.from_env({"WORLD_SIZE": "2"})
    assert d.Rank.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}) == d.Rank(1, 2, 0)
