"""Episodes per second through the sandboxed pool vs a naive in-process baseline, in one run.

The mix (fixed, seeded): reference (correct) code, the buggy code, syntax errors, unknown
columns and a few timeouts, over the smoke suite's tasks. The naive baseline is what the
CosmoCore paper's code does: ``exec`` in the trainer's own process on a classic local
SparkSession, building the input DataFrames for every episode, one episode at a time. Both are
scored by the same checks. Prints one JSON object.

    .venv/bin/python benchmarks/env_throughput.py --json [--episodes 120] [--suite smoke]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from miniworld.suites import catalog  # noqa: E402
from miniworld.checks import check_dataset, outcome_of  # noqa: E402
from miniworld.sandbox.spark_sandbox import Sandbox, _gate  # noqa: E402
from miniworld.task import Task  # noqa: E402

TIMEOUT_S = 2.0
TIMEOUT_CODE = "def transform(**inputs):\n    return spark.range(10 ** 12).crossJoin(spark.range(10 ** 9)).groupBy().count()\n"


MIX = {"correct": 40, "buggy": 30, "syntax": 12, "unknown": 12, "timeout": 6}


def mix(tasks: list[Task], n: int, seed: int = 0, weights: dict[str, int] = MIX) -> list[tuple[Task, str, str]]:
    """(task, code, kind) episodes in the proportions of ``weights`` (per 100): by default 40%
    reference, 30% buggy, 12% syntax, 12% unknown column, 6% timeouts."""
    rng = random.Random(seed)
    kinds = [kind for kind, share in weights.items() for _ in range(share)]
    out = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        kind = kinds[(i * 37) % len(kinds)] if i >= 5 else ["correct", "buggy", "syntax", "unknown", "timeout"][i]
        code = {"correct": task.reference_code, "buggy": task.buggy_code,
                "syntax": task.reference_code.replace("def transform", "def transform(", 1),
                "unknown": task.reference_code.replace("'", "'zz_", 1),
                "timeout": TIMEOUT_CODE}[kind]
        out.append((task, code, kind))
    rng.shuffle(out)
    return out


def run_sandbox(episodes, workers: int) -> dict:
    t0 = time.monotonic()
    box = Sandbox(workers=workers, timeout_s=TIMEOUT_S)
    startup = time.monotonic() - t0
    try:
        box.evaluate_many([(t, t.reference_code) for t in {e[0].id: e[0] for e in episodes}.values()])  # register views
        t0 = time.monotonic()
        results = box.evaluate_many([(t, c) for t, c, _ in episodes], TIMEOUT_S)
        wall = time.monotonic() - t0
        probe = [box.evaluate(episodes[0][0], "def transform(**inputs):\n    return spark.range(1)\n").duration_s
                 for _ in range(10)]
    finally:
        box.close()
    return {"wall_s": wall, "startup_s": startup, "outcomes": [r.outcome for r in results],
            "trivial_episode_median_s": statistics.median(probe)}


def run_naive(episodes) -> dict:
    """In-process exec on a classic session, DataFrames created per episode (the paper's way)."""
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    import logging

    # pyspark logs every AnalysisException as JSON on stdout; this script's stdout is its JSON
    logging.getLogger("DataFrameQueryContextLogger").disabled = True
    t0 = time.monotonic()
    spark = (SparkSession.builder.master("local[2]").appName("naive-baseline")
             .config("spark.sql.shuffle.partitions", "1").config("spark.default.parallelism", "1")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.session.timeZone", "UTC").config("spark.sql.adaptive.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.monotonic() - t0
    outcomes = []
    t0 = time.monotonic()
    for task, code, _ in episodes:
        gated = _gate(task, code)
        if gated is not None:
            outcomes.append(gated.outcome)
            continue
        reply = {"status": "ok", "datasets": []}
        scope = {"F": F, "T": T, "Window": Window, "spark": spark}
        group = f"naive-{len(outcomes)}"
        spark.sparkContext.setJobGroup(group, group, interruptOnCancel=True)
        timer = threading.Timer(TIMEOUT_S, lambda g=group: spark.sparkContext.cancelJobGroup(g))
        timer.start()
        try:
            exec(compile(code, "<candidate>", "exec"), scope)  # noqa: S102 - the unsafe baseline
            for ds in task.datasets:
                frames = {a: spark.createDataFrame(ds.inputs[a], schema=task.inputs[a]) for a in task.inputs}
                out = scope["transform"](**frames)
                rows = out.limit(5001).collect()
                reply["datasets"].append({"schema": [[f.name, f.dataType.simpleString()] for f in out.schema.fields],
                                          "rows": [list(r) for r in rows], "truncated": False})
        except Exception as exc:  # noqa: BLE001
            timed_out = not timer.is_alive()
            reply = {"status": "timeout" if timed_out else "error",
                     "error": {"type": type(exc).__name__, "condition": getattr(exc, "getCondition", lambda: None)(),
                               "message": str(exc)[:300], "timed_out": timed_out}}
        finally:
            timer.cancel()
        checks = []
        for ds, exp, actual in zip(task.datasets, task.expected, reply.get("datasets", [])):
            checks += check_dataset(ds.name, exp, _reencode(actual), list(task.keys), task.ordered)
        outcomes.append(outcome_of(reply, checks)[0])
    wall = time.monotonic() - t0
    df = spark.createDataFrame([(i, i % 7) for i in range(100)], "a int, b int").cache()
    df.count()
    lat = []
    for _ in range(15):
        s = time.monotonic()
        df.filter(F.col("b") > 3).groupBy("b").count().collect()
        lat.append(time.monotonic() - s)
    spark.stop()
    return {"wall_s": wall, "startup_s": startup, "outcomes": outcomes, "action_median_s": statistics.median(lat)}


def _reencode(actual: dict) -> dict:
    from miniworld import rows

    if "rows" in actual:
        return {**actual, "rows": rows.encode_rows([tuple(r) for r in actual["rows"]])}
    return actual


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=120)
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()
    suite = catalog.load_suite(args.suite)
    tasks = catalog.load_cached(suite)
    if tasks is None:
        with Sandbox(workers=args.workers) as box:
            tasks = catalog.load_tasks(suite, box)
    episodes = mix(tasks, args.episodes)
    sandboxed = run_sandbox(episodes, args.workers)
    naive = run_naive(episodes)
    agree = sum(a == b for a, b in zip(sandboxed["outcomes"], naive["outcomes"]))
    result = {
        "episodes": len(episodes),
        "workers": args.workers,
        "episodes_per_s": round(len(episodes) / sandboxed["wall_s"], 3),
        "naive_episodes_per_s": round(len(episodes) / naive["wall_s"], 3),
        "ratio": round(naive["wall_s"] / sandboxed["wall_s"], 3),
        "sandbox_startup_s": round(sandboxed["startup_s"], 2),
        "naive_startup_s": round(naive["startup_s"], 2),
        "spark_action_median_s": round(naive["action_median_s"], 4),
        "sandbox_trivial_episode_median_s": round(sandboxed["trivial_episode_median_s"], 4),
        "outcome_agreement": round(agree / len(episodes), 3),
        "outcomes": {o: sandboxed["outcomes"].count(o) for o in sorted(set(sandboxed["outcomes"]))},
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
