"""Gymnasium-style environment over Mini-World tasks (multi-turn self-correction).

``reset(seed=None, options=None) -> (observation, info)`` poses a task; ``step(text) ->
(observation, reward, terminated, truncated, info)`` runs the code in the model's reply. After a
failed turn the next observation carries the feedback; the episode ends when the code is correct
(terminated) or after ``max_turns`` (truncated). ``reset_many``/``step_many`` drive a batch of
episodes and run their candidates in parallel across the sandbox pool.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from miniworld.suites import catalog
from miniworld.extract import extract_code
from miniworld.sandbox.spark_sandbox import Result, Sandbox
from miniworld.kinds.registry import messages, prompt
from miniworld.task import Task


@dataclass
class _Episode:
    task: Task
    attempts: list[tuple[str, str]] = field(default_factory=list)  # (code, feedback)
    done: bool = False


class MiniWorldEnv:
    """Episodes over verified tasks of one split. Owns its sandbox when ``make`` built it."""

    def __init__(self, tasks: list[Task], sandbox: Sandbox, split: str | None = "train",
                 max_turns: int = 2, seed: int | None = None, owns_sandbox: bool = False) -> None:
        pool = [t for t in tasks if split in (None, "all") or t.split == split]
        if not pool:
            raise ValueError(f"no tasks in split {split!r}")
        if max_turns < 1:
            raise ValueError("max_turns must be >= 1")
        self.tasks = pool
        self.by_id = {t.id: t for t in tasks}
        self.sandbox = sandbox
        self.max_turns = max_turns
        self._owns = owns_sandbox
        self._rng = random.Random(seed)
        self._episodes: list[_Episode] = []

    # -- single episode ----------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, infos = self.reset_many(1, seed=seed, options=options)
        return obs[0], infos[0]

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        return self.step_many([action])[0]

    # -- batches -------------------------------------------------------------------------
    def reset_many(self, n: int, seed: int | None = None, options: dict | None = None) -> tuple[list[dict], list[dict]]:
        """Start ``n`` episodes; ``options={"task_ids": [...]}`` (or ``"task_id"``) picks tasks."""
        if seed is not None:
            self._rng = random.Random(seed)
        options = options or {}
        ids = options.get("task_ids") or ([options["task_id"]] * n if "task_id" in options else None)
        if ids is not None:
            unknown = [i for i in ids if i not in self.by_id]
            if unknown:
                raise KeyError(f"unknown task {unknown[0]!r}")
            chosen = [self.by_id[i] for i in ids]
        else:
            chosen = [self._rng.choice(self.tasks) for _ in range(n)]
        self._episodes = [_Episode(t) for t in chosen]
        return [self._observation(e) for e in self._episodes], [self._info(e) for e in self._episodes]

    def step_many(self, actions: list[str]) -> list[tuple[dict, float, bool, bool, dict]]:
        """Run one turn of every open episode (actions align with ``reset_many``'s episodes)."""
        if len(actions) != len(self._episodes):
            raise ValueError(f"expected {len(self._episodes)} actions, got {len(actions)}")
        if any(e.done for e in self._episodes):
            raise RuntimeError("an episode is finished: call reset_many first")
        codes = [extract_code(a) for a in actions]
        results = self.sandbox.evaluate_many([(e.task, c) for e, c in zip(self._episodes, codes)])
        out = []
        for episode, code, result in zip(self._episodes, codes, results):
            episode.attempts.append((code, result.feedback))
            terminated = result.outcome == "correct"
            truncated = not terminated and len(episode.attempts) >= self.max_turns
            episode.done = terminated or truncated
            info = {**self._info(episode), **_result_info(result), "code": code}
            out.append((self._observation(episode), result.reward, terminated, truncated, info))
        return out

    def _observation(self, episode: _Episode) -> dict:
        return {"task_id": episode.task.id, "turn": len(episode.attempts),
                "prompt": prompt(episode.task, episode.attempts),
                "messages": messages(episode.task, episode.attempts)}

    @staticmethod
    def _info(episode: _Episode) -> dict:
        t = episode.task
        return {"task_id": t.id, "family": t.family, "bug_class": t.bug_class, "split": t.split,
                "turn": len(episode.attempts)}

    def close(self) -> None:
        if self._owns:
            self.sandbox.close()

    def __enter__(self) -> MiniWorldEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _result_info(result: Result) -> dict:
    return {"outcome": result.outcome, "checks_passed": result.checks_passed,
            "checks_total": result.checks_total, "error": result.error, "feedback": result.feedback,
            "duration_s": result.duration_s}


def make(suite: str = "standard", seed: int | None = None, spark_remote: str | None = None,
         split: str | None = "train", max_turns: int = 2, workers: int = 2, timeout_s: float = 30.0,
         sandbox: Sandbox | None = None) -> MiniWorldEnv:
    """Build an environment: load (verifying once if needed) the suite, start Spark + sandbox."""
    spec = catalog.load_suite(suite)
    owns = sandbox is None
    box = sandbox or spec.kind.open_sandbox(spark_remote=spark_remote, workers=workers, timeout_s=timeout_s)
    try:
        tasks = catalog.load_tasks(spec, box)
        return MiniWorldEnv(tasks, box, split=split, max_turns=max_turns, seed=seed, owns_sandbox=owns)
    except BaseException:
        if owns:
            box.close()
        raise
