"""One generated and executed attempt, and its JSON form (the shared cycle-1 day cache)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from cosmocore.model.generation import Generation
from miniworld.checks import CheckResult
from miniworld.sandbox.spark_sandbox import Result
from miniworld.task import Task


@dataclass
class Attempt:
    """One generated and executed attempt (a row of ``episodes``)."""

    task: Task
    turn: int
    prompt: str
    generation: Generation
    result: Result
    value: float = 0.0
    td_error: float = 0.0
    valence: float = 0.0
    arousal: float = 0.0

    def to_json(self) -> dict:
        r = self.result
        return {"task": self.task.id, "turn": self.turn, "prompt": self.prompt, "generation": asdict(self.generation),
                "result": {**{f.name: getattr(r, f.name) for f in fields(r) if f.name != "checks"},
                           "checks": [asdict(c) for c in r.checks]}}

    @classmethod
    def from_json(cls, d: dict, task: Task) -> Attempt:
        r = d["result"]
        result = Result(**{**r, "checks": tuple(CheckResult(**c) for c in r["checks"])})
        return cls(task, d["turn"], d["prompt"], Generation(**d["generation"]), result)
