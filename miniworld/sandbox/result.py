"""What scoring one candidate on one task produced: the same record for every kind of task."""
from __future__ import annotations

from dataclasses import dataclass, field

from miniworld.checks import CheckResult


@dataclass(frozen=True)
class Result:
    """What running one candidate on one task produced (the ``run --json`` keys and more)."""

    task: str
    outcome: str
    reward: float
    checks_passed: int
    checks_total: int
    error: str | None
    feedback: str
    duration_s: float
    checks: tuple[CheckResult, ...] = field(default=(), repr=False)
    stdout: str = ""

    def to_json(self) -> dict:
        return {"task": self.task, "outcome": self.outcome, "reward": self.reward,
                "checks_passed": self.checks_passed, "checks_total": self.checks_total,
                "error": self.error, "feedback": self.feedback, "duration_s": round(self.duration_s, 4),
                "checks": [{"name": c.name, "dataset": c.dataset, "passed": c.passed} for c in self.checks]}
