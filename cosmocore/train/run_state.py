"""What the trainer's parts (warm start, evaluation, checkpoint) read and write of a run: the
``Trainer`` as a Protocol, so those modules depend on this description and not on the trainer
module that imports them."""
from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from cosmocore.memory.buffer import ReplayBuffer
from cosmocore.memory.store import Store
from cosmocore.train.config import TrainConfig
from cosmocore.train.targets import Targets
from cosmocore.train.tasks import RunTasks
from miniworld.task import Task


class RunState(Protocol):
    """One (arm, seed) run's state, as ``cosmocore.train.trainer.Trainer`` holds it."""

    cfg: TrainConfig
    out: Path
    policy: Any  # cosmocore.model.policy.Policy (not imported here: it loads transformers)
    reference: torch.nn.Module | None
    device: torch.device
    bf16: bool
    targets: Targets
    run_tasks: RunTasks
    store: Store
    buffer: ReplayBuffer
    value_head: torch.nn.Module
    optimizer: torch.optim.Optimizer
    tagger: Any
    tagger_fitted: bool
    arousal: Any
    features: dict[str, torch.Tensor]
    critic_data: tuple[torch.Tensor, torch.Tensor] | None
    history: list[dict]
    cycle: int
    rng: random.Random
    failed: set[str]
    warmed_up: bool
    eval_cached: bool
    eval_replies: int
    max_new_tokens: int  # the replies' budget (TrainConfig's, or fitted to the references when 0)
    progress: Callable[[str, int, int], None]

    def autocast(self) -> contextlib.AbstractContextManager: ...

    def nll(self, prompt_ids: list[list[int]], tasks: list[Task]) -> torch.Tensor: ...

    def rollout(self, tasks: list[Task], turns: int, greedy: bool = False, phase: str = "day") -> list: ...
