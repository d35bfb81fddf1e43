"""What the arms of one seed share through ``warmup_cache``: the warm start, cycle 0's
evaluation and cycle 1's day are the same for every arm (same weights, same task draws, same RNG
state), so the first arm computes them and the others read them. Entries are keyed by
everything they depend on, written atomically, and guarded by an inter-process lock so that
parallel bench jobs of a seed compute each entry once."""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock


def cache_lock(path: Path) -> FileLock:
    """An inter-process lock beside a cache file: the other jobs of the seed wait, then load it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{path}.lock")


def key(ident: dict[str, Any]) -> str:
    """A short stable digest of an entry's identity (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def trained_weights_digest(model: torch.nn.Module) -> str:
    """A digest of the trainable parameters: what a cached day was sampled from, whatever put
    them there (a resume included)."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rng_state(device: torch.device) -> dict[str, str]:
    """The torch generators sampling draws from (the CPU's, and the device's on CUDA), as text."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return {k: base64.b64encode(v.numpy().tobytes()).decode() for k, v in states.items()}


def set_rng_state(states: dict[str, str], device: torch.device) -> None:
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(tensor(states["cpu"]))
    if "cuda" in states:
        torch.cuda.set_rng_state(tensor(states["cuda"]), device)
