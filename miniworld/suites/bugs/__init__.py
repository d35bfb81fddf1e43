"""Bug injection: realistic data-pipeline bugs as AST edits of a family's ``transform`` source.

A *bug class* is a named kind of mistake a data engineer makes (a wrong join key, a ``>=`` that
became ``>``, a forgotten ``dropDuplicates``...). Each class is one small *collector* function
registered in :data:`BUG_CLASSES`: it walks the parsed source and returns the class's *sites*,
the places it can strike, each with one or more *variants* (e.g. several plausible wrong column
names). A variant is a closure that edits the tree in place.

:func:`inject` parses the source afresh, collects the sites, applies exactly one variant and
unparses, so reference (:func:`normalize`) and mutant differ only at the bug. Mutations are
enumerated variant-major (every site's first variant, then every site's second...), so
consecutive seeds hit different sites before they revisit one; mutants identical to the reference
or to an earlier mutant are dropped, so :func:`sites` counts distinct, real bugs.

Column-aware classes read the family's ``INPUTS`` (``{parameter: "DDL schema"}``) and follow the
columns of each DataFrame variable through simple chains (select, withColumn, join, agg...), so a
swapped join key has the same type and exists on both sides, and a hallucinated column exists
nowhere.

The package: :mod:`.registry` (the classes by id), :mod:`.engine` (enumerating mutants),
:mod:`.context` (what a collector sees), :mod:`.ast_edits` and :mod:`.ddl` (helpers), and the
collectors by family: :mod:`.joins`, :mod:`.filters`, :mod:`.aggregations`, :mod:`.columns`,
:mod:`.steps`. They are imported below in catalogue order: the order of :data:`BUG_CLASSES` is
the order suites list "all" bug classes in, so it decides generated task ids and splits.
"""
from __future__ import annotations

# collectors register on import, in catalogue order (see the docstring)
from miniworld.suites.bugs import joins, filters, aggregations, columns, steps  # noqa: F401,I001
from miniworld.suites.bugs.columns import hallucinated_names
from miniworld.suites.bugs.ddl import parse_ddl
from miniworld.suites.bugs.engine import _mutants, inject, normalize, sites
from miniworld.suites.bugs.registry import BUG_CLASSES, BugClass

__all__ = ["BUG_CLASSES", "BugClass", "hallucinated_names", "inject", "normalize", "parse_ddl", "sites", "_mutants"]
