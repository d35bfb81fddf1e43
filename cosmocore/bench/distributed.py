"""A bench's (arm, seed) runs spread over GPUs or processes by Spark's ``TorchDistributor``.

What "distributed" means here: whole runs go to different ranks (one GPU each when there are
GPUs), the way ``cosmocore bench --jobs N`` spreads them over processes. One run's PPO step is
*not* data-parallel: every run still trains its policy on one device. Making one run span GPUs
would mean wrapping the policy and value head in DDP (``accelerate.Accelerator.prepare``) in the
nocturnal phase and sharding its minibatches, which this module does not do.

Launching is left to an existing engine rather than a home-made one: ``TorchDistributor``
(``local_mode=True``: ``torchrun --standalone`` on the driver, one rank per process) runs
:func:`bench_rank` in every rank; plain ``torchrun ... -m cosmocore.bench.distributed RUN_DIR`` runs the
same function without Spark's scheduler. Each rank trains its share through :func:`bench.run_one`,
so checkpoints, resume and "a finished run is never redone" behave exactly as in
``cosmocore bench``; rank 0 writes the report once every rank is done.

Sandboxes: all ranks' workers use ONE Spark Connect server (the confined local one started by
:func:`distribute_bench`, or ``--spark-remote``), as ``run_bench(jobs>1)`` does.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmocore.bench import bench

log = logging.getLogger(__name__)

#: How long a rank that finished its share waits for the slowest one at the final barrier. A
#: share is hours of training on the paper profile; the default (30 min) would fail the bench.
BARRIER_TIMEOUT = dt.timedelta(days=7)


class DistributedError(RuntimeError):
    """The distributed bench cannot start (not under torchrun, no Spark session): one line."""


@dataclass(frozen=True)
class Rank:
    """Where this process sits in the torchrun job (the variables torchrun sets)."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls, env: Any = None) -> Rank:
        env = os.environ if env is None else env
        missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k not in env]
        if missing:
            raise DistributedError(f"{', '.join(missing)} not set: bench_rank runs under torchrun or "
                                   "TorchDistributor, which set them")
        return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]))


def share(todo: list[dict], rank: int, world_size: int) -> list[dict]:
    """This rank's runs: round-robin over the bench's run order, so shares differ by at most one
    run and every run lands on exactly one rank."""
    return todo[rank::world_size]


def rank_device(local_rank: int, configured: str | None, cuda_count: int) -> str | None:
    """The device for a rank's runs: ``cuda:LOCAL_RANK`` (wrapped round the visible GPUs) when
    the bench asks for no specific device, or only for ``cuda``, and GPUs exist; otherwise the
    bench's own setting (None = the trainer's default, the CPU here)."""
    if cuda_count > 0 and configured in (None, "cuda"):
        return f"cuda:{local_rank % cuda_count}"
    return configured


def bench_rank(run_dir: str, endpoint: Any = None, spark_remote: str | None = None) -> list[dict]:
    """The body of one torchrun rank: train this rank's share of the unfinished runs, wait for
    the others, and (rank 0) write the report. Returns every rank's result, the same list on
    every rank: TorchDistributor keeps whichever rank's return value is written last."""
    import torch
    import torch.distributed as dist

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    me = Rank.from_env()
    path = Path(run_dir)
    cfg = bench.load(path)
    # gloo even on GPUs: the only traffic is a barrier and a few Python objects, which gloo
    # carries without binding ranks to devices or NCCL's watchdog timeouts
    dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    try:
        # rank 0 decides what is unfinished, before anyone trains: a rank that looked later would
        # see a run another rank just finished and shift the round-robin under everyone's feet
        todo: list[Any] = [[r for r in cfg.runs() if not bench.finished(path, r)]]
        dist.broadcast_object_list(todo, src=0)
        mine = share(todo[0], me.rank, me.world_size)
        device = rank_device(me.local_rank, cfg.device, torch.cuda.device_count())
        rank_cfg = dataclasses.replace(cfg, device=device)

        shown: dict[str, int] = {}

        def progress(key: str, phase: str, done: int, total: int) -> None:
            if phase == "cycle" and shown.get(key) != done:  # torchrun relays it to the driver
                shown[key] = done
                log.warning("rank %d: %s cycle %d/%d", me.rank, key, done, total)

        for run in mine:
            bench.run_one(rank_cfg, run, path, progress, endpoint=endpoint, spark_remote=spark_remote)
        dist.barrier()  # every share finished (or a failed rank made torchrun stop the job)
        report = None
        if me.rank == 0:
            from cosmocore.report import report as reporting

            reporting.build(path)
            report = str(path / "report.json")
        result = {"rank": me.rank, "world_size": me.world_size, "pid": os.getpid(), "device": device or "cpu",
                  "runs": [f"{r['arm']}-s{r['seed']}" for r in mine], "report": report}
        gathered: list[Any] = [None] * me.world_size
        dist.all_gather_object(gathered, result)
        return gathered
    finally:
        dist.destroy_process_group()


