"""A Mini-World task: a pipeline family's spec and data, a buggy version of its reference code,
and (once verified on Spark) the reference's output on each dataset.

Data only. What differs between kinds of task (PySpark, plain Python, ...) -- the prompt, the
gate, the runner, the checks -- is the kind's (:mod:`miniworld.kinds`), named by ``kind``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from miniworld import rows
from miniworld.checks import Expected


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
    kind: str = "pyspark"  # a name in miniworld.kinds.registry
    # plain-Python tasks (HumanEval, see miniworld.suites.humaneval): the function to write and its test
    entry_point: str = ""
    test_code: str = field(default="", repr=False)
    checks_total: int = 0  # how many checks score an answer (counted by the kind that made the task)

    def summary(self) -> dict:
        return {"id": self.id, "family": self.family, "bug_class": self.bug_class, "split": self.split}

    def to_json(self) -> dict:
        """What ``tasks show --json`` prints (inputs as schemas and per-dataset row counts)."""
        return {**self.summary(), "variant": self.variant, "spec": self.spec, "inputs": self.inputs,
                "keys": list(self.keys), "ordered": self.ordered, "buggy_code": self.buggy_code,
                "reference_code": self.reference_code, "checks_total": self.checks_total,
                "datasets": [{"name": d.name, "rows": {k: len(v) for k, v in d.inputs.items()}}
                             for d in self.datasets]}


def data_digest(inputs: dict[str, list[tuple]], schemas: dict[str, str]) -> str:
    """Content hash of a dataset (names its server-side views; same data, same views)."""
    payload = json.dumps({k: [schemas[k], rows.encode_rows(v)] for k, v in sorted(inputs.items())},
                         sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]

