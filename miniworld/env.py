"""Mini-World as a Gymnasium environment: a text env for multi-turn self-correction.

``reset(seed=None, options=None) -> (observation, info)`` poses a task; ``step(reply) ->
(observation, reward, terminated, truncated, info)`` runs the code in the model's reply in the
sandbox. After a failed turn the next observation's prompt carries the feedback; the episode ends
when the code is correct (terminated) or after ``max_turns`` (truncated).

As in text envs for LLM RL (SkyRL-gym's ``BaseTextEnv``, NeMo-Gym), the action is the model's raw
reply (a string), the observation is the next prompt, and ``info`` carries the outcome, the checks,
the feedback and the chat ``messages`` for the next turn. ``reset_many``/``step_many`` drive a batch
of episodes and run their candidates in parallel across the sandbox pool.

Registered with Gymnasium as ``MiniWorld/PySparkBugFix-v0`` (see :mod:`miniworld`):
``gymnasium.make("MiniWorld/PySparkBugFix-v0", suite="smoke")`` or ``miniworld.make(suite="smoke")``.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

import gymnasium
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

from miniworld import ENV_ID, register
from miniworld.extract import extract_code
from miniworld.sandbox.spark_sandbox import Result, Sandbox
from miniworld.kinds.registry import messages, prompt
from miniworld.suites import catalog
from miniworld.task import Task

__all__ = ["ENV_ID", "FreeText", "MiniWorldEnv", "make"]

MAX_PROMPT_CHARS = 1_000_000
MAX_REPLY_CHARS = 100_000


class FreeText(spaces.Text):
    """Any Unicode string of bounded length. Gymnasium's ``Text`` checks every character against a
    finite charset; prompts and model replies are free text (any script, emoji), so membership here
    bounds only the length. Samples are drawn from printable ASCII."""

    def __init__(self, max_length: int, min_length: int = 0) -> None:
        super().__init__(max_length, min_length=min_length, charset=string.printable)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"FreeText({self.min_length}, {self.max_length})"


@dataclass
class _Episode:
    task: Task
    attempts: list[tuple[str, str]] = field(default_factory=list)  # (code, feedback)
    last: Result | None = None
    done: bool = False
    stop_on_correct: bool = True  # False: open until max_turns (an evaluation counting correct -> wrong flips)


class MiniWorldEnv(gymnasium.Env[dict, str]):
    """Episodes over verified tasks of one split. Owns (and closes) its sandbox when ``make`` built it."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, tasks: list[Task], sandbox: Sandbox, split: str | None = "train",
                 max_turns: int = 2, seed: int | None = None, owns_sandbox: bool = False,
                 render_mode: str | None = None) -> None:
        pool = [t for t in tasks if split in (None, "all") or t.split == split]
        if not pool:
            raise ValueError(f"no tasks in split {split!r}")
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.tasks = pool
        self.by_id = {t.id: t for t in tasks}
        self.sandbox = sandbox
        self.max_turns = max_turns
        self.render_mode = render_mode
        self._owns = owns_sandbox
        self._closed = False
        self._episodes: list[_Episode] = []
        self.observation_space = spaces.Dict({
            "task_id": FreeText(256, min_length=1),
            "turn": spaces.Discrete(max_turns + 1),
            "prompt": FreeText(MAX_PROMPT_CHARS, min_length=1),
        })
        self.action_space = FreeText(MAX_REPLY_CHARS, min_length=1)
        if seed is not None:  # reset() without a seed is then reproducible too
            super().reset(seed=seed)

    # -- single episode (the Gymnasium API) ------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start one episode; ``options={"task_id": ID}`` picks the task, else a seeded draw."""
        obs, infos = self.reset_many(1, seed=seed, options=options)
        return obs[0], infos[0]

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        """Run the code in ``action`` (a reply with a code block, or bare code) on the task."""
        if len(self._episodes) != 1:
            raise RuntimeError("step() continues the episode of reset(); after reset_many(n) use step_many"
                               if self._episodes else "no episode yet: call reset() first")
        return self.step_many([action])[0]

    def render(self) -> str | None:
        """``"ansi"``: the task, the turn and the last outcome with its feedback (else the prompt)."""
        if self.render_mode != "ansi" or not self._episodes:
            return None
        lines = []
        for e in self._episodes:
            head = f"[{e.task.id}] turn {len(e.attempts)}/{self.max_turns}"
            if e.last is None:
                lines.append(f"{head}\n{prompt(e.task)}")
            else:
                lines.append(f"{head}: {e.last.outcome}, reward {e.last.reward:.3f} "
                             f"({e.last.checks_passed}/{e.last.checks_total} checks)\n{e.last.feedback}")
        return "\n\n".join(lines) + "\n"

    # -- batches ---------------------------------------------------------------------------
    def reset_many(self, n: int, seed: int | None = None,
                   options: dict | None = None) -> tuple[list[dict], list[dict]]:
        """Start ``n`` episodes; ``options={"task_ids": [...]}`` (or ``"task_id"``) picks tasks;
        ``"stop_on_correct": False`` keeps episodes open after a correct turn until ``max_turns``."""
        super().reset(seed=seed)
        options = options or {}
        ids = options.get("task_ids") or ([options["task_id"]] * n if "task_id" in options else None)
        if ids is not None:
            unknown = [i for i in ids if i not in self.by_id]
            if unknown:
                raise KeyError(f"unknown task {unknown[0]!r}")
            chosen = [self.by_id[i] for i in ids]
        else:
            chosen = [self.tasks[int(i)] for i in self.np_random.integers(len(self.tasks), size=n)]
        stop = bool(options.get("stop_on_correct", True))
        self._episodes = [_Episode(t, stop_on_correct=stop) for t in chosen]
        return [self._observation(e) for e in self._episodes], [self._info(e) for e in self._episodes]

    def step_many(self, actions: list[str], episodes: list[int] | None = None) -> list[tuple[dict, float, bool, bool, dict]]:
        """Run one turn of the episodes ``episodes`` (indices into ``reset_many``'s; default all),
        in parallel across the sandbox pool; ``actions`` align with them."""
        if not self._episodes:
            raise RuntimeError("no episode yet: call reset() (or reset_many) first")
        chosen = [self._episodes[i] for i in (range(len(self._episodes)) if episodes is None else episodes)]
        if len(actions) != len(chosen):
            raise ValueError(f"expected {len(chosen)} actions, got {len(actions)}")
        if any(e.done for e in chosen):
            raise RuntimeError("the episode is over (terminated or truncated): call reset() "
                               "(or reset_many) to start a new one")
        codes = [extract_code(a if isinstance(a, str) else str(a)) for a in actions]
        results = self.sandbox.evaluate_many([(e.task, c) for e, c in zip(chosen, codes)])
        out = []
        for episode, code, result in zip(chosen, codes, results):
            episode.attempts.append((code, result.feedback))
            episode.last = result
            terminated = result.outcome == "correct" and episode.stop_on_correct
            truncated = not terminated and len(episode.attempts) >= self.max_turns
            episode.done = terminated or truncated
            info = {**self._info(episode), **_result_info(result), "code": code}
            out.append((self._observation(episode), float(result.reward), terminated, truncated, info))
        return out

    @property
    def last_results(self) -> list[Result | None]:
        """The last sandbox result of each episode (with ``duration_s``, kept out of ``info`` so
        that a seeded step is reproducible)."""
        return [e.last for e in self._episodes]

    def _observation(self, episode: _Episode) -> dict:
        return {"task_id": episode.task.id, "turn": len(episode.attempts),
                "prompt": prompt(episode.task, episode.attempts)}

    @staticmethod
    def _info(episode: _Episode) -> dict:
        t = episode.task
        return {"task_id": t.id, "family": t.family, "bug_class": t.bug_class, "split": t.split,
                "turn": len(episode.attempts), "messages": messages(t, episode.attempts)}

    def close(self) -> None:
        """Close the sandbox if this env built it; safe to call twice."""
        if self._owns and not self._closed:
            self.sandbox.close()
        self._closed = True

    def __enter__(self) -> MiniWorldEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _result_info(result: Result) -> dict:
    return {"outcome": result.outcome, "reward": float(result.reward), "checks_passed": result.checks_passed,
            "checks_total": result.checks_total, "error": result.error, "feedback": result.feedback}


