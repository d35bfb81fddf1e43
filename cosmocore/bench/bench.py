"""``cosmocore bench``: train every (arm, seed) of a profile into one Delta store, then report.

A run directory holds everything a bench needs to be resumed or re-reported:
  bench.json            the resolved settings (profile + flags); ``--resume RUN_DIR`` continues it
  store/                the Delta tables of all runs (rows keyed by run_id, arm and seed)
  runs/ARM-sSEED/       one trainer's out dir: checkpoint.pt while unfinished, summary.json when done
  warmup/               warm-start weights shared by the arms of one seed (when the trainer caches them)
  report.json/.md/.html, plots/   written at the end (``cosmocore report RUN_DIR`` rewrites them)

(arm, seed) runs go one after another in this process, sharing one Spark server and sandbox, or
in ``jobs`` spawned processes sharing one confined server. A finished run (summary.json) is never
redone; an unfinished one resumes from its last checkpointed cycle.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from cosmocore import atomic
from cosmocore.train.config import ARMS, TrainConfig  # settings only: bad input is refused before torch loads

SCHEMA_VERSION = 1
# What a caller sees while a bench runs: (run key, phase, done, total); phase "cycle" counts
# finished training cycles of that run, the others are the trainer's own phases.
Progress = Callable[[str, str, int, int], None]
# And each finished cycle's history record (cycle 0 = the initial evaluation), for a log line.
OnRecord = Callable[[str, dict], None]


class BenchError(ValueError):
    """Bad bench input (a flag, a profile, a run directory): one line naming it."""


@dataclass(frozen=True)
class Profile:
    """A named set of bench settings; every field can be overridden by a flag."""

    model: str
    suite: str
    arms: tuple[str, ...]
    seeds: int
    cycles: int
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    about: str = ""
    jobs: int = 1  # parallel (arm, seed) processes unless --jobs says otherwise


# The quick and verdict profiles' trainer settings (chosen on dev): the CPU recipe described at "quick".
_CPU_TRAIN: dict[str, Any] = {
    "warmup_sft": 10, "sft_batch": 4, "sft_lr": 3e-4, "train_layers": 8, "lr": 3e-4, "practice_tasks": 12,
    "episodes_per_cycle": 12, "turns": 1, "minibatch": 4, "nocturnal_steps": 2, "correction_steps": 6,
    "rehearsal_pairs": 3, "max_new_tokens": 0, "eval_turns": 1, "correction_coef": 1.0, "fix_weight": 5.0,
    "bf16_autocast": None,
    # correction_steps 3 -> 6 and quick's cycles 3 -> 4 (dev run of seed 0, docs/TUNING.md): practice errors
    # per cycle went 12 10 6 1 0 (uniform) and 12 9 7 2 1 (cosmocore), where 3 steps had left 4-11 after 3 cycles
    # replies up to the longest reference reply of the run's scored tasks + 10% (quick: 197 -> 224 tokens;
    # verdict: 245 -> 272). The fixed 176 of before cut 11 of the quick suite's 30 test tasks and half its
    # train tasks short of their reference: those could never be answered correctly.
    # measured idle on 2 cores (benchmarks/rollout_engine.py): torch/hf 0.86x at batch 16, 1.02x at 48
    "engine": "hf",
    # every prompt of a run comes back (practice each cycle, held-out twice): ~16 MB of lower-block
    # keys and values per prompt, so 40 prompts and the training-side states fit
    "frozen_cache_mb": 3072.0,
}

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "tiny", "smoke", ("uniform", "cosmocore"), 2, 2,
        {"practice_tasks": 4, "episodes_per_cycle": 4, "max_new_tokens": 24, "nocturnal_steps": 2, "minibatch": 4,
         "tagger_epochs": 5},
        "seconds to a couple of minutes: the tiny random model on the smoke suite (used by the tests)"),
    "quick": Profile(
        "smollm2-135m", "quick", ("uniform", "cosmocore"), 3, 4,
        # 2 cores: a 10-step warm start (4 pairs each) of the top 8 blocks on the train split minus
        # the practice set, shared by the arms of a seed (so are cycle 0's scores and cycle 1's
        # day); per cycle each of the 12 practice tasks once (replies up to the longest reference) and a night
        # of 2 PPO steps plus 6 corrective-only steps over 4 replayed failures each, fix tokens
        # weighted 5x, 3 warm-start pairs rehearsed per step; the 12 practice tasks scored every
        # cycle, the 30 test tasks before training and after the last cycle. lr chosen on dev.
        _CPU_TRAIN,
        "the default model on the CPU, 2 arms x 3 seeds x 4 cycles in 2 parallel jobs (goal: under 20 "
        "minutes on a 2-core laptop)", jobs=2),
    "verdict": Profile(
        "smollm2-135m", "verdict", ("uniform", "cosmocore", "cocos"), 5, 4,
        # the quick profile's settings (chosen on dev) on a larger test split (>= 48 tasks), more
        # seeds, and the COCOS baseline
        _CPU_TRAIN,
        "3 arms x 5 seeds x 4 cycles on the verdict suite's >= 48 test tasks, 2 parallel jobs (goal: under "
        "2 hours on 2 cores)", jobs=2),
    "paper": Profile(
        "smollm2-135m", "standard", ARMS, 5, 60,
        {"practice_tasks": 32, "episodes_per_cycle": 32, "max_new_tokens": 384, "nocturnal_steps": 8,
         "minibatch": 16, "warmup_sft": 100, "sft_lr": 1e-4, "eval_every": 10},
        "the paper's protocol: all five arms x 5 seeds x 60 cycles on the standard suite's >= 100 test "
        "tasks, sized for a GPU node"),
}

# Settings the bench owns per run: not accepted as --set overrides.
_OWNED = {"model", "arm", "suite", "cycles", "seed", "store", "out", "run_id", "spark_remote", "device"}


@dataclass
class BenchConfig:
    """The resolved settings of one bench (what bench.json stores)."""

    profile: str
    model: str
    suite: str
    arms: list[str]
    seeds: list[int]
    cycles: int
    train: dict[str, Any]
    target: float = 0.0
    store: str | None = None  # default: RUN_DIR/store
    device: str | None = None
    keep_checkpoints: bool = False
    bench_id: str = ""
    schema_version: int = SCHEMA_VERSION

    def runs(self) -> list[dict]:
        """(arm, seed) runs, seed-major so the arms of a seed share its warm start back to back."""
        return [{"arm": arm, "seed": seed, "run_id": f"{self.bench_id}-{arm}-s{seed}", "dir": f"runs/{arm}-s{seed}"}
                for seed in self.seeds for arm in self.arms]

    def to_json(self) -> dict:
        return {**asdict(self), "runs": self.runs()}


def parse_set(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` trainer overrides, typed by the TrainConfig field they name."""
    types = {f.name: f.type for f in fields(TrainConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise BenchError(f"--set {item!r}: expected KEY=VALUE with KEY a trainer setting "
                             f"(e.g. lr, warmup_sft, episodes_per_cycle)")
        if key in _OWNED:
            raise BenchError(f"--set {item!r}: {key} is a bench flag (use --{key.replace('_', '-')})")
        out[key] = _coerce(item, str(types[key]), raw.strip())
    return out


def _coerce(item: str, typ: str, raw: str) -> Any:
    if raw.lower() in ("none", "null") and "None" in typ:
        return None
    try:
        if typ.startswith("bool"):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if typ.startswith("int"):
            return int(raw)
        if typ.startswith("float"):
            return float(raw)
    except ValueError:
        raise BenchError(f"--set {item!r}: {raw!r} is not a valid {typ.split(' ')[0]}") from None
    return raw


def resolve(profile: str = "quick", *, arms: list[str] | None = None, seeds: int | None = None,
            cycles: int | None = None, model: str | None = None, suite: str | None = None,
            store: str | None = None, target: float = 0.0, device: str | None = None,
            train: dict[str, Any] | None = None, keep_checkpoints: bool = False,
            bench_id: str | None = None) -> BenchConfig:
    """A profile with flags applied, checked (BenchError names the bad input)."""
    if profile not in PROFILES:
        raise BenchError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    p = PROFILES[profile]
    arms = list(arms or p.arms)
    for arm in arms:
        if arm not in ARMS:
            raise BenchError(f"--arms: unknown arm {arm!r} (known: {', '.join(ARMS)})")
    if len(set(arms)) != len(arms):
        raise BenchError(f"--arms lists an arm twice: {','.join(arms)}")
    n_seeds = p.seeds if seeds is None else seeds
    n_cycles = p.cycles if cycles is None else cycles
    if n_seeds < 1:
        raise BenchError(f"--seeds must be >= 1, got {n_seeds}")
    if n_cycles < 1:
        raise BenchError(f"--cycles must be >= 1, got {n_cycles}")
    if not 0.0 <= target < 1.0:
        raise BenchError(f"--target must be in [0, 1), got {target}")
    cfg = BenchConfig(profile=profile, model=model or p.model, suite=suite or p.suite, arms=arms,
                      seeds=list(range(n_seeds)), cycles=n_cycles, train={**p.train, **(train or {})},
                      target=target, store=store, device=device, keep_checkpoints=keep_checkpoints,
                      bench_id=bench_id or f"{profile}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
    train_config(cfg, cfg.runs()[0], Path("."), None)  # the trainer's own checks, before anything runs
    return cfg


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask: a container's or taskset's limit),
    where the OS reports one (not macOS); else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def train_config(cfg: BenchConfig, run: dict, run_dir: Path, spark_remote: str | None) -> TrainConfig:
    """The TrainConfig of one (arm, seed) run of the bench."""
    extra: dict[str, Any] = {}
    if "warmup_cache" in {f.name for f in fields(TrainConfig)} and "warmup_cache" not in cfg.train:
        extra["warmup_cache"] = str(run_dir / "warmup")
    try:
        return TrainConfig(**{**cfg.train, **extra}, model=cfg.model, arm=run["arm"], suite=cfg.suite,
                           cycles=cfg.cycles, seed=run["seed"], store=cfg.store or str(run_dir / "store"),
                           out=str(run_dir / run["dir"]), run_id=run["run_id"], spark_remote=spark_remote,
                           device=cfg.device)
    except (TypeError, ValueError) as exc:
        raise BenchError(str(exc)) from None


# ------------------------------------------------------------------ run directory
def create(cfg: BenchConfig, run_dir: Path) -> None:
    """Start a new run directory (refusing one that already holds a bench)."""
    if (run_dir / "bench.json").exists():
        raise BenchError(f"--out {str(run_dir)!r} already holds a bench: continue it with --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "bench.json", cfg.to_json())


def load(run_dir: Path) -> BenchConfig:
    """The settings of an existing run directory (for --resume and report)."""
    path = run_dir / "bench.json"
    if not path.exists():
        raise BenchError(f"{str(run_dir)!r} is not a bench run directory (no bench.json)")
    try:
        raw = json.loads(path.read_text())
        raw.pop("runs", None)
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"schema_version {raw.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        return BenchConfig(**raw)
    except (ValueError, TypeError) as exc:
        raise BenchError(f"{str(path)!r} is not a readable bench.json: {exc}") from None


def finished(run_dir: Path, run: dict) -> bool:
    return (run_dir / run["dir"] / "summary.json").exists()


def _write_json(path: Path, payload: dict) -> None:
    atomic.write_text(path, json.dumps(payload, indent=2, default=str))


# ------------------------------------------------------------------ one (arm, seed) run
def run_one(cfg: BenchConfig, run: dict, run_dir: Path, progress: Progress, sandbox: Any = None,
            endpoint: Any = None, spark_remote: str | None = None, on_record: OnRecord | None = None) -> dict:
    """Train one (arm, seed) to the cycle budget (resuming its checkpoint) and write its summary."""
    from cosmocore.train.trainer import Trainer
    from miniworld.suites import catalog

    key = f"{run['arm']}-s{run['seed']}"
    tcfg = train_config(cfg, run, run_dir, spark_remote)
    own = sandbox is None
    if own:
        sandbox = catalog.load_suite(cfg.suite).kind.open_sandbox(spark_remote=spark_remote, endpoint=endpoint,
                                                                  workers=tcfg.workers, timeout_s=tcfg.timeout_s)
    started = time.monotonic()
    try:
        trainer = Trainer(tcfg, lambda phase, done, total: progress(key, phase, done, total), sandbox=sandbox)
        trainer.resume()
        progress(key, "cycle", _trained(trainer.history), cfg.cycles)

        def on_cycle(record: dict) -> None:
            progress(key, "cycle", _trained(trainer.history), cfg.cycles)
            if on_record:
                on_record(key, record)

        summary = trainer.train(on_cycle)
    finally:
        if own:
            sandbox.close()
    out = run_dir / run["dir"]
    # cycle records carry their own wall time (the warm start's is apart): summed, a resumed run
    # counts the cycles it did before the interruption too
    summary["wall_s"] = sum(r.get("wall_s", 0.0) + r.get("warmup_s", 0.0) for r in summary["history"]) \
        or time.monotonic() - started
    if not cfg.keep_checkpoints:  # a finished run's weights are GBs on the default model
        summary["checkpoint"] = None
    _write_json(out / "summary.json", summary)  # from here on the run counts as finished
    _drop_checkpoint(cfg, run_dir, run)
    return summary


def _drop_checkpoint(cfg: BenchConfig, run_dir: Path, run: dict) -> None:
    if not cfg.keep_checkpoints:
        (run_dir / run["dir"] / "checkpoint.pt").unlink(missing_ok=True)


def _trained(history: list[dict]) -> int:
    """Training cycles in a history (an initial, pre-training evaluation has no day phase)."""
    return sum("day_reward" in r for r in history)


def _child(cfg_json: dict, run: dict, run_dir: str, endpoint: Any, spark_remote: str | None, events: Any,
           threads: int) -> dict:
    """Entry point of a spawned bench job: one run, progress sent back on a queue."""
    import logging

    import torch

    torch.set_num_threads(threads)  # jobs x threads = cores: oversubscribed, decoding slows down
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg_json = {k: v for k, v in cfg_json.items() if k != "runs"}
    return run_one(BenchConfig(**cfg_json), run, Path(run_dir), lambda *e: events.put(("progress", *e)),
                   endpoint=endpoint, spark_remote=spark_remote,
                   on_record=lambda key, record: events.put(("record", key, record)))


# ------------------------------------------------------------------ the bench
def default_jobs(profile: str) -> int:
    """How many runs a profile trains at once when ``--jobs`` is not given."""
    return PROFILES[profile].jobs if profile in PROFILES else 1


def parallel_order(cfg: BenchConfig, runs: list[dict]) -> list[dict]:
    """Arm-major: the runs a pool starts together are different seeds, not one seed's arms."""
    return sorted(runs, key=lambda r: (cfg.arms.index(r["arm"]), r["seed"]))


def run_bench(cfg: BenchConfig, run_dir: Path, progress: Progress, jobs: int | None = None,
              spark_remote: str | None = None, on_record: OnRecord | None = None) -> list[str]:
    """Every unfinished run of the bench; returns the keys of the runs trained now.

    ``jobs`` (default: the profile's) > 1 trains runs in that many spawned processes, each with
    its share of the CPU threads, arm-major so the jobs running together are different seeds:
    each computes its own seed's warm start, and the later arms load them (a job that does reach
    a seed being warmed up waits on the cache's lock instead of computing it twice)."""
    from miniworld.suites import catalog
    from miniworld.sandbox.server import LocalConnectServer

    jobs = default_jobs(cfg.profile) if jobs is None else jobs
    if jobs < 1:
        raise BenchError(f"--jobs must be >= 1, got {jobs}")
    todo = [r for r in cfg.runs() if not finished(run_dir, r)]
    for r in cfg.runs():
        if finished(run_dir, r):
            _drop_checkpoint(cfg, run_dir, r)  # left behind if a kill came right after the summary
            progress(f"{r['arm']}-s{r['seed']}", "cycle", cfg.cycles, cfg.cycles)
    if not todo:
        return []
    suite = catalog.load_suite(cfg.suite)  # bad suite: fail before any server starts
    if jobs == 1 or len(todo) == 1:
        with suite.kind.open_sandbox(spark_remote=spark_remote) as box:
            catalog.load_tasks(suite, box)  # verify once (cached) before the runs
            for run in todo:
                run_one(cfg, run, run_dir, progress, sandbox=box, spark_remote=spark_remote, on_record=on_record)
        return [f"{r['arm']}-s{r['seed']}" for r in todo]
    server = None if spark_remote or not suite.kind.needs_spark else LocalConnectServer()
    endpoint = server.start() if server else None
    try:
        with suite.kind.open_sandbox(spark_remote=spark_remote, endpoint=endpoint, workers=1) as box:
            catalog.load_tasks(suite, box)  # verify once so the jobs do not race to do it
        ctx = mp.get_context("spawn")  # never fork after torch/deltalake/JVM threads started
        with ctx.Manager() as manager:
            events = manager.Queue()
            stop = threading.Event()
            pump = threading.Thread(target=_pump, args=(events, progress, on_record, stop), daemon=True)
            pump.start()
            try:
                with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                    threads = max(1, usable_cpus() // jobs)
                    futures = [pool.submit(_child, cfg.to_json(), run, str(run_dir), endpoint, spark_remote, events,
                                           threads) for run in parallel_order(cfg, todo)]
                    for fut in as_completed(futures):
                        fut.result()
            finally:
                stop.set()
                pump.join(timeout=5)
    finally:
        if server:
            server.stop()
    return [f"{r['arm']}-s{r['seed']}" for r in todo]


def _pump(events: Any, progress: Progress, on_record: OnRecord | None, stop: threading.Event) -> None:
    """Relay the jobs' events to the callbacks, in this (the parent's) process."""
    while not stop.is_set():
        try:
            kind, *event = events.get(timeout=0.2)
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return
        if kind == "progress":
            progress(*event)
        elif on_record:
            on_record(*event)
