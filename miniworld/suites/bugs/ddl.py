"""DDL schema strings (``"a INT, b ARRAY<...>"``) as column -> normalised type."""
from __future__ import annotations

import re


def parse_ddl(ddl: str) -> dict[str, str]:
    """``"a INT, b ARRAY<STRUCT<x: INT, y: STRING>>"`` -> ``{"a": "int", "b": "array<...>"}``.

    Types are lower-cased with spaces removed and common synonyms folded (integer -> int,
    long -> bigint), so two columns of the same type compare equal.
    """
    columns: dict[str, str] = {}
    for part in _split_top_level(ddl):
        match = re.match(r"(`[^`]+`|[^\s:]+)\s*:?\s*(.*)$", part, re.S)
        if not match:
            continue
        name = match.group(1).strip("`")
        kind = re.split(r"\s+(?:NOT\s+NULL|COMMENT)\b", match.group(2), flags=re.I)[0]
        columns[name] = _normalize_type(kind)
    return columns



def _split_top_level(text: str) -> list[str]:
    """Split on commas outside <...> and (...)."""
    parts, depth, current = [], 0, []
    for ch in text:
        depth += ch in "<(" or -(ch in ">)")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


_TYPE_SYNONYMS = {"integer": "int", "long": "bigint", "short": "smallint", "byte": "tinyint",
                  "real": "float", "dec": "decimal", "numeric": "decimal"}


def _normalize_type(kind: str) -> str:
    kind = re.sub(r"\s+", "", kind.lower())
    head = re.match(r"[a-z_]+", kind)
    if head and head.group(0) in _TYPE_SYNONYMS:
        kind = _TYPE_SYNONYMS[head.group(0)] + kind[head.end():]
    return kind
