"""A Mini-World task: a pipeline family's spec and data, a buggy version of its reference code,
and (once verified on Spark) the reference's output on each dataset. Also the prompt a model sees.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from miniworld import rows
from miniworld.checks import Expected, check_names


@dataclass(frozen=True)
class Dataset:
    """One set of input tables; ``views`` name their global temp views on the Spark server."""

    name: str
    inputs: dict[str, list[tuple]]
    views: dict[str, str]


@dataclass(frozen=True)
class Task:
    id: str
    family: str
    bug_class: str
    variant: int
    split: str
    spec: str
    inputs: dict[str, str]  # argument -> DDL schema
    keys: tuple[str, ...]
    ordered: bool
    reference_code: str
    buggy_code: str
    datasets: tuple[Dataset, ...]
    expected: tuple[Expected, ...] | None = field(default=None, compare=False)
    # plain-Python tasks (HumanEval, see miniworld.suites.humaneval): the function to write and its test
    kind: str = "pyspark"  # "pyspark" | "python"
    entry_point: str = ""
    test_code: str = field(default="", repr=False)

    @property
    def checks_total(self) -> int:
        if self.kind == "python":  # one check per top-level assert statement of the test
            from miniworld.sandbox.python_child import split_checks

            return sum(is_check for _, is_check in split_checks(self.test_code)[1])
        return len(check_names(self.ordered)) * len(self.datasets)

    def summary(self) -> dict:
        return {"id": self.id, "family": self.family, "bug_class": self.bug_class, "split": self.split}

    def to_json(self) -> dict:
        """What ``tasks show --json`` prints (inputs as schemas and per-dataset row counts)."""
        return {**self.summary(), "variant": self.variant, "spec": self.spec, "inputs": self.inputs,
                "keys": list(self.keys), "ordered": self.ordered, "buggy_code": self.buggy_code,
                "reference_code": self.reference_code, "checks_total": self.checks_total,
                "datasets": [{"name": d.name, "rows": {k: len(v) for k, v in d.inputs.items()}}
                             for d in self.datasets],
                **({"kind": self.kind, "entry_point": self.entry_point, "test_code": self.test_code}
                   if self.kind == "python" else {})}


def data_digest(inputs: dict[str, list[tuple]], schemas: dict[str, str]) -> str:
    """Content hash of a dataset (names its server-side views; same data, same views)."""
    payload = json.dumps({k: [schemas[k], rows.encode_rows(v)] for k, v in sorted(inputs.items())},
                         sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


SYSTEM_PROMPT = (
    "You are a senior data engineer. You fix bugs in PySpark DataFrame pipelines. "
    "Answer with the complete corrected function in a single ```python code block."
)


def prompt(task: Task, attempts: list[tuple[str, str]] | None = None) -> str:
    """The user message for a turn; ``attempts`` are earlier (code, feedback) pairs."""
    if task.kind == "python":
        from miniworld.suites.humaneval import prompt as python_prompt

        return python_prompt(task, attempts)
    schemas = "\n".join(f"- `{name}`: {ddl}" for name, ddl in task.inputs.items())
    text = (
        f"## Spec\n{task.spec}\n\n## Inputs (Spark DataFrames)\n{schemas}\n\n"
        "## Code with a bug\nThis implementation does not meet the spec:\n"
        f"```python\n{task.buggy_code}\n```\n\n"
        "Write the corrected `transform` function. `F` (pyspark.sql.functions), `T` "
        "(pyspark.sql.types) and `Window` are already imported; do not read or write files."
    )
    return text + attempts_text(attempts, "Fix the function so that it meets the spec.")


def attempts_text(attempts: list[tuple[str, str]] | None, ask: str) -> str:
    """Earlier (code, feedback) pairs as the prompt shows them, each closed by ``ask``."""
    return "".join(f"\n\n## Your attempt {i}\n```python\n{code}\n```\nResult of running it: {fb}\n{ask}"
                   for i, (code, fb) in enumerate(attempts or [], start=1))


def messages(task: Task, attempts: list[tuple[str, str]] | None = None) -> list[dict]:
    """Chat-template messages for a turn."""
    if task.kind == "python":
        from miniworld.suites.humaneval import SYSTEM_PROMPT as PYTHON_SYSTEM_PROMPT

        return [{"role": "system", "content": PYTHON_SYSTEM_PROMPT}, {"role": "user", "content": prompt(task, attempts)}]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt(task, attempts)}]
