"""Mini-World for TRL: tasks as a ``datasets.Dataset`` with a conversational ``prompt`` column,
and a reward function with the signature ``GRPOTrainer(reward_funcs=...)`` calls.

TRL passes each extra dataset column to reward functions as a keyword argument, so the dataset
carries ``task_id`` and the reward function looks the task up by it. TRL 1.16 also passes
``log_metric``: the reward logs the share of each outcome (``miniworld/outcome/<name>``) beside
TRL's own metrics, and ``log_extra`` adds the outcome to the completions table.

:func:`grpo_setup` builds all of it from a suite name and owns the sandbox's life (see docs/TRL.md).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from miniworld.checks import OUTCOMES
from miniworld.env import MiniWorldEnv
from miniworld.sandbox.spark_sandbox import Sandbox
from miniworld.kinds.registry import messages
from miniworld.task import Task


def task_dataset(tasks: list[Task], split: str | None = "train"):
    """Tasks of ``split`` (None: all) as a Dataset: ``prompt`` (chat messages), ``task_id``,
    ``family``, ``bug_class``."""
    from datasets import Dataset

    chosen = [t for t in tasks if split is None or t.split == split]
    return Dataset.from_dict({
        "prompt": [messages(t) for t in chosen],
        "task_id": [t.id for t in chosen],
        "family": [t.family for t in chosen],
        "bug_class": [t.bug_class for t in chosen],
    })


def _text(completion: Any) -> str:
    """A completion as text: TRL gives a string, or a list of messages for chat datasets."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        last = completion[-1]
        return last.get("content", "") if isinstance(last, dict) else str(last)
    return ""


class MiniWorldReward:
    """Progressive reward (checks passed / total) of each completion's code on its task."""

    __name__ = "miniworld_reward"  # TRL logs reward functions by name

    def __init__(self, sandbox: Sandbox, tasks: list[Task]) -> None:
        self.sandbox = sandbox
        self.tasks = {t.id: t for t in tasks}
        self.last_outcomes: list[str] = []

    def __call__(self, prompts: list, completions: list, task_id: list[str], **kwargs: Any) -> list[float]:
        unknown = [i for i in task_id if i not in self.tasks]
        if unknown:
            raise KeyError(f"unknown task {unknown[0]!r} in the reward function's batch")
        if not task_id:
            return []
        # one turn of the env's episodes, batched: the same code path (code extraction, sandbox,
        # scoring) as miniworld.make(...).step
        env = MiniWorldEnv(list(self.tasks.values()), self.sandbox, split=None, max_turns=1)
        env.reset_many(len(task_id), options={"task_ids": list(task_id)})
        env.step_many([_text(c) for c in completions])
        results = [r for r in env.last_results if r is not None]
        self.last_outcomes = [r.outcome for r in results]
        log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
        if log_metric is not None and results:  # TRL >= 1.16: averaged per logging step, logged with `kl` etc.
            for outcome in OUTCOMES:
                log_metric(f"miniworld/outcome/{outcome}", self.last_outcomes.count(outcome) / len(results))
        if log_extra is not None:  # one column per completion in TRL's completions table
            log_extra("outcome", list(self.last_outcomes))
        return [float(r.reward) for r in results]


@dataclass
class GRPOSetup:
    """What ``GRPOTrainer`` needs from Mini-World: ``train_dataset=dataset``, ``reward_funcs=[reward]``."""

    dataset: Any  # datasets.Dataset
    reward: MiniWorldReward
    tasks: list[Task]
    sandbox: Any  # Sandbox or PythonSandbox: open until the ``with`` block ends


@contextmanager
def grpo_setup(suite: str = "smoke", split: str | None = "train", spark_remote: str | None = None,
               workers: int | None = None, timeout_s: float = 30.0) -> Iterator[GRPOSetup]:
    """Start the sandbox (Spark for PySpark suites), load the suite's verified tasks (verifying
    once if needed) and build the dataset and reward. The reward runs code in this sandbox, so
    call ``trainer.train()`` inside the ``with`` block; the sandbox is closed when it ends."""
    from miniworld.suites import catalog

    spec = catalog.load_suite(suite)  # an unknown suite fails before Spark starts
    box = spec.kind.open_sandbox(spark_remote=spark_remote, workers=workers, timeout_s=timeout_s)
    try:
        tasks = catalog.load_tasks(spec, box)
        dataset = task_dataset(tasks, split)
        if len(dataset) == 0:
            raise ValueError(f"suite {suite!r} has no verified task in split {split!r}")
        yield GRPOSetup(dataset, MiniWorldReward(box, tasks), tasks, box)
    finally:
        box.close()
