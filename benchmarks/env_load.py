"""Sustained load: many episodes through one sandbox pool, with memory and latency per window.

Runs ``--episodes`` (default 10,000) scored episodes (the env_throughput mix: reference, buggy,
syntax error, unknown column, and a few timeouts) through one ``Sandbox`` in windows of
``--window`` episodes. After each window it reads the resident memory of this process (the
trainer's side: pool, scoring), of the live workers and of the Spark Connect server, plus this
process's open file descriptors and threads, and the window's latency percentiles. The baseline
is the first window of the same run: the JSON gives last/first ratios and the memory slope over
the second half (MiB per 1,000 episodes), which is ~0 when nothing leaks.

    .venv/bin/python benchmarks/env_load.py --json [--episodes 10000] [--window 500]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.env_throughput import mix  # noqa: E402
from miniworld.suites import catalog  # noqa: E402
from miniworld.sandbox.spark_sandbox import Sandbox  # noqa: E402

TIMEOUT_S = 5.0
#: Fewer deliberate timeouts than the throughput mix: each holds a worker for the whole deadline,
#: and a load test is about what thousands of ordinary episodes do to memory and latency.
LOAD_MIX = {"correct": 45, "buggy": 35, "syntax": 10, "unknown": 9, "timeout": 1}


def rss_mib(pid: int | None) -> float | None:
    """Resident set size of a process from /proc (None once it is gone)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def sample(box: Sandbox) -> dict:
    workers = [m for m in (rss_mib(p) for p in box.pool.pids()) if m is not None]
    return {"trainer_rss_mib": rss_mib(os.getpid()), "server_rss_mib": rss_mib(box.server_pid),
            "worker_rss_mib_max": max(workers) if workers else None,
            "worker_rss_mib_sum": sum(workers) if workers else None,
            "open_fds": len(os.listdir("/proc/self/fd")), "threads": len(os.listdir("/proc/self/task"))}


def slope_per_1000(xs: list[int], ys: list[float | None]) -> float | None:
    """Least-squares slope of ys against xs, in units per 1,000 episodes (second half only:
    the first windows include JIT warm-up and caches filling, which are not leaks)."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    pts = pts[len(pts) // 2:]
    if len(pts) < 3:
        return None
    x, y = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
    return float(np.polyfit(x, y, 1)[0] * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--json", action="store_true", help="print only the JSON object on stdout")
    args = parser.parse_args()
    if args.episodes < 2 * args.window or args.window < 1:
        parser.error("--episodes must be at least two --window's worth")
    suite = catalog.load_suite(args.suite)
    console = Console(stderr=True)
    started = time.monotonic()
    with Sandbox(workers=args.workers, timeout_s=TIMEOUT_S) as box:
        tasks = catalog.load_tasks(suite, box)
        episodes = mix(tasks, args.episodes, seed=1, weights=LOAD_MIX)
        windows: list[dict] = []
        outcomes: dict[str, int] = {}
        done = 0
        columns = (TextColumn("load"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
            job = bar.add_task("episodes", total=len(episodes))
            for start in range(0, len(episodes), args.window):
                chunk = episodes[start:start + args.window]
                t0 = time.monotonic()
                results = box.evaluate_many([(t, c) for t, c, _ in chunk], TIMEOUT_S)
                wall = time.monotonic() - t0
                done += len(chunk)
                lat = sorted(r.duration_s for r in results if r.outcome != "timeout")
                for r in results:
                    outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
                windows.append({"episodes": done, "episodes_per_s": round(len(chunk) / wall, 2),
                                "latency_p50_s": round(statistics.median(lat), 4),
                                "latency_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 4),
                                "replaced_workers": box.pool.replaced, **sample(box)})
                bar.update(job, completed=done)
                if not console.is_terminal:  # a log file gets one line per window instead of a bar
                    w = windows[-1]
                    console.print(f"{done}/{len(episodes)} episodes, {w['episodes_per_s']}/s, p50 "
                                  f"{w['latency_p50_s']}s, server {w['server_rss_mib']:.0f} MiB, "
                                  f"trainer {w['trainer_rss_mib']:.0f} MiB", highlight=False)
    xs = [w["episodes"] for w in windows]
    first, last = windows[0], windows[-1]

    def ratio(key: str) -> float | None:
        return round(last[key] / first[key], 3) if first.get(key) and last.get(key) else None

    memory = ("trainer_rss_mib", "server_rss_mib", "worker_rss_mib_max")
    result = {
        "episodes": done, "window": args.window, "workers": args.workers, "suite": args.suite,
        "wall_s": round(time.monotonic() - started, 1),
        "episodes_per_s": round(done / sum(len(episodes[i:i + args.window]) / w["episodes_per_s"]
                                           for i, w in zip(range(0, done, args.window), windows)), 2),
        "outcomes": outcomes, "replaced_workers": last["replaced_workers"],
        "last_over_first": {k: ratio(k) for k in (*memory, "latency_p50_s", "latency_p95_s", "open_fds", "threads")},
        "slope_mib_per_1000_episodes": {k: slope_per_1000(xs, [w[k] for w in windows]) for k in memory},
        "first_window": first, "last_window": last, "windows": windows,
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
