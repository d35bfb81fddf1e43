"""Seconds per nocturnal update with the frozen lower blocks' cache vs without, in one run.

Two copies of the same weights, the top ``--train-layers`` blocks trainable (the quick
profile's 8), one keeping the frozen lower blocks' output per sequence (``FrozenPrefix``,
``TrainConfig.frozen_cache_mb``), one without. Each runs one PPO step of ``Trainer.night``
(``Trainer._loss``: the train-mode policy pass and the reference pass, then ``Trainer._step``)
on the same batch, interleaved round by round, the median of the timed rounds reported. After
the warm-up round the cache holds the batch, as it holds a replayed episode, its reference fix
or a rehearsal pair on every later visit: ``warm_speedup`` is that case. ``cold_speedup`` times a
first visit (the cache cleared before each round), where the lower blocks still run, once per
sequence. Also timed: the critic's prompt states (``Policy.prompt_states``) with the prompts
cached against the same call without the cache.
Prints one JSON object.

    .venv/bin/python benchmarks/frozen_cache.py --json [--model smollm2-135m|tiny] [--batch 4]
        [--completion-tokens 128] [--train-layers 8] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.train_throughput import _timed, make_rows, nocturnal_trainer, nocturnal_update, task_messages  # noqa: E402
from cosmocore.model.policy import Policy  # noqa: E402
from cosmocore.train.trainer import TrainConfig, native_bf16  # noqa: E402

log = logging.getLogger("frozen_cache")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or an HF id / path")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    ap.add_argument("--batch", type=int, default=4, help="episodes per update (the quick profile's minibatch)")
    ap.add_argument("--completion-tokens", type=int, default=128, help="new tokens sampled per episode")
    ap.add_argument("--train-layers", type=int, default=8, help="top blocks that train (the quick profile's 8)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per path (median reported)")
    ap.add_argument("--suite", default="quick", help="task suite the prompts come from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="accepted for symmetry with the other benchmarks")
    args = ap.parse_args(argv)
    for name in ("batch", "completion_tokens", "repeats", "train_layers"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    cfg = TrainConfig(model=args.model, device=args.device, seed=args.seed, minibatch=args.batch,
                      max_new_tokens=args.completion_tokens, train_layers=args.train_layers)
    policies = {}
    for name, mb in (("cached", cfg.frozen_cache_mb), ("plain", 0.0)):
        policies[name] = Policy.load(args.model, device=args.device, seed=args.seed, temperature=cfg.temperature)
        policies[name].train_top_layers(args.train_layers, cache_mb=mb)
    cache = policies["cached"].frozen_prefix
    if cache is None:
        raise SystemExit(f"--model {args.model!r} with --train-layers {args.train_layers}: no frozen blocks to cache")
    device = policies["plain"].device
    bf16 = native_bf16(device)  # as the quick profile runs it (bf16_autocast None)
    torch.manual_seed(args.seed)
    rows = make_rows(policies["plain"].generate(task_messages(args.suite, args.batch),
                                                max_new_tokens=args.completion_tokens), args.completion_tokens, args.seed)
    trainers = {k: nocturnal_trainer(p, cfg, bf16=bf16) for k, p in policies.items()}
    prompts = [r["prompt_ids"] for r in rows]

    def states_cached() -> None:
        with trainers["cached"].autocast():
            policies["cached"].prompt_states(prompts)

    def states_plain() -> None:
        with trainers["plain"].autocast():
            policies["plain"].prompt_states(prompts)

    def cold() -> None:
        cache.clear()
        nocturnal_update(trainers["cached"], rows)

    times: dict[str, list[float]] = {}
    # the updates first (cold clears the cache), then the prompt states (no clearing between)
    for paths in ({"plain": lambda: nocturnal_update(trainers["plain"], rows),
                   "warm": lambda: nocturnal_update(trainers["cached"], rows), "cold": cold},
                  {"states_plain": states_plain, "states_cached": states_cached}):
        for fn in paths.values():  # warm-up: the cache now holds the batch (and then its prompts)
            fn()
        for rnd in range(args.repeats):
            for name, fn in paths.items():
                times.setdefault(name, []).append(_timed(fn, device))
            log.info("round %d: %s", rnd, {k: round(times[k][-1], 3) for k in paths})
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "warm_speedup": med["plain"] / med["warm"],
        "cold_speedup": med["plain"] / med["cold"],
        "prompt_states_speedup": med["states_plain"] / med["states_cached"],
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "cache_mb_used": cache._bytes / 2**20,
        "split_block": cache.split,
        "train_layers": args.train_layers,
        "bf16_autocast": bf16,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "model": args.model,
        "batch": args.batch,
        "completion_tokens": sum(len(r["completion_ids"]) for r in rows),
        "prompt_tokens": sum(len(p) for p in prompts),
        "repeats": args.repeats,
        "measure": "one PPO step of Trainer.night (Trainer._loss: policy pass with grad + reference pass; "
                   "Trainer._step: backward, clip, Adam) on the same batch and weights, with and without "
                   "the frozen blocks' cache; warm = the batch seen before, cold = cache cleared first",
    }


if __name__ == "__main__":
    print(json.dumps(main()))
