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
    known = {"name", "description", "kind", "seed", "families", "bug_classes", "variants", "datasets", "pairs", "eval_by",
             "imported", "test_fraction", "dev_fraction", "test_pairs", "dev_pairs", "test_variants", "dev_variants",
             "eval_fraction", "eval_pairs"}  # the last two: older names of test_fraction, test_pairs
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}")
    imported = tuple(ImportedFamily.from_yaml(str(k), v) for k, v in dict(raw.get("imported") or {}).items())
    all_families = pipelines.family_names() + [f.FAMILY for f in imported]
    families = all_families if raw.get("families", "all") == "all" else list(raw["families"])
    classes = list(bugs.BUG_CLASSES) if raw.get("bug_classes", "all") == "all" else list(raw["bug_classes"])

    def pair_list(key: str, old: str | None = None) -> list[tuple[str, str]] | None:
        value = raw.get(key, raw.get(old) if old else None)
        return [tuple(p) for p in value] if value else None

    pairs, test_pairs, dev_pairs = pair_list("pairs"), pair_list("test_pairs", "eval_pairs"), pair_list("dev_pairs")
    named = (pairs or []) + (test_pairs or []) + (dev_pairs or [])
    for fam in families + [p[0] for p in named]:
        if fam not in all_families:
            raise ValueError(f"unknown family {fam!r}")
    for cls in classes + [p[1] for p in named]:
        if cls not in bugs.BUG_CLASSES:
            raise ValueError(f"unknown bug class {cls!r}")
    if set(test_pairs or ()) & set(dev_pairs or ()):
        raise ValueError("a pair cannot be in both test_pairs and dev_pairs")
    kinds = tuple(raw.get("datasets", list(pipelines.KINDS)))
    for kind in kinds:
        if kind not in pipelines.KINDS:
            raise ValueError(f"unknown dataset kind {kind!r} (known: {', '.join(pipelines.KINDS)})")
    test_fraction = float(raw.get("test_fraction", raw.get("eval_fraction", 0.25)))
    dev_fraction = float(raw.get("dev_fraction", 0.0))
    if not (0.0 <= test_fraction < 1.0 and 0.0 <= dev_fraction < 1.0 and test_fraction + dev_fraction < 1.0):
        raise ValueError("test_fraction and dev_fraction must be in [0, 1) and sum to under 1")
    variants = int(raw.get("variants", 1))
    if variants < 1:
        raise ValueError("variants must be >= 1")
    eval_by = str(raw.get("eval_by", "pair"))
    if eval_by not in ("pair", "variant"):
        raise ValueError(f"eval_by must be 'pair' or 'variant', got {eval_by!r}")
    test_variants, dev_variants = int(raw.get("test_variants", 1)), int(raw.get("dev_variants", 0))
    if eval_by == "variant" and (test_variants < 1 or dev_variants < 0 or variants < test_variants + dev_variants + 1):
        raise ValueError("eval_by: variant holds out each pair's last test_variants (>= 1) and dev_variants (>= 0) "
                         "mutants: it needs variants >= test_variants + dev_variants + 1")
    return Suite(task_kind, str(raw.get("name", path.stem)), int(raw.get("seed", 0)), tuple(families),
                 tuple(classes), variants, kinds, test_fraction,
                 tuple(pairs) if pairs else None, tuple(test_pairs) if test_pairs else None, str(path), eval_by,
                 imported, dev_fraction=dev_fraction, dev_pairs=tuple(dev_pairs) if dev_pairs else None,
                 test_variants=test_variants, dev_variants=dev_variants)


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


def _held_pairs(suite: Suite, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(family, bug class) pairs held out whole -> "test" or "dev": the suite's lists, else (eval_by
    pair) per bug class a seeded share for each, keeping at least one pair of the class to train."""
    if suite.test_pairs is not None or suite.dev_pairs is not None:
        return {**{p: "dev" for p in suite.dev_pairs or ()}, **{p: "test" for p in suite.test_pairs or ()}}
    if suite.eval_by != "pair":
        return {}
    rng = random.Random(f"{suite.seed}/split")
    held: dict[tuple[str, str], str] = {}
    for cls in dict.fromkeys(c for _, c in pairs):
        members = sorted(p for p in pairs if p[1] == cls)
        rng.shuffle(members)
        n_test = min(len(members) - 1, math.floor(len(members) * suite.test_fraction + 0.5))
        n_dev = min(len(members) - 1 - max(n_test, 0), math.floor(len(members) * suite.dev_fraction + 0.5))
        held.update({p: "test" for p in members[: max(n_test, 0)]})
        held.update({p: "dev" for p in members[max(n_test, 0): max(n_test, 0) + max(n_dev, 0)]})
    return held


def _variant_splits(suite: Suite, n: int, whole: str | None) -> list[str | None]:
    """Each of a pair's ``n`` mutants -> its split (None: not used). eval_by variant: the last
    ``test_variants`` go to test and the ``dev_variants`` before them to dev, the rest train (a
    pair with too few mutants holds out fewer, and with one only trains); a pair held out whole
    keeps as many mutants as a trained pair holds out for its split, so no pair outweighs the others."""
    if whole is not None:
        keep = (suite.test_variants if whole == "test" else max(suite.dev_variants, 1)) if suite.eval_by == "variant" else n
        return [whole if k >= n - keep else None for k in range(n)]
    if suite.eval_by != "variant" or n < 2:
        return ["train"] * n
    n_test = min(suite.test_variants, n - 1)
    n_dev = min(suite.dev_variants, n - 1 - n_test)
    return ["train"] * (n - n_test - n_dev) + ["dev"] * n_dev + ["test"] * n_test


def generate(suite: Suite) -> list[Task]:
    """Every candidate task of the suite (unverified), in a stable order."""
    candidates: list[tuple[str, str]] = list(suite.pairs or [])
    candidates += [p for p in (suite.test_pairs or ()) + (suite.dev_pairs or ()) if p not in candidates]
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
    held = _held_pairs(suite, applicable)
    datasets = {f: family_datasets(suite, f) for f in dict.fromkeys(f for f, _ in applicable)}
    for family, cls in applicable:
        module = _family(suite, family)
        reference = _reference(module)
        variants = made[(family, cls)]
        splits = _variant_splits(suite, len(variants), held.get((family, cls)))
        for k, ((variant, buggy), split) in enumerate(zip(variants, splits)):
            if split is None:
                continue
            tasks.append(Task(
                id=f"{family}.{cls}.{k}", family=family, bug_class=cls, variant=variant,
                split=split, spec=module.SPEC.strip(),
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


def timed_out(reply: dict) -> bool:
    """A reply whose run hit the wall-clock limit (on a loaded machine, not the code's fault)."""
    return any(isinstance(ds.get("error"), dict) and ds["error"].get("timed_out") for ds in reply.get("datasets", []))


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
    for _ in range(2):  # a reference that timed out on a busy machine is run again, alone, not dropped
        for i in [i for i, r in enumerate(replies) if timed_out(r)]:
            replies[i] = sandbox.run_many_raw([ref_items[i]])[0]
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
