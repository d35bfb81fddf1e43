"""Reference PySpark pipelines, one module per family.

Each family module is plain data plus one reference function, so Mini-World can pose it as a
task, inject bugs into it (as AST edits of ``transform``) and check candidates against it.
A family module defines:

- ``FAMILY``: stable id (snake_case, equal to the module name).
- ``SPEC``: the plain-English spec a data engineer would write (what ``transform`` returns).
- ``INPUTS``: ``{argument_name: "DDL schema"}`` in the order of ``transform``'s parameters.
- ``KEYS``: output columns that identify a row (for the key-set check); ``[]`` if none.
- ``ORDERED``: ``True`` when the spec asks for a row order (adds an ordering check).
- ``generate(rng, kind) -> {argument_name: [tuple, ...]}``: seeded input rows for one dataset;
  ``kind`` is ``"typical"``, ``"edge"`` or ``"adversarial"``.
- ``transform(...) -> DataFrame``: the reference, DataFrame API only (no RDD, no
  ``sparkContext``, no I/O), self-contained: it may use only the names ``F``
  (``pyspark.sql.functions``), ``T`` (``pyspark.sql.types``), ``Window`` and its parameters,
  because its source text is what candidates receive and edit.

This package imports only pyspark (and the standard library), so it runs on classic Spark,
Spark Connect and Databricks alike.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

KINDS = ("typical", "edge", "adversarial")


def family_names() -> list[str]:
    """Sorted ids of every family module in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> ModuleType:
    """Import one family module by id (KeyError naming it when unknown)."""
    if name not in family_names():
        raise KeyError(f"unknown pipeline family {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
