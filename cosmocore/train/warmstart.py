"""The warm start: supervised fine-tuning on the train split's own (buggy prompt -> reference
code) pairs, never a held-out split, and its cache shared by the arms of a seed.

Hand-written: it is ten lines over ``sequence_logprobs`` (at temperature 1), where TRL's
SFTTrainer would need its own dataset and loop. Its own RNG stream, so the warm start depends
only on its settings (what the cache keys on) and the cycles' task draws do not depend on
whether it ran."""
from __future__ import annotations

import json
import hashlib
import os
import random
import time
import uuid
from pathlib import Path

import torch

from cosmocore.train import shared_cache
from cosmocore.train.run_state import RunState
from miniworld.kinds.registry import messages


def sft_pairs(tr: RunState) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reference completion ids) of every task of the warm-start pool."""
    return [(tr.policy.encode_chat(messages(t)), tr.targets.reference_ids(t)) for t in tr.run_tasks.warm_pool]


def warmup(tr: RunState) -> dict:
    """``warmup_sft`` steps of ``sft_batch`` pairs drawn with replacement, Adam at ``sft_lr``."""
    cfg = tr.cfg
    started = time.monotonic()
    opt = torch.optim.Adam([p for p in tr.policy.model.parameters() if p.requires_grad], lr=cfg.sft_lr)
    pairs = list(zip(sft_pairs(tr), tr.run_tasks.warm_pool))
    rng = random.Random(f"{cfg.seed}/warmup")
    losses = []
    tr.policy.model.train()
    for step in range(cfg.warmup_sft):
        batch = [pairs[rng.randrange(len(pairs))] for _ in range(cfg.sft_batch)]
        with tr.autocast():
            loss = tr.nll([pair[0] for pair, _ in batch], [task for _, task in batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tr.policy.model.parameters(), cfg.max_grad_norm)
        opt.step()
        losses.append(loss.item())
        tr.progress("warm-up", step + 1, cfg.warmup_sft)
    tr.warmed_up = True
    return {"sft_loss_first": losses[0], "sft_loss_last": losses[-1], "sft_steps": len(losses),
            "warmup_s": time.monotonic() - started}


def warmup_key(tr: RunState) -> str:
    """Everything the warmed-up weights depend on: model, device dtype, which parameters
    train, the exact SFT pairs, seed and SFT settings."""
    cfg = tr.cfg
    pairs = hashlib.sha256(json.dumps(sft_pairs(tr)).encode()).hexdigest()
    trainable = [n for n, p in tr.policy.model.named_parameters() if p.requires_grad]
    return shared_cache.key({
        "v": 1, "model": cfg.model, "lora": tr.policy.is_lora, "device": tr.device.type,
        "dtype": str(next(tr.policy.model.parameters()).dtype), "trainable": trainable, "pairs": pairs,
        "seed": cfg.seed, "steps": cfg.warmup_sft, "batch": cfg.sft_batch, "lr": cfg.sft_lr,
        **({"fix_weight": cfg.fix_weight} if cfg.fix_weight != 1.0 else {}),
        **({"bf16_autocast": True} if tr.bf16 else {}), "max_grad_norm": cfg.max_grad_norm,
        **({"frozen_cache": True} if tr.policy.frozen_prefix is not None else {})})


def warmup_cached(tr: RunState) -> dict:
    """``warmup`` through ``cfg.warmup_cache``: load the trainable weights saved by an earlier
    run with the same key (bit-identical to recomputing them), else compute and save them
    atomically (a killed writer leaves no half file; racing writers both end complete)."""
    if not tr.cfg.warmup_cache:
        return warmup(tr)
    started = time.monotonic()
    path = Path(tr.cfg.warmup_cache) / f"warmup-{warmup_key(tr)}.pt"
    with shared_cache.cache_lock(path):  # a parallel job of the same seed waits here, then loads it
        if path.exists():
            saved = torch.load(path, weights_only=True)
            params = dict(tr.policy.model.named_parameters())
            with torch.no_grad():
                for name, value in saved["weights"].items():
                    params[name].copy_(value)
            tr.warmed_up = True
            return {**saved["stats"], "warmup_s": time.monotonic() - started, "warmup_cached": True}
        stats = warmup(tr)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}-{uuid.uuid4().hex}")
        weights = {n: p.detach().to("cpu", copy=True) for n, p in tr.policy.model.named_parameters() if p.requires_grad}
        torch.save({"weights": weights, "stats": {k: v for k, v in stats.items() if k != "warmup_s"}}, tmp)
        os.replace(tmp, path)
        return {**stats, "warmup_cached": False}
