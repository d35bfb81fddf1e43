"""Rollout tokens per second: plain ``model.generate`` (``hf``, the baseline) vs an engine.

One run, one process, the same weights and the same batch of real task prompts (distinct tasks of
``--suite``, cycled to ``--batch``), greedy. The baseline is ``model.generate`` as rollouts ran it
before the engines: left-padded batch, no stop at the code block (rows run to EOS or
``--new-tokens``). The engine is what rollouts use now (``Policy.generate`` with ``--engine``).
Both are scored on the same *useful* tokens: each reply up to EOS or the closing fence of its code
block (``stops.stop_length``), what the environment reads; tokens/s = those tokens / wall time, so
``ratio`` is the baseline's wall time over the engine's when the replies agree.
``greedy_identical``: every engine reply equals the baseline's cut at the same rule.
The two are timed alternately (``--rounds``), so background load hits both alike; medians.
Prints one JSON object (``--json``) with at least
``{"engine", "batch", "hf_tokens_per_s", "engine_tokens_per_s", "ratio", "greedy_identical"}``.

    .venv/bin/python benchmarks/rollout_engine.py --json [--engine torch] [--batch 16]
        [--new-tokens 176] [--model smollm2-135m] [--suite quick] [--rounds 1]
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from cosmocore.model.generation import ENGINES, check_engine  # noqa: E402
from cosmocore.model.hf_engine import generation_config  # noqa: E402
from cosmocore.model.batching import left_pad  # noqa: E402
from cosmocore.model.policy import Policy, PolicyError  # noqa: E402
from cosmocore.model.stops import stop_length  # noqa: E402
from miniworld.suites import catalog  # noqa: E402
from miniworld.kinds.registry import messages  # noqa: E402

log = logging.getLogger("rollout_engine")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="torch", help=f"engine to compare with plain generate ({', '.join(ENGINES)})")
    ap.add_argument("--batch", type=int, default=16, help="prompts per batch (distinct tasks, cycled)")
    ap.add_argument("--new-tokens", type=int, default=176, help="max new tokens per reply (the quick profile's)")
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or an HF id / path")
    ap.add_argument("--suite", default="quick", help="task suite the prompts come from")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--rounds", type=int, default=1, help="timed rounds of each, alternating")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    try:
        check_engine(args.engine)
    except ValueError as err:
        ap.error(f"--engine: {err}")
    if args.batch < 1 or args.new_tokens < 1 or args.rounds < 1:
        ap.error("--batch, --new-tokens and --rounds must be >= 1")
    return args


def task_messages(suite: str, batch: int) -> list[list[dict]]:
    """Turn-1 prompts of the suite's distinct tasks (no Spark needed), cycled to ``batch``."""
    tasks = catalog.generate(catalog.load_suite(suite))
    if not tasks:
        raise SystemExit(f"--suite {suite!r} generated no task")
    return [messages(tasks[i % len(tasks)]) for i in range(batch)]


def plain_generate(policy: Policy, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """The baseline: one left-padded ``model.generate`` call, greedy, cut at the stop rule after."""
    ids, mask = left_pad(prompts, policy.tokenizer.pad_token_id, policy.device)
    with torch.no_grad():
        out = policy.model.generate(input_ids=ids, attention_mask=mask,
                                    generation_config=generation_config(policy, new_tokens, greedy=True))
    rows = out.sequences[:, ids.shape[1]:].tolist()
    return [row[:stop_length(policy.tokenizer, row, policy.eos_token_ids)] for row in rows]


def _timed(fn):  # noqa: ANN001, ANN202
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    torch.manual_seed(0)
    try:
        policy = Policy.load(args.model, device=args.device)
        policy.use_engine(args.engine)
    except (PolicyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    msgs = task_messages(args.suite, args.batch)
    prompts = [policy.encode_chat(m) for m in msgs]
    plain_generate(policy, prompts[:1], 2)  # warm both paths up
    policy.generate(msgs[:1], max_new_tokens=2, greedy=True)
    hf_times, engine_times = [], []
    for r in range(args.rounds):
        base, t_hf = _timed(lambda: plain_generate(policy, prompts, args.new_tokens))
        gens, t_engine = _timed(lambda: policy.generate(msgs, max_new_tokens=args.new_tokens, greedy=True))
        hf_times.append(t_hf)
        engine_times.append(t_engine)
        log.info("round %d: hf %.1f s, %s %.1f s", r, t_hf, args.engine, t_engine)
    same = [g.completion_ids == b for g, b in zip(gens, base)]
    hf_s, engine_s = statistics.median(hf_times), statistics.median(engine_times)
    hf_tokens = sum(len(b) for b in base)
    engine_tokens = sum(len(g.completion_ids) for g in gens)
    engine = policy._engine  # noqa: SLF001 (the benchmark reads the engine's own counters)
    result = {
        "engine": args.engine, "batch": args.batch,
        "hf_tokens_per_s": round(hf_tokens / hf_s, 2), "engine_tokens_per_s": round(engine_tokens / engine_s, 2),
        "ratio": round((engine_tokens / engine_s) / (hf_tokens / hf_s), 3), "greedy_identical": all(same),
        "identical_rows": sum(same), "hf_s": round(hf_s, 2), "engine_s": round(engine_s, 2),
        "useful_tokens": hf_tokens, "engine_tokens": engine_tokens, "new_tokens": args.new_tokens,
        "prompt_tokens_mean": round(statistics.mean(len(p) for p in prompts), 1),
        "model": args.model, "device": args.device, "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
    }
    if hasattr(engine, "drafted"):
        result["draft_acceptance"] = round(engine.accepted / max(1, engine.drafted), 3)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
