"""Column bugs: a hallucinated (non-existent) column, a wrong cast, a union by position."""
from __future__ import annotations

import ast
import re
from collections.abc import Callable

from miniworld.suites.bugs.ast_edits import _arg, _fname, _method, _nodes, _set, _str
from miniworld.suites.bugs.context import _Context
from miniworld.suites.bugs.registry import Mutation, Site, _bug_class


_ABBREVIATIONS = {
    "customer": "cust", "order": "ord", "amount": "amt", "quantity": "qty", "product": "prod",
    "number": "num", "count": "cnt", "date": "dt", "timestamp": "ts", "category": "cat",
    "transaction": "txn", "event": "evt", "account": "acct", "price": "prc", "total": "tot",
    "department": "dept", "employee": "emp", "revenue": "rev", "session": "sess", "user": "usr",
    "country": "ctry", "segment": "seg", "status": "stat", "value": "val", "region": "rgn",
    "identifier": "id", "description": "desc", "average": "avg", "sequence": "seq",
}
_SUFFIX_SYNONYMS = {"id": "key", "key": "id", "date": "dt", "dt": "date", "ts": "time",
                    "time": "ts", "at": "time", "name": "nm", "count": "cnt", "code": "cd",
                    "amount": "amt", "type": "kind", "status": "state", "price": "cost"}


def _plural(word: str) -> str:
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def hallucinated_names(name: str) -> list[str]:
    """Plausible wrong spellings of a column name, most typical first.

    ``customer_id`` -> ``customerId``, ``cust_id``, ``customer_key``; ``amount`` -> ``amt``,
    ``amounts``; ``orderId`` -> ``order_id``, ``OrderId``.
    """
    parts = [p for p in re.split(r"_|(?<=[a-z0-9])(?=[A-Z])", name) if p]
    lower = [p.lower() for p in parts]
    candidates = []
    if "_" in name:
        candidates.append(lower[0] + "".join(p.capitalize() for p in lower[1:]))
    elif len(parts) > 1:  # camelCase in the source: hallucinate snake_case and PascalCase
        candidates += ["_".join(lower), "".join(p.capitalize() for p in lower)]
    if lower[0] in _ABBREVIATIONS and _ABBREVIATIONS[lower[0]] != lower[0]:
        candidates.append("_".join([_ABBREVIATIONS[lower[0]], *lower[1:]]))
    if len(lower) > 1 and lower[-1] in _SUFFIX_SYNONYMS:
        candidates.append("_".join([*lower[:-1], _SUFFIX_SYNONYMS[lower[-1]]]))
    if len(lower) == 1:
        candidates.append(_plural(lower[0]))
    candidates.append(name + "_value" if len(lower) == 1 else _plural(name))
    unique = []
    for c in candidates:
        if c != name and c not in unique:
            unique.append(c)
    return unique


# Calls whose string arguments are not column references, or where a missing column is
# silently ignored by Spark (drop, fillna subset) rather than reported.
_NOT_COLUMN_CALLS = {"lit", "col", "column", "expr", "alias", "name", "withColumn",
                     "withColumnRenamed", "cast", "astype", "hint", "typedLit", "drop",
                     "fillna", "dropna", "fill", "replace"}


def _column_literal(ctx: _Context, const: ast.Constant) -> bool:
    """A string constant used as a column name: argument of a DataFrame method or F function."""
    child, parent = const, ctx.parents.get(const)
    while isinstance(parent, (ast.List, ast.Tuple, ast.keyword)):
        child, parent = parent, ctx.parents.get(parent)
    if isinstance(parent, ast.Dict):  # .agg({"amount": "sum"}) keys
        call = ctx.parents.get(parent)
        return _method(call) == "agg" and child in parent.keys
    if not isinstance(parent, ast.Call) or child is parent.func:
        return False
    name = _method(parent) or _fname(parent)
    if name is None or name in _NOT_COLUMN_CALLS:
        return False
    if name == "join":  # only the `on` argument names columns
        return child is _arg(parent, "on", 1)
    return True


@_bug_class("unknown_column")
def _unknown_column(ctx: _Context) -> list[Site]:
    """Hallucinated column: a column name misspelt as one that exists nowhere (customerId, cust_id)."""
    known = set(ctx.input_columns) | ctx.created
    out: list[Site] = []

    def site(name: str, rename: Callable[[str], Mutation]) -> None:
        wrong = [h for h in hallucinated_names(name) if h not in known][:3]
        out.append([rename(h) for h in wrong])

    for node in _nodes(ctx.tree):
        ref = ctx.column_ref(node)
        if ref is not None and ref.name in known:
            site(ref.name, ref.rename)
        elif _str(node) in known and _column_literal(ctx, node):
            site(node.value, lambda new, node=node: _set(node, "value", new))
    return out


_CAST_SWAP = {"double": "int", "float": "int", "int": "string", "integer": "string",
              "date": "timestamp", "timestamp": "date", "long": "int", "bigint": "int",
              "string": "int"}
_TYPE_CLASS_SWAP = {"DoubleType": "IntegerType", "FloatType": "IntegerType",
                    "IntegerType": "StringType", "DateType": "TimestampType",
                    "TimestampType": "DateType", "LongType": "IntegerType",
                    "StringType": "IntegerType", "DecimalType": "DoubleType"}


@_bug_class("cast_type")
def _cast_type(ctx: _Context) -> list[Site]:
    """Wrong cast: double to int, date to timestamp, string to int and the like."""
    out: list[Site] = []
    for node in _nodes(ctx.tree):
        if _method(node) not in ("cast", "astype") or len(node.args) != 1:
            continue
        if _fname(node.func.value) == "lit":  # F.lit(x).cast(t): Spark widens it back, no bug
            continue
        target = node.args[0]
        kind = (_str(target) or "").strip().lower()
        if kind in _CAST_SWAP:
            out.append([_set(target, "value", _CAST_SWAP[kind])])
        elif kind.startswith("decimal"):
            out.append([_set(target, "value", "double")])
        elif isinstance(target, ast.Call):
            type_name = target.func.attr if isinstance(target.func, ast.Attribute) else \
                getattr(target.func, "id", None)
            if type_name in _TYPE_CLASS_SWAP:
                new_type = ast.Call(_renamed_func(target.func, _TYPE_CLASS_SWAP[type_name]), [], [])
                out.append([ctx.replace(target, new_type)])
    return out


def _renamed_func(func: ast.expr, name: str) -> ast.expr:
    if isinstance(func, ast.Attribute):
        return ast.Attribute(func.value, name, ast.Load())
    return ast.Name(name, ast.Load())


@_bug_class("union_by_position")
def _union_by_position(ctx: _Context) -> list[Site]:
    """Union by position: unionByName replaced by union, so columns misalign silently."""
    out: list[Site] = []
    for node in _nodes(ctx.tree):
        if _method(node) == "unionByName" and node.args:
            def apply(node=node) -> None:
                node.func.attr = "union"
                node.keywords = []
            out.append([apply])
    return out
