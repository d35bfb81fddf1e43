"""Seeded input data for a pipeline known only by its input schemas (imported user pipelines).

The built-in families hand-write ``generate(rng, kind)`` so that each of their bugs shows in the
output. An imported pipeline has no such author, so this module derives the same kind of data
from what the code itself says (:class:`Hints`, read off its AST by :mod:`miniworld.suites.importer`):

- the literals a column is compared with (``amount >= 10``, ``status == "completed"``) appear in
  the data exactly, just off by one, and (for strings) in other case and padding, so an
  off-by-one boundary or a dropped ``lower()``/``trim()`` changes the result;
- join keys share one small domain across inputs, with orphans on the first input, so a left join
  turned inner (or a wrong key) loses or gains rows;
- grouping columns have few values, so groups have several rows and a forgotten key or a wrong
  aggregate shows;
- every column but a row id is sometimes null, and the adversarial dataset repeats rows, so null
  handling and deduplication matter.

Sample rows (from ``--sample`` files or a docstring example) are kept verbatim in the typical
dataset and their values join each column's domain.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from miniworld.suites.bugs import parse_ddl

KINDS_SIZE = {"typical": 40, "edge": 8, "adversarial": 60}
_INTS = {"int", "bigint", "smallint", "tinyint"}
_FLOATS = {"double", "float"}
_BASE_DATE = dt.date(2024, 1, 1)


class UnsupportedType(ValueError):
    """A column type this generator cannot produce values for (the message names it)."""


@dataclass
class Hints:
    """What the pipeline's code says about its input columns (by column name)."""

    literals: dict[str, list[Any]] = field(default_factory=dict)  # column -> compared constants
    join_keys: set[str] = field(default_factory=set)
    group_keys: set[str] = field(default_factory=set)
    order_keys: set[str] = field(default_factory=set)  # sorted on: unique values, so no ties
    samples: dict[str, list[tuple]] = field(default_factory=dict)  # input -> example rows


def supported(kind: str) -> bool:
    """Whether :func:`generate` can produce values of this normalised Spark type. Not DECIMAL:
    input rows cross to the sandbox as JSON (:mod:`miniworld.rows`), where a Decimal becomes a
    float that Spark will not put in a DECIMAL column."""
    if kind.startswith("array<"):
        return supported(kind[len("array<"):-1])
    return kind in _INTS | _FLOATS | {"string", "boolean", "date", "timestamp"}


