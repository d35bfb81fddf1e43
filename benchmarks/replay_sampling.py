"""Replay sampling throughput: CosmoCore's buffer vs cpprb vs naive numpy, side by side.

Each sampler holds ``capacity`` entries and repeats "draw a prioritised minibatch of ``batch``,
then write back new priorities for the drawn entries" for ``--seconds`` of wall time; the
figure is drawn entries per second. The TD errors written back are seeded synthetic inputs
(the workload), the throughputs are measured. Floor from issue 3: at least cpprb's figure and
10x the naive one.

    python benchmarks/replay_sampling.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cosmocore.memory.buffer import ReplayBuffer  # noqa: E402
from cosmocore.memory.config import BufferConfig  # noqa: E402


def _rate(step: Callable[[], None], batch: int, seconds: float) -> float:
    """Drawn entries per second over at least ``seconds`` (after one warm-up step)."""
    step()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n * batch / elapsed


def bench(capacity: int, batch: int, seconds: float, seed: int, rounds: int = 3) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    cfg = BufferConfig(capacity=capacity)
    td0 = rng.exponential(1.0, capacity)
    val0 = rng.uniform(-1, 1, capacity)
    aro0 = rng.uniform(0, 1, capacity)
    new_td = rng.exponential(1.0, (64, batch))  # cycled write-back values

    # -- CosmoCore buffer: PER sample (Dream Queue at 5x) + priority update ----------------------
    buf = ReplayBuffer(cfg, seed=seed)
    t0 = time.perf_counter()
    buf.add([f"ep-{i:08d}" for i in range(capacity)], td0, val0, aro0, np.zeros(capacity))
    add_s = time.perf_counter() - t0
    k = [0]

    def ours() -> None:
        b = buf.sample(batch)
        buf.update_priorities(b, new_td[k[0] % 64])
        k[0] += 1

    def ours_nocturnal() -> None:
        b = buf.sample_nocturnal(batch)
        buf.update_priorities(b, new_td[k[0] % 64])
        k[0] += 1

    # -- naive: numpy.random.choice(p=...) over the whole priority vector ---------------------
    pri = np.abs(td0) + cfg.lam * np.abs(val0) * aro0

    def naive() -> None:
        w = pri**cfg.alpha
        idx = rng.choice(capacity, batch, p=w / w.sum())
        _ = (capacity * w[idx] / w.sum()) ** -cfg.beta0  # IS weights, as the others compute
        pri[idx] = new_td[k[0] % 64]
        k[0] += 1

    # -- cpprb: C++ sum tree inside PrioritizedReplayBuffer -------------------------------------
    cpprb_rate: float | None = None
    cpprb_version: str | None = None
    try:
        import cpprb
        from importlib.metadata import version

        cpprb_version = version("cpprb")
        rb = cpprb.PrioritizedReplayBuffer(capacity, {"slot": {"dtype": np.int64}}, alpha=cfg.alpha)
        for s in range(0, capacity, 100_000):
            e = min(capacity, s + 100_000)
            rb.add(slot=np.arange(s, e), priorities=pri[s:e])

        def cp() -> None:
            b = rb.sample(batch, beta=cfg.beta0)
            rb.update_priorities(b["indexes"], new_td[k[0] % 64])
            k[0] += 1

        cpprb_rate = 0.0  # measured below, interleaved with the others
    except ImportError:
        pass

    # Interleave the samplers over rounds and keep each one's median round, so a burst of load
    # from other processes on a shared machine does not favour whichever ran at a quiet moment.
    steps = {"ours": ours, "nocturnal": ours_nocturnal, "naive": naive}
    if cpprb_rate is not None:
        steps["cpprb"] = cp
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            rates[name].append(_rate(step, batch, seconds / rounds))
    med = {name: float(np.median(r)) for name, r in rates.items()}
    ours_rate, noct_rate, naive_rate = med["ours"], med["nocturnal"], med["naive"]
    cpprb_rate = med.get("cpprb")
    return {
        "capacity": capacity,
        "batch": batch,
        "samples_per_s": round(ours_rate),
        "nocturnal_samples_per_s": round(noct_rate),
        "naive_samples_per_s": round(naive_rate),
        "cpprb_samples_per_s": None if cpprb_rate is None else round(cpprb_rate),
        "speedup_vs_naive": round(ours_rate / naive_rate, 2),
        "speedup_vs_cpprb": None if cpprb_rate is None else round(ours_rate / cpprb_rate, 3),
        "bytes_per_entry": round(buf.memory_bytes() / capacity, 1),
        "fill_entries_per_s": round(capacity / add_s),
        "measure": "sample + priority update, drawn entries per second, wall clock",
        "seconds_per_sampler": seconds,
        "rounds": rounds,
        "cpprb_version": cpprb_version,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capacity", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=3.0, help="wall time per sampler")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median round is reported")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    result = bench(args.capacity, args.batch, args.seconds, args.seed, args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        for key, val in result.items():
            print(f"{key:>26}: {val}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
