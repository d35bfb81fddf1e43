"""The task kinds by name: the one place that maps a suite file's ``kind:`` or a task's ``kind``
to the class that knows how to generate, prompt, run and check it."""
from __future__ import annotations

from miniworld.task_kind import TaskKind
from miniworld.kinds.python import PythonKind
from miniworld.kinds.spark import PySparkKind
from miniworld.task import Task

KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (PySparkKind(), PythonKind())}
DEFAULT = PySparkKind.name  # a suite file without ``kind:``


def get(name: str) -> TaskKind:
    """The kind called ``name`` (ValueError names the known ones)."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown kind {name!r} (known: {', '.join(KINDS)})") from None


def of(task: Task) -> TaskKind:
    """A task's kind."""
    return get(task.kind)


def prompt(task: Task, attempts: list[tuple[str, str]] | None = None) -> str:
    """The user message for a turn of ``task``; ``attempts`` are earlier (code, feedback) pairs."""
    return of(task).prompt(task, attempts)


def messages(task: Task, attempts: list[tuple[str, str]] | None = None) -> list[dict]:
    """Chat-template messages for a turn of ``task``."""
    return of(task).messages(task, attempts)