def distribute_bench(run_dir: str | Path, num_processes: int, use_gpu: bool | None = None, spark: Any = None,
                     spark_remote: str | None = None) -> list[dict]:
    """Train a bench's unfinished runs over ``num_processes`` ranks on this (driver) node with
    ``TorchDistributor(local_mode=True)`` and return each rank's result.

    ``run_dir`` holds a bench made by ``cosmocore bench`` or :func:`bench.create`. TorchDistributor
    schedules through the *active* SparkSession (``spark`` when given should be that one); with
    none active a small local one is created for it and stopped afterwards. ``use_gpu`` (default:
    whether that session declares driver GPUs, ``spark.driver.resource.gpu.amount``) only tells
    Spark to hand GPUs out: ranks use ``cuda:LOCAL_RANK`` whenever CUDA is present either way.
    """
    from pyspark.ml.torch.distributor import TorchDistributor
    from pyspark.sql import SparkSession

    from miniworld.suites import catalog
    from miniworld.sandbox.server import LocalConnectServer

    path = Path(run_dir).resolve()
    cfg = bench.load(path)
    if num_processes < 1:
        raise bench.BenchError(f"num_processes must be >= 1, got {num_processes}")
    todo = [r for r in cfg.runs() if not bench.finished(path, r)]
    if not todo:
        from cosmocore.report import report as reporting

        reporting.build(path)
        return []
    suite = catalog.load_suite(cfg.suite)
    session = spark if spark is not None else SparkSession.getActiveSession()
    own_session = session is None
    if session is None:  # TorchDistributor only reads its conf: one core is plenty
        session = (SparkSession.builder.master("local[1]").appName("cosmocore-distributor")
                   .config("spark.ui.enabled", "false").getOrCreate())
    if use_gpu is None:
        use_gpu = int(session.conf.get("spark.driver.resource.gpu.amount", "0") or 0) > 0
    server = None if spark_remote or not suite.kind.needs_spark else LocalConnectServer()
    try:
        endpoint = server.start() if server else None
        with suite.kind.open_sandbox(spark_remote=spark_remote, endpoint=endpoint, workers=1) as box:
            catalog.load_tasks(suite, box)  # verify once, so the ranks do not race to do it
        distributor = TorchDistributor(num_processes=min(num_processes, len(todo)), local_mode=True,
                                       use_gpu=use_gpu)
        return distributor.run(bench_rank, str(path), endpoint, spark_remote)
    finally:
        if server:
            server.stop()
        if own_session:
            session.stop()


def main(argv: list[str] | None = None) -> None:
    """``torchrun --nproc_per_node N -m cosmocore.bench.distributed RUN_DIR [--spark-remote URL]``:
    the rank body without Spark's scheduler (each rank then starts its own local Spark server
    unless ``--spark-remote`` names a shared one)."""
    parser = argparse.ArgumentParser(prog="python -m cosmocore.bench.distributed", description=main.__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--spark-remote", default=None)
    args = parser.parse_args(argv)
    results = bench_rank(args.run_dir, spark_remote=args.spark_remote)
    if Rank.from_env().rank == 0:
        import json

        print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
