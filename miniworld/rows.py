"""Row values across the sandbox boundary: JSON with tagged dates, and a canonical form to compare.

Nothing crosses between the trusted parent and a sandbox worker as pickle (unpickling what an
untrusted process wrote runs its code); rows travel as JSON, with dates and timestamps tagged so
they come back as the same Python types.
"""
from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any


def encode(value: Any) -> Any:
    """A JSON-safe form of a Spark/Python value (dates and timestamps tagged)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return {"$f": "nan"}
        if math.isinf(value):
            return {"$f": "inf" if value > 0 else "-inf"}
        return value
    if isinstance(value, dt.datetime):
        return {"$ts": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {"$map": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": bytes(value).hex()}
    if hasattr(value, "asDict"):  # a struct Row
        return [encode(v) for v in value]
    return {"$repr": repr(value)[:200]}


def decode(value: Any) -> Any:
    """Inverse of :func:`encode` for the types inputs use (dates, timestamps, lists, floats)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "$date" in value:
            return dt.date.fromisoformat(value["$date"])
        if "$ts" in value:
            return dt.datetime.fromisoformat(value["$ts"])
        if "$f" in value:
            return float(value["$f"])
        if "$map" in value:
            return {decode(k): decode(v) for k, v in value["$map"]}
        if "$bytes" in value:
            return bytes.fromhex(value["$bytes"])
    return value


def encode_rows(rows: list[tuple]) -> list[list]:
    return [[encode(v) for v in row] for row in rows]


def decode_rows(rows: list[list]) -> list[tuple]:
    return [tuple(decode(v) for v in row) for row in rows]


def canonical(value: Any, digits: int = 6) -> Any:
    """A hashable, order-free comparison key: floats rounded to ``digits`` significant places."""
    if isinstance(value, float):
        if math.isnan(value):
            return ("nan",)
        if value == 0.0 or math.isinf(value):
            return value
        return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))
    if isinstance(value, list):
        return tuple(canonical(v, digits) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((repr(k), canonical(v, digits)) for k, v in value.items()))
    return value


def sort_key(row: tuple) -> tuple:
    """Total order over canonical rows with nulls and mixed types (for multiset comparison)."""
    return tuple((v is None, type(v).__name__, repr(v)) for v in row)