def generate(schemas: dict[str, str], hints: Hints, rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Rows for every input (``{argument: DDL}``) for one dataset kind, deterministic in ``rng``."""
    columns = {arg: parse_ddl(ddl) for arg, ddl in schemas.items()}
    for arg, cols in columns.items():
        for col, typ in cols.items():
            if not supported(typ):
                raise UnsupportedType(f"column {arg}.{col} has type {typ}, which Mini-World inputs cannot "
                                      "hold yet (DOUBLE instead of DECIMAL works; MAP/STRUCT do not)")
    shared = _shared_columns(columns) | hints.join_keys
    out: dict[str, list[tuple]] = {}
    for position, (arg, cols) in enumerate(columns.items()):
        row_id = _row_id(cols, shared | hints.group_keys)
        n = KINDS_SIZE[kind] if position == 0 else max(KINDS_SIZE[kind] // 2, 4)
        pool = _domains(arg, cols, hints, shared, kind, orphans=position == 0)
        sorted_on = hints.order_keys - hints.group_keys - {row_id}
        unique = {col: rng.sample(range(1, n + 1), n) for col in cols if col in sorted_on}
        rows = [tuple(_cast(_plain(typ, unique[col][i - 1], col), typ) if col in unique
                      else _value(rng, col, typ, pool[col], kind, i, col == row_id) for col, typ in cols.items())
                for i in range(1, n + 1)]
        if kind == "typical":
            rows = [_coerce(r, cols) for r in hints.samples.get(arg, [])] + rows
        if kind == "edge":
            rows.append(tuple((n + 1 if c == row_id else None) for c in cols))  # all-null row
        if kind == "adversarial":
            rows += [rows[i] for i in sorted(rng.sample(range(len(rows)), min(6, len(rows))))]
        out[arg] = rows
    return out


def _shared_columns(columns: dict[str, dict[str, str]]) -> set[str]:
    """Column names (of one type) present in more than one input: the likely join keys."""
    seen: dict[str, set[str]] = {}
    for cols in columns.values():
        for col, typ in cols.items():
            seen.setdefault(col, set()).add(typ)
    return {c for c, types in seen.items() if sum(c in cols for cols in columns.values()) > 1 and len(types) == 1}


def _row_id(cols: dict[str, str], shared: set[str]) -> str | None:
    """The first integer ``*id`` column not shared with another input: a unique row id."""
    for col, typ in cols.items():
        if typ in _INTS and col.lower().endswith("id") and col not in shared:
            return col
    return None


def _domains(arg: str, cols: dict[str, str], hints: Hints, shared: set[str], kind: str,
             orphans: bool) -> dict[str, tuple[list[Any], list[Any]]]:
    """Candidate values per column: (literals, their near misses and sample values; plain values)."""
    pool: dict[str, tuple[list[Any], list[Any]]] = {}
    sample_rows = hints.samples.get(arg, [])
    names = list(cols)
    for col, typ in cols.items():
        values: list[Any] = []
        for lit in hints.literals.get(col, []):
            values += _near(lit, typ, kind)
        if sample_rows:
            values += [r[names.index(col)] for r in sample_rows if r[names.index(col)] is not None]
        size = 4 if col in hints.group_keys else 6 if col in shared else 12
        if col in shared and orphans:
            size += 3  # keys the other inputs lack: a left join keeps them, an inner join drops them
        pool[col] = (values, [_plain(typ, i, col) for i in range(1, size + 1)])
    return pool


def _near(lit: Any, typ: str, kind: str) -> list[Any]:
    """A literal, its neighbours across a boundary, and (strings) its mis-cased, padded twins."""
    if isinstance(lit, bool) or lit is None:
        return [lit] if lit is not None else []
    if typ in _INTS and isinstance(lit, (int, float)):
        return [int(lit), int(lit) - 1, int(lit) + 1]
    if typ in _FLOATS and isinstance(lit, (int, float)):
        return [float(lit), round(float(lit) - 0.01, 2), round(float(lit) + 0.01, 2)]
    if typ == "string" and isinstance(lit, str):
        if kind == "typical":
            return [lit]
        return list(dict.fromkeys([lit, lit.upper(), lit.title(), lit.lower(), f" {lit} ", f"{lit} "]))
    if typ in ("date", "timestamp") and isinstance(lit, str):
        try:
            day = dt.date.fromisoformat(lit[:10])
        except ValueError:
            return []
        days = [day, day - dt.timedelta(days=1), day + dt.timedelta(days=1)]
        return days if typ == "date" else [dt.datetime.combine(d, dt.time()) for d in days]
    return []


def _plain(typ: str, i: int, col: str) -> Any:
    """The i-th ordinary value of a type (small, readable, distinct)."""
    if typ in _INTS:
        return i
    if typ in _FLOATS:
        return round(i * 37.25 % 500 + 0.5, 2)
    if typ == "string":
        return f"{col[:8]}_{i}"
    if typ == "boolean":
        return i % 2 == 0
    if typ == "date":
        return _BASE_DATE + dt.timedelta(days=(i * 13) % 90 - 45)
    if typ == "timestamp":
        return dt.datetime.combine(_BASE_DATE, dt.time()) + dt.timedelta(hours=(i * 29) % 500 - 250)
    if typ.startswith("array<"):
        inner = typ[len("array<"):-1]
        return [_plain(inner, i + k, col) for k in range(i % 3)]
    raise UnsupportedType(typ)


def _value(rng: random.Random, col: str, typ: str, pool: tuple[list[Any], list[Any]], kind: str, i: int,
           row_id: bool) -> Any:
    """One cell: null sometimes; else half the time a literal-derived value (when the code
    compares the column with one), else a plain one; the adversarial kind skews to one value."""
    if row_id:
        return i
    null_rate = {"typical": 0.08, "edge": 0.25, "adversarial": 0.15}[kind]
    if rng.random() < null_rate:
        return None
    special, plain = pool
    if kind == "adversarial" and rng.random() < 0.3:
        return _cast((special or plain)[0], typ)  # skew toward one value
    if special and rng.random() < 0.5:
        return _cast(rng.choice(special), typ)
    if typ in _FLOATS and rng.random() < 0.5:  # three decimals: a missing round() shows
        return round(rng.uniform(0.5, 500.0), 3)
    return _cast(rng.choice(plain), typ)


def _cast(value: Any, typ: str) -> Any:
    """A pool value as the column's Python type (literal 10 in a DOUBLE column is 10.0)."""
    if value is None:
        return None
    if typ in _FLOATS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ in _INTS and isinstance(value, float) and value.is_integer():
        return int(value)
    if typ == "timestamp" and type(value) is dt.date:
        return dt.datetime.combine(value, dt.time())
    return value


def _coerce(row: tuple, cols: dict[str, str]) -> tuple:
    return tuple(_cast(v, t) for v, t in zip(row, cols.values()))
