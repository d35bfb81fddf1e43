"""Task suites: YAML in ``tasks/`` -> generated tasks -> verified -> cached.

A suite file names its task kind (``kind:``, PySpark when absent); the kind
(:mod:`miniworld.kinds`) parses the rest, generates the tasks (pure and seeded: same file, same
tasks, byte for byte) and verifies them in its sandbox. The verified catalog is cached under
``~/.cache/cosmocore`` keyed by the kind's digest of everything generated (for PySpark, plus the
Spark version), so later loads start no Spark.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import yaml

from miniworld import rows
from miniworld.checks import Expected
from miniworld.kinds import registry
from miniworld.suites.suite import SPLITS, Suite, SuiteError, VerifyReport
from miniworld.task import Task

__all__ = ["SPLITS", "Suite", "SuiteError", "VerifyReport", "SUITES_DIR", "cache_dir", "generate", "load_cached",
           "load_suite", "load_tasks", "save_cache", "suite_names", "user_suites_dir", "verify"]


def _suites_dir() -> Path:
    """Where the suite YAML files are: ``miniworld/suites/files`` in an installed wheel (the build
    maps the repository's top-level ``tasks/`` there, see pyproject.toml), else the checkout's ``tasks/``."""
    packaged = Path(__file__).resolve().parent / "files"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "tasks"


SUITES_DIR = _suites_dir()


def user_suites_dir() -> Path:
    """Where ``cosmocore tasks import`` writes suites of users' own pipelines (writable, outside
    the package): ``$COSMOCORE_SUITES``, else ``$XDG_DATA_HOME/cosmocore/suites``."""
    base = os.environ.get("COSMOCORE_SUITES") or os.path.join(
        os.environ.get("XDG_DATA_HOME", os.path.expanduser("~/.local/share")), "cosmocore", "suites")
    return Path(base)


def suite_names() -> list[str]:
    """Built-in suites, then users' imported ones (a built-in name wins)."""
    return sorted({p.stem for d in (SUITES_DIR, user_suites_dir()) for p in d.glob("*.yaml")})


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (``tasks/NAME.yaml``) or path; SuiteError names what is wrong."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            path = user_suites_dir() / f"{name_or_path}.yaml"
    if not path.exists():
        raise SuiteError(f"unknown suite {name_or_path!r} (known: {', '.join(suite_names())})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"suite file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"suite file {path} must be a mapping of settings")
    try:
        return _parse_suite(raw, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise SuiteError(f"suite file {path}: {exc}") from None


def _parse_suite(raw: dict, path: Path) -> Suite:
    """The suite file's kind (``kind:``, PySpark when absent) parses the rest."""
    return registry.get(raw.get("kind", registry.DEFAULT)).parse_suite(raw, path)


def generate(suite: Suite) -> list[Task]:
    """Every candidate task of the suite (unverified), in a stable order."""
    return suite.kind.generate(suite)


def verify(suite: Suite, sandbox: Any, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Run the suite's references on ``sandbox`` (its kind's): the tasks worth keeping."""
    return suite.kind.verify(suite, sandbox, progress)


# -- verification and cache ------------------------------------------------------------------
def cache_dir() -> Path:
    base = os.environ.get("COSMOCORE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "cosmocore")
    return Path(base) / "tasks"


def save_cache(suite: Suite, report: VerifyReport, generated: list[Task]) -> Path:
    path = cache_dir() / f"{suite.name}-{suite.kind.digest(generated)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    families = {t.family: t.expected for t in report.kept}
    payload = {"suite": suite.name, "kept": [t.id for t in report.kept],
               "unobservable": report.unobservable, "failures": report.failures,
               "expected": {f: [{"schema": [list(c) for c in e.schema], "rows": rows.encode_rows(list(e.rows))}
                                for e in exp] for f, exp in families.items()}}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two processes verifying at once never share one
    tmp.write_text(json.dumps(payload, ensure_ascii=False))
    tmp.replace(path)  # atomic: a killed run never leaves half a cache
    return path


def load_cached(suite: Suite) -> list[Task] | None:
    """Verified tasks from the cache, or None when this exact suite was never verified here."""
    generated = generate(suite)
    path = cache_dir() / f"{suite.name}-{suite.kind.digest(generated)}.json"
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text())
        expected = {f: tuple(Expected(tuple(tuple(c) for c in e["schema"]), tuple(rows.decode_rows(e["rows"])))
                             for e in exps) for f, exps in payload["expected"].items()}
        kept = set(payload["kept"])
        return [replace(t, expected=expected[t.family]) for t in generated if t.id in kept]
    except (ValueError, KeyError, TypeError):
        return None  # a damaged cache is rebuilt, not trusted


def load_tasks(suite: Suite, sandbox=None, progress: Callable[[int, int], None] | None = None) -> list[Task]:
    """Verified tasks: from the cache, else verified now on ``sandbox``."""
    cached = load_cached(suite)
    if cached is not None:
        return cached
    if sandbox is None and not suite.kind.needs_spark:  # verify here and now
        with suite.kind.open_sandbox() as box:
            return load_tasks(suite, box, progress)
    if sandbox is None:
        raise SuiteError(f"suite {suite.name!r} is not verified yet: run `cosmocore tasks verify --suite {suite.name}`")
    report = verify(suite, sandbox, progress)
    if not any("'timed_out': True" in f["reason"] for f in report.failures):  # a load spike is not the suite's
        save_cache(suite, report, generate(suite))
    return report.kept
