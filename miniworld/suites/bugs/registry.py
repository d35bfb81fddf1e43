"""The bug-class registry: each class is a collector function registered by id, in catalogue order."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BugClass:
    id: str  # stable id
    description: str  # one line, what a data engineer would call this bug


Mutation = Callable[[], None]  # edits the freshly parsed tree in place
Site = list[Mutation]  # the alternatives at one place in the source
Collector = Callable[["_Context"], list[Site]]  # takes a context._Context

BUG_CLASSES: dict[str, BugClass] = {}
_COLLECTORS: dict[str, Collector] = {}


def _bug_class(bug_id: str) -> Callable[[Collector], Collector]:
    """Register a collector; its docstring's first line is the class description."""

    def register(fn: Collector) -> Collector:
        description = (fn.__doc__ or bug_id).strip().splitlines()[0]
        BUG_CLASSES[bug_id] = BugClass(bug_id, description)
        _COLLECTORS[bug_id] = fn
        return fn

    return register
