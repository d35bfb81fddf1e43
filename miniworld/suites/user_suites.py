"""Turn an imported family into a verified suite file users can train and bench on.

The catalog's own machinery does the work: the family's reference is mutated by every bug class
that has a site in it (:mod:`miniworld.suites.bugs`), :func:`miniworld.suites.catalog.verify` runs reference and
mutants on Spark in the sandbox, and only observable mutants (output differs from the
reference's on the generated data) are kept. The suite file then lists the (family, bug class)
pairs that kept at least one mutant, with the family itself (spec, schemas, reference, rows)
stored inline, and the verification is cached so ``tasks list``/``train``/``bench`` start at once.

Where suites go: ``--suite NAME`` is ``user_suites_dir()/NAME.yaml`` (``$COSMOCORE_SUITES``, else
``~/.local/share/cosmocore/suites``), which :func:`miniworld.suites.catalog.load_suite` searches after the
built-in suites; ``--suite path/to/file.yaml`` is that file. An existing suite written by an
earlier import gains the new family (importing several functions into one suite); replacing a
family it already has, or touching a file an import did not write, needs ``force``. Nothing is
written unless the import succeeds, and the file is replaced atomically.
"""
from __future__ import annotations

import datetime as dt
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from miniworld.suites import bugs, catalog
from miniworld.suites.imported import ImportedFamily
from miniworld.suites.importer import Analysis, PipelineImportError

VARIANTS = 3  # mutants tried per (family, bug class); the last one is held out for evaluation
SEED = 0


@dataclass
class ImportResult:
    """What an import did (``tasks import --json`` prints :meth:`to_json`)."""

    suite: str
    path: Path
    analysis: Analysis
    family: ImportedFamily
    report: catalog.VerifyReport
    applicable: list[str]
    families: list[str]  # every family of the suite now
    duration_s: float

    def to_json(self) -> dict[str, Any]:
        mine = [t for t in self.report.kept if t.family == self.family.FAMILY]
        per_class = Counter(t.bug_class for t in mine)
        tried = [u for u in self.report.unobservable if u.startswith(self.family.FAMILY + ".")]
        return {"suite": self.suite, "path": str(self.path), "family": self.family.FAMILY,
                "function": self.analysis.function, "inputs": self.family.INPUTS,
                "schema_sources": self.analysis.schema_sources, "keys": self.family.KEYS,
                "ordered": self.family.ORDERED, "tasks": len(mine),
                **{split: sum(t.split == split for t in mine) for split in ("train", "dev", "test")},
                "bug_classes": dict(sorted(per_class.items())),
                "not_applicable": [c for c in bugs.BUG_CLASSES if c not in self.applicable],
                "discarded_unobservable": len(tried), "suite_families": self.families,
                "duration_s": round(self.duration_s, 2)}


# -- where -----------------------------------------------------------------------------------
def target(suite: str) -> Path:
    """The suite file an import writes (see the module docstring); PipelineImportError if unusable."""
    if suite.endswith((".yaml", ".yml")):
        return Path(suite)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", suite):
        raise PipelineImportError(f"--suite {suite!r}: a suite name is letters, digits, '_', '-', '.' "
                                  "(or give a path ending in .yaml)")
    if (catalog.SUITES_DIR / f"{suite}.yaml").exists():
        raise PipelineImportError(f"--suite {suite!r} is a built-in suite; choose another name")
    return catalog.user_suites_dir() / f"{suite}.yaml"


def _existing(path: Path, family: str, force: bool) -> dict[str, Any] | None:
    """The suite file's settings when the import may add to it; None when there is none."""
    if not path.exists():
        return None
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        raw = None
    if not isinstance(raw, dict) or "imported" not in raw:
        if force:
            return None
        raise PipelineImportError(f"{path} exists and was not written by `tasks import`; "
                                  "choose another --suite or pass --force to replace it")
    if family in (raw.get("imported") or {}) and not force:
        raise PipelineImportError(f"suite {raw.get('name', path.stem)!r} already has {family!r} "
                                  f"({path}); pass --force to replace it")
    return raw


def check_target(suite: str, family: str, force: bool) -> Path:
    """Fail before Spark starts when the import could not be written anyway."""
    path = target(suite)
    _existing(path, family, force)
    return path


