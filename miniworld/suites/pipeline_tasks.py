"""PySpark bug-fix tasks: a reference pipeline family x a bug class x a variant.

Generation is pure and seeded (same suite file, same tasks, byte for byte): each family's
reference ``transform`` gets one injected bug (:mod:`miniworld.suites.bugs`) per variant, on the
family's generated datasets. Verification runs the reference twice (its output becomes the
expected output, and must be deterministic) and the buggy code once; a mutant that passes every
check is unobservable and discarded.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pyspark

import pipelines
from miniworld.checks import Expected, check_names
from miniworld.task_kind import TaskKind
from miniworld.sandbox.spark_sandbox import expected_from, score
from miniworld.suites import bugs
from miniworld.suites.imported import ImportedFamily
from miniworld.suites.suite import Suite, VerifyReport
from miniworld.task import Dataset, Task, data_digest

CACHE_VERSION = 1  # bump when a change of generation or verification must invalidate caches


def parse_suite(raw: dict, path: Path, task_kind: TaskKind) -> Suite:
    """A pipeline suite file's settings, as a Suite of ``task_kind``."""
    known = {"name", "description", "kind", "seed", "families", "bug_classes", "variants", "datasets",
             "eval_fraction", "pairs", "eval_pairs", "eval_by", "imported"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}")
    imported = tuple(ImportedFamily.from_yaml(str(k), v) for k, v in dict(raw.get("imported") or {}).items())
    all_families = pipelines.family_names() + [f.FAMILY for f in imported]
    families = all_families if raw.get("families", "all") == "all" else list(raw["families"])
    classes = list(bugs.BUG_CLASSES) if raw.get("bug_classes", "all") == "all" else list(raw["bug_classes"])
    pairs = [tuple(p) for p in raw["pairs"]] if raw.get("pairs") else None
    eval_pairs = [tuple(p) for p in raw["eval_pairs"]] if raw.get("eval_pairs") else None
    for fam in families + [p[0] for p in (pairs or []) + (eval_pairs or [])]:
        if fam not in all_families:
            raise ValueError(f"unknown family {fam!r}")
    for cls in classes + [p[1] for p in (pairs or []) + (eval_pairs or [])]:
        if cls not in bugs.BUG_CLASSES:
            raise ValueError(f"unknown bug class {cls!r}")
    kinds = tuple(raw.get("datasets", list(pipelines.KINDS)))
    for kind in kinds:
        if kind not in pipelines.KINDS:
            raise ValueError(f"unknown dataset kind {kind!r} (known: {', '.join(pipelines.KINDS)})")
    fraction = float(raw.get("eval_fraction", 0.25))
    if not 0.0 <= fraction < 1.0:
        raise ValueError("eval_fraction must be in [0, 1)")
    variants = int(raw.get("variants", 1))
    if variants < 1:
        raise ValueError("variants must be >= 1")
    eval_by = str(raw.get("eval_by", "pair"))
    if eval_by not in ("pair", "variant"):
        raise ValueError(f"eval_by must be 'pair' or 'variant', got {eval_by!r}")
    if eval_by == "variant" and (eval_pairs or variants < 2):
        raise ValueError("eval_by: variant holds out each pair's last variant: it needs variants >= 2 and no eval_pairs")
    return Suite(task_kind, str(raw.get("name", path.stem)), int(raw.get("seed", 0)), tuple(families),
                 tuple(classes), variants, kinds, fraction,
                 tuple(pairs) if pairs else None, tuple(eval_pairs) if eval_pairs else None, str(path), eval_by,
                 imported)


def _family(suite: Suite, name: str):
    """A family's module-like contract: the suite's own imported family, else ``pipelines/NAME``."""
    return next((f for f in suite.imported if f.FAMILY == name), None) or pipelines.load(name)


def _reference(module) -> str:
    """The reference source (an imported family stores it; a module's is read from its code)."""
    return bugs.normalize(getattr(module, "REFERENCE", None) or inspect.getsource(module.transform))


def family_datasets(suite: Suite, family: str) -> tuple[Dataset, ...]:
    """The family's input datasets for this suite (shared by all its tasks)."""
    module = _family(suite, family)
    out = []
    for kind in suite.kinds:
        rng = random.Random(f"{suite.seed}/{family}/{kind}")
        inputs = module.generate(rng, kind)
        digest = data_digest(inputs, module.INPUTS)
        views = {arg: f"mw_{family}_{digest}_{arg}" for arg in module.INPUTS}
        out.append(Dataset(kind, inputs, views))
    return tuple(out)


