"""A run's checkpoint: everything a killed run needs to go on exactly where it stopped (model,
critic, tagger, optimizer, RNG states, history, cycle, table versions). Written atomically
after every cycle; a resume discards the rows of cycles after it and rebuilds the replay index
as of it, so a cycle is neither repeated nor skipped."""
from __future__ import annotations

import os
import random
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from cosmocore.memory.buffer import ReplayBuffer
from cosmocore.train.config import buffer_config
from cosmocore.train.run_state import RunState


def save(tr: RunState) -> Path:
    """Write ``OUT/checkpoint.pt`` (through a temporary file and a rename)."""
    path = tr.out / "checkpoint.pt"
    tmp = tr.out / f".checkpoint-{uuid.uuid4().hex}.pt"
    tr.buffer.save(tr.store)
    # the KL anchor's weights: only its trained blocks when the rest is frozen (as loaded)
    reference = tr.policy.trained_only(tr.reference.state_dict()) if tr.warmed_up and not tr.policy.is_lora else None
    torch.save({"cycle": tr.cycle, "config": asdict(tr.cfg), "policy": tr.policy.state_dict_for_checkpoint(),
                "value_head": tr.value_head.state_dict(), "optimizer": tr.optimizer.state_dict(),
                "tagger": tr.tagger.state_dict(), "tagger_fitted": tr.tagger_fitted, "warmed_up": tr.warmed_up,
                "reference": reference, "arousal": tr.arousal.state_dict(), "features": tr.features,
                "critic_data": tr.critic_data, "history": tr.history,
                "rng": {"python": tr.rng.getstate(), "global_python": random.getstate(),
                        "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                        "buffer": tr.buffer.rng.bit_generator.state},
                "table_versions": tr.store.versions()}, tmp)
    os.replace(tmp, path)
    return path


def restore(tr: RunState) -> bool:
    """Load ``OUT/checkpoint.pt`` into the trainer (False when there is none)."""
    path = tr.out / "checkpoint.pt"
    if not path.exists():
        return False
    state = torch.load(path, weights_only=False)
    tr.cfg.run_id = state["config"]["run_id"]  # same ids -> idempotent re-appends
    tr.policy.load_state_dict_from_checkpoint(state["policy"])
    tr.reference = tr.policy.reference_model()
    if state.get("reference") is not None:  # the KL anchor is the warmed-up policy
        tr.reference.load_state_dict(state["reference"], strict=not state["policy"].get("partial"))
    tr.warmed_up = state.get("warmed_up", False)
    tr.value_head.load_state_dict(state["value_head"])
    tr.optimizer.load_state_dict(state["optimizer"])
    tr.tagger.load_state_dict(state["tagger"])
    tr.tagger_fitted = state["tagger_fitted"]
    tr.arousal.load_state_dict(state["arousal"])
    tr.features = state["features"]
    tr.critic_data = state.get("critic_data")
    tr.history = state["history"]
    tr.cycle = state["cycle"] + 1
    tr.rng.setstate(state["rng"]["python"])
    random.setstate(state["rng"]["global_python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    # Rows of the cycles after the checkpoint are redone whole, not merged with the killed run's.
    tr.store.discard_after(tr.cfg.run_id, state["cycle"])
    # The index as of this checkpoint: a run killed between saving the index and saving the
    # checkpoint left a newer one (that cycle's night already applied), which is redone now.
    version = state.get("table_versions", {}).get("buffer_state")
    tr.buffer = ReplayBuffer.rebuild(tr.store, buffer_config(tr.cfg.arm), seed=tr.cfg.seed, state_version=version)
    tr.buffer.rng.bit_generator.state = state["rng"]["buffer"]
    mine = tr.store.read_episodes(filters=[("run_id", "=", tr.cfg.run_id)], columns=["episode_id", "reward"])
    tr.failed = {r["episode_id"] for r in mine.to_pylist() if r["reward"] is not None and r["reward"] < 1.0}
    return True
