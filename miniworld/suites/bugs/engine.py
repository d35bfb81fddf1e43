"""Mutant enumeration: parse, collect a class's sites, apply one variant, unparse."""
from __future__ import annotations

import ast
import textwrap
from functools import lru_cache

from miniworld.suites.bugs.context import _Context
from miniworld.suites.bugs.registry import _COLLECTORS, BUG_CLASSES


def normalize(source: str) -> str:
    """``ast.unparse(ast.parse(dedented source))``: the reference text mutants are compared to."""
    return ast.unparse(ast.parse(textwrap.dedent(source)))


def sites(source: str, bug_class: str, inputs: dict[str, str]) -> int:
    """How many distinct mutations this class can make in ``source`` (0 = not applicable)."""
    return len(_mutants(source, _check_class(bug_class), _freeze(inputs)))


def inject(source: str, bug_class: str, seed: int, inputs: dict[str, str]) -> str | None:
    """The mutated function source, or None when the class has no site in ``source``.

    Deterministic in (source, bug_class, seed, inputs); the mutation is ``seed`` modulo the
    number of mutations, enumerated site by site before variant by variant.
    """
    mutants = _mutants(source, _check_class(bug_class), _freeze(inputs))
    return mutants[seed % len(mutants)] if mutants else None



def _check_class(bug_class: str) -> str:
    if bug_class not in _COLLECTORS:
        raise ValueError(f"unknown bug class {bug_class!r}; known: {', '.join(BUG_CLASSES)}")
    return bug_class


def _freeze(inputs: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((inputs or {}).items())


@lru_cache(maxsize=1024)
def _mutants(source: str, bug_class: str, inputs: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Every distinct mutant text of one class, in enumeration order."""
    source = textwrap.dedent(source)
    reference = normalize(source)
    collect = _COLLECTORS[bug_class]
    counts = [len(site) for site in collect(_Context(ast.parse(source), dict(inputs)))]
    order = sorted((v, s) for s, n in enumerate(counts) for v in range(n))
    seen, mutants = {reference}, []
    for variant, site in order:
        tree = ast.parse(source)  # fresh tree: each mutation edits its own copy
        collect(_Context(tree, dict(inputs)))[site][variant]()
        text = ast.unparse(ast.fix_missing_locations(tree))
        if text in seen:
            continue
        try:
            ast.parse(text)
        except SyntaxError:  # pragma: no cover - a collector bug, never a valid mutant
            continue
        seen.add(text)
        mutants.append(text)
    return tuple(mutants)