def _split(suite: Suite, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Held-out (family, bug class) pairs: per bug class, a seeded share, keeping one for training."""
    if suite.eval_pairs is not None:
        return set(suite.eval_pairs)
    rng = random.Random(f"{suite.seed}/split")
    held: set[tuple[str, str]] = set()
    for cls in dict.fromkeys(c for _, c in pairs):
        members = sorted(p for p in pairs if p[1] == cls)
        rng.shuffle(members)
        n_eval = min(len(members) - 1, math.floor(len(members) * suite.eval_fraction + 0.5))
        held.update(members[: max(n_eval, 0)])
    return held


def generate(suite: Suite) -> list[Task]:
    """Every candidate task of the suite (unverified), in a stable order."""
    candidates: list[tuple[str, str]] = list(suite.pairs or [])
    if suite.eval_pairs:
        candidates += [p for p in suite.eval_pairs if p not in candidates]
    if not candidates:
        candidates = [(f, c) for f in suite.families for c in suite.bug_classes]
    tasks: list[Task] = []
    applicable: list[tuple[str, str]] = []
    made: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for family, cls in candidates:
        module = _family(suite, family)
        reference = _reference(module)
        seen: set[str] = set()
        for variant in range(suite.variants):
            buggy = bugs.inject(reference, cls, _variant_seed(suite, family, cls, variant), module.INPUTS)
            if buggy is None or buggy in seen or buggy == reference:
                continue
            seen.add(buggy)
            made.setdefault((family, cls), []).append((variant, buggy))
        if (family, cls) in made:
            applicable.append((family, cls))
    held = _split(suite, applicable) if suite.eval_by == "pair" else set()
    datasets = {f: family_datasets(suite, f) for f in dict.fromkeys(f for f, _ in applicable)}
    for family, cls in applicable:
        module = _family(suite, family)
        reference = _reference(module)
        variants = made[(family, cls)]
        for k, (variant, buggy) in enumerate(variants):
            # eval_by variant: a pair's last variant is held out (a pair with one variant trains)
            last = suite.eval_by == "variant" and len(variants) > 1 and k == len(variants) - 1
            tasks.append(Task(
                id=f"{family}.{cls}.{k}", family=family, bug_class=cls, variant=variant,
                split="eval" if (family, cls) in held or last else "train", spec=module.SPEC.strip(),
                inputs=dict(module.INPUTS), keys=tuple(module.KEYS), ordered=bool(module.ORDERED),
                reference_code=reference, buggy_code=buggy, datasets=datasets[family], kind=suite.kind.name,
                checks_total=len(check_names(bool(module.ORDERED))) * len(datasets[family])))
    return tasks


def _variant_seed(suite: Suite, family: str, cls: str, variant: int) -> int:
    digest = hashlib.sha256(f"{suite.seed}/{family}/{cls}/{variant}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def digest(tasks: list[Task]) -> str:
    """Identity of a generated suite: codes, data and the Spark version that verifies it."""
    h = hashlib.sha256(f"v{CACHE_VERSION}/{pyspark.__version__}".encode())
    for t in tasks:
        h.update(json.dumps([t.id, t.split, t.reference_code, t.buggy_code,
                             [[d.name, sorted(d.views.values())] for d in t.datasets]]).encode())
    return h.hexdigest()[:20]


def verify(suite: Suite, sandbox, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Run references and mutants on Spark; keep the observable, deterministic tasks."""
    tasks = generate(suite)
    failures: list[dict] = []
    expected: dict[str, tuple[Expected, ...]] = {}
    by_family = {t.family: t for t in tasks}
    total = 2 * len(by_family) + len(tasks)
    done = 0
    ref_items = [(t, t.reference_code) for t in by_family.values() for _ in range(2)]
    replies = sandbox.run_many_raw(ref_items)
    for i, (family, task) in enumerate(by_family.items()):
        try:
            first, second = expected_from(replies[2 * i]), expected_from(replies[2 * i + 1])
        except ValueError as exc:
            failures.append({"family": family, "reason": str(exc)[:300]})
            continue
        if first != second:
            failures.append({"family": family, "reason": "reference output is not deterministic"})
            continue
        expected[family] = first
    done += len(ref_items)
    if progress:
        progress(done, total)
    kept: list[Task] = []
    unobservable: list[str] = []
    runnable = [replace(t, expected=expected[t.family]) for t in tasks if t.family in expected]
    for start in range(0, len(runnable), 16):
        chunk = runnable[start:start + 16]
        for task, reply in zip(chunk, sandbox.run_many_raw([(t, t.buggy_code) for t in chunk])):
            if score(task, reply, 0.0).outcome == "correct":
                unobservable.append(task.id)
            else:
                kept.append(task)
        done += len(chunk)
        if progress:
            progress(done, total)
    return VerifyReport(len(tasks), kept, unobservable, failures)
