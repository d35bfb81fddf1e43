"""PySpark bug fixing: fix an injected bug in a DataFrame pipeline; run on Spark, checked on data."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from miniworld.task_kind import TaskKind, attempts_text
from miniworld.sandbox import userfile
from miniworld.sandbox.spark_sandbox import Sandbox
from miniworld.suites import pipeline_tasks
from miniworld.suites.suite import Suite, VerifyReport
from miniworld.task import Task


class PySparkKind(TaskKind):
    """Tasks from ``pipelines/`` x bug classes; a Spark Connect sandbox scores the DataFrames."""

    name = "pyspark"
    needs_spark = True
    system_prompt = (
        "You are a senior data engineer. You fix bugs in PySpark DataFrame pipelines. "
        "Answer with the complete corrected function in a single ```python code block."
    )

    def parse_suite(self, raw: dict, path: Path) -> Suite:
        return pipeline_tasks.parse_suite(raw, path, self)

    def generate(self, suite: Suite) -> list[Task]:
        return pipeline_tasks.generate(suite)

    def verify(self, suite: Suite, sandbox: Sandbox,
               progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        return pipeline_tasks.verify(suite, sandbox, progress)

    def digest(self, tasks: list[Task]) -> str:
        return pipeline_tasks.digest(tasks)

    def open_sandbox(self, *, spark_remote: str | None = None, workers: int | None = None,
                     timeout_s: float = 30.0, endpoint=None) -> Sandbox:
        kwargs = {"workers": workers} if workers else {}
        return Sandbox(spark_remote=spark_remote, endpoint=endpoint, timeout_s=timeout_s, **kwargs)

    def prepare_user_file(self, code: str, function: str | None = None) -> tuple[str, str | None]:
        """Only the transformation runs: the ``__main__`` block, the ``SparkSession`` builder and
        unused helpers of a script as written are left out (``miniworld.sandbox.userfile``)."""
        prepared = userfile.prepare(code, function)
        if not prepared.stripped and prepared.function == "transform":
            return prepared.code, None
        return prepared.code, (f"running {prepared.function}(); not run: the script around it (statements at "
                               f"lines {', '.join(map(str, prepared.stripped)) or '-'})")

    def prompt(self, task: Task, attempts: list[tuple[str, str]] | None = None) -> str:
        schemas = "\n".join(f"- `{name}`: {ddl}" for name, ddl in task.inputs.items())
        text = (
            f"## Spec\n{task.spec}\n\n## Inputs (Spark DataFrames)\n{schemas}\n\n"
            "## Code with a bug\nThis implementation does not meet the spec:\n"
            f"```python\n{task.buggy_code}\n```\n\n"
            "Write the corrected `transform` function. `F` (pyspark.sql.functions), `T` "
            "(pyspark.sql.types) and `Window` are already imported; do not read or write files."
        )
        return text + attempts_text(attempts, "Fix the function so that it meets the spec.")