# -- the import ------------------------------------------------------------------------------
def import_family(analysis: Analysis, family: ImportedFamily, suite: str, sandbox, force: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> ImportResult:
    """Verify the family's mutants on ``sandbox`` and write (or extend) the suite file."""
    started = time.monotonic()
    path = target(suite)
    raw = _existing(path, family.FAMILY, force) or {}
    name = str(raw.get("name") or path.stem)
    applicable = [c for c in bugs.BUG_CLASSES if bugs.sites(bugs.normalize(family.REFERENCE), c, family.INPUTS)]
    if not applicable:
        raise PipelineImportError(f"{family.origin}: no bug class has a site in this function "
                                  "(it has no join, filter, aggregation, window, cast or column reference to mutate)")
    others = [p for p in raw.get("pairs") or [] if p[0] != family.FAMILY]
    earlier = _cached_others(path, raw, family.FAMILY) if others else []
    report, family = _verify(name, family, applicable, sandbox, progress)
    mine = report.kept
    if not mine:
        raise PipelineImportError(f"{family.origin}: none of {len(applicable)} applicable bug classes changed the "
                                  "output on the generated data; give --sample data that exercises the code")
    kept_classes = list(dict.fromkeys(t.bug_class for t in mine))
    final = _settings(raw, name, family, others + [[family.FAMILY, c] for c in kept_classes])
    _write(path, final, family)
    if earlier is not None:  # else the suite verifies itself on first use
        final_suite = catalog.load_suite(str(path))
        merged = catalog.VerifyReport(report.generated, earlier + mine, report.unobservable, [])
        catalog.save_cache(final_suite, merged, catalog.generate(final_suite))
        report = merged
    return ImportResult(name, path, analysis, family, report, applicable, list(final["imported"]),
                        time.monotonic() - started)


def _cached_others(path: Path, raw: dict, family: str) -> list | None:
    """The verified tasks of the suite's other families, from the cache of the suite as it was
    (so adding a family re-runs nothing of the others); None when that suite was never verified."""
    try:
        before = catalog.load_suite(str(path))
    except catalog.SuiteError:
        return None
    cached = catalog.load_cached(before)
    return None if cached is None else [t for t in cached if t.family != family]


def _verify(name: str, family: ImportedFamily, applicable: list[str], sandbox,
            progress) -> tuple[catalog.VerifyReport, ImportedFamily]:
    """Verify every applicable pair of the family alone. Redo once when the reference timed out
    (the first job on a cold or busy server can), and once without output keys the output turns
    out to lack (they were read off the code, and a later select may drop one)."""
    retried_timeout = False
    for _ in range(3):
        settings = _settings({}, name, family, [[family.FAMILY, c] for c in applicable])
        with tempfile.TemporaryDirectory(prefix="cosmocore-import-") as tmp:
            candidate_path = Path(tmp) / f"{name}.yaml"
            _write(candidate_path, settings, family)
            candidate = catalog.load_suite(str(candidate_path))  # the file as it will be read back
        report = catalog.verify(candidate, sandbox, progress)
        if report.failures:
            reason = " ".join(str(report.failures[0]["reason"]).split())
            if "timed_out': True" in reason and not retried_timeout:
                retried_timeout = True
                continue
            if "timed_out': True" in reason:
                raise PipelineImportError(f"{family.origin} timed out on Spark twice (a busy machine, or a very slow "
                                          "plan): try again, or with --spark-remote")
            raise PipelineImportError(f"{family.origin} fails on generated data ({reason[:240]}); check the schemas "
                                      "or pass --sample ARG=FILE with real rows")
        mine = [t for t in report.kept if t.expected]
        columns = {c for c, _ in mine[0].expected[0].schema} if mine else set()
        if not mine or set(family.KEYS) <= columns:
            return report, family
        family = replace(family, KEYS=[])  # keys inferred from the code that the output does not have
    return report, family


def _settings(raw: dict, name: str, family: ImportedFamily, pairs: list) -> dict[str, Any]:
    imported = dict(raw.get("imported") or {})
    imported[family.FAMILY] = family.to_yaml()
    families = list(imported)
    return {"name": name,
            "description": f"imported pipelines: {', '.join(families)}",
            "seed": int(raw.get("seed", SEED)), "variants": int(raw.get("variants", VARIANTS)),
            "eval_by": "variant", "datasets": list(raw.get("datasets") or ["typical", "edge", "adversarial"]),
            "pairs": [list(p) for p in pairs], "imported": imported}


# -- the file --------------------------------------------------------------------------------
class _Row(list):
    """A row of data: written on one line."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Row, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))
_Dumper.add_representer(str, lambda d, data: d.represent_scalar(
    "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None))


def _flow_rows(settings: dict[str, Any]) -> dict[str, Any]:
    out = dict(settings)
    out["pairs"] = [_Row(p) for p in settings["pairs"]]
    out["imported"] = {fam: {**body, "data": {kind: {arg: [_Row(r) for r in rows] for arg, rows in by_arg.items()}
                                              for kind, by_arg in body["data"].items()}}
                       for fam, body in settings["imported"].items()}
    return out


def _write(path: Path, settings: dict[str, Any], family: ImportedFamily) -> None:
    """Write the suite file atomically (a failed import leaves the old file as it was)."""
    header = (f"# Written by `cosmocore tasks import` ({dt.date.today().isoformat()}); last import: {family.origin}.\n"
              "# Each imported family carries its spec, input schemas, reference code and input rows.\n"
              "# Re-run the import with --force to refresh a family; `cosmocore tasks verify --suite` re-checks it.\n")
    body = yaml.dump(_flow_rows(settings), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + body, encoding="utf-8")
    tmp.replace(path)