def make(suite: str = "standard", seed: int | None = None, spark_remote: str | None = None,
         split: str | None = "train", max_turns: int = 2, workers: int = 2, timeout_s: float = 30.0,
         sandbox: Sandbox | None = None, render_mode: str | None = None) -> MiniWorldEnv:
    """Build an environment: load (verifying once if needed) the suite, start Spark + sandbox
    unless ``sandbox`` is given (then it is shared, and closing the env leaves it open)."""
    spec = catalog.load_suite(suite)
    owns = sandbox is None
    box = sandbox or spec.kind.open_sandbox(spark_remote=spark_remote, workers=workers, timeout_s=timeout_s)
    try:
        tasks = catalog.load_tasks(spec, box)
        env = MiniWorldEnv(tasks, box, split=split, max_turns=max_turns, seed=seed, owns_sandbox=owns,
                           render_mode=render_mode)
    except BaseException:
        if owns:
            box.close()
        raise
    # the spec gymnasium.make would set (it overrides this one): env.spec.make() rebuilds the env
    env.spec = EnvSpec(id=ENV_ID, entry_point="miniworld.env:make", order_enforce=False, disable_env_checker=True,
                       kwargs={"suite": suite, "seed": seed, "spark_remote": spark_remote, "split": split,
                               "max_turns": max_turns, "workers": workers, "timeout_s": timeout_s,
                               "sandbox": sandbox, "render_mode": render_mode})
    return env


register()
