"""The task-kind interface: everything that differs between kinds of task, in one class.

Add a kind (SQL, pandas, ...) by subclassing :class:`TaskKind` and listing it in
:mod:`miniworld.kinds.registry`; nothing else in the code tests a kind's name.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar

from miniworld.task import Task


class TaskKind(ABC):
    """One kind of task. Stateless: kinds compare equal by class, so a pickled suite keeps its kind.

    ``suite`` arguments are :class:`miniworld.suites.suite.Suite` objects (typed loosely here
    because a Suite holds its kind)."""

    #: the suite file's ``kind:`` value and :attr:`Task.kind`
    name: ClassVar[str]
    #: whether its sandbox needs a Spark server (local or remote)
    needs_spark: ClassVar[bool]
    #: the system message of every turn
    system_prompt: ClassVar[str]

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"<task kind {self.name}>"

    # -- suites ------------------------------------------------------------------------------
    @abstractmethod
    def parse_suite(self, raw: dict, path: Path) -> Any:
        """A suite file's settings as a Suite (ValueError/KeyError/TypeError name what is wrong)."""

    @abstractmethod
    def generate(self, suite: Any) -> list[Task]:
        """Every candidate task of the suite (unverified), pure and seeded, in a stable order."""

    @abstractmethod
    def verify(self, suite: Any, sandbox: Any, progress: Callable[[int, int], None] | None = None) -> Any:
        """Run the generated tasks' references on ``sandbox``: a VerifyReport of the usable ones."""

    @abstractmethod
    def digest(self, tasks: list[Task]) -> str:
        """Identity of a generated suite: keys the verification cache."""

    def find(self, tasks: list[Task], task_id: str) -> Task | None:
        """A task by the id a user typed."""
        return next((t for t in tasks if t.id == task_id), None)

    # -- running -----------------------------------------------------------------------------
    @abstractmethod
    def open_sandbox(self, *, spark_remote: str | None = None, workers: int | None = None,
                     timeout_s: float = 30.0, endpoint: Any = None) -> Any:
        """The sandbox that gates, runs and checks this kind's candidates (a context manager with
        ``evaluate``/``evaluate_many``/``close``)."""

    # -- what a model sees -------------------------------------------------------------------
    @abstractmethod
    def prompt(self, task: Task, attempts: list[tuple[str, str]] | None = None) -> str:
        """The user message for a turn; ``attempts`` are earlier (code, feedback) pairs."""

    def messages(self, task: Task, attempts: list[tuple[str, str]] | None = None) -> list[dict]:
        """Chat-template messages for a turn."""
        return [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": self.prompt(task, attempts)}]

    def prepare_user_file(self, code: str, function: str | None = None) -> tuple[str, str | None]:
        """A user's file as written -> (the code the sandbox runs, a note on what is not run, or
        None when it runs as is). Raises ValueError (one line) when it cannot be a candidate."""
        return code, None

    def describe(self, task: Task) -> dict:
        """What ``tasks show --json`` prints for a task."""
        return task.to_json()


def attempts_text(attempts: list[tuple[str, str]] | None, ask: str) -> str:
    """Earlier (code, feedback) pairs as the prompt shows them, each closed by ``ask``."""
    return "".join(f"\n\n## Your attempt {i}\n```python\n{code}\n```\nResult of running it: {fb}\n{ask}"
                   for i, (code, fb) in enumerate(attempts or [], start=1))
