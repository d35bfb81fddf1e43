"""Mini-World for TRL: tasks as a ``datasets.Dataset`` with a conversational ``prompt`` column,
and a reward function with the signature ``GRPOTrainer(reward_funcs=...)`` calls.

TRL passes each extra dataset column to reward functions as a keyword argument, so the dataset
carries ``task_id`` and the reward function looks the task up by it.
"""
from __future__ import annotations

from typing import Any

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
        from miniworld.extract import extract_code

        unknown = [i for i in task_id if i not in self.tasks]
        if unknown:
            raise KeyError(f"unknown task {unknown[0]!r} in the reward function's batch")
        items = [(self.tasks[i], extract_code(_text(c))) for i, c in zip(task_id, completions)]
        results = self.sandbox.evaluate_many(items)
        self.last_outcomes = [r.outcome for r in results]
        return [r.reward for r in results]
