"""Aggregation and window bugs: a wrong function, a missing group key, a wrong window, no dedup."""
from __future__ import annotations

import ast
import re

from miniworld.suites.bugs.ast_edits import _del_item, _f_call, _fname, _method, _nodes, _rename_call, _set, _str
from miniworld.suites.bugs.context import _GROUP_METHODS, _Context
from miniworld.suites.bugs.filters import _FILTERS
from miniworld.suites.bugs.registry import Mutation, Site, _bug_class


_AGG_SWAP = {"sum": "avg", "avg": "sum", "mean": "sum", "max": "min", "min": "max",
             "countDistinct": "count", "count_distinct": "count", "count": "countDistinct",
             "sum_distinct": "sum", "sumDistinct": "sum", "approx_count_distinct": "count"}
_PROJECTIONS = {"agg", "select", "withColumn", "withColumns"}


def _counts_rows(call: ast.Call) -> bool:
    """``F.count("*")`` / ``F.count(F.lit(1))``: a row count, no distinct variant."""
    return len(call.args) != 1 or _str(call.args[0]) == "*" or _fname(call.args[0]) == "lit"


@_bug_class("agg_function")
def _agg_function(ctx: _Context) -> list[Site]:
    """Wrong aggregate: sum/avg, max/min or count/countDistinct swapped."""
    out: list[Site] = []
    for node in _nodes(ctx.tree):
        fname = _fname(node)
        if fname in _AGG_SWAP and ctx.enclosing_call(node, _PROJECTIONS):
            if fname == "count" and _counts_rows(node):
                continue
            if _AGG_SWAP[fname] == "count" and len(node.args) != 1:
                continue
            out.append([_rename_call(node, _AGG_SWAP[fname])])
        elif _method(node) in ("sum", "avg", "mean", "max", "min") \
                and _method(node.func.value) in _GROUP_METHODS:  # df.groupBy(k).sum("x")
            out.append([_rename_call(node, _AGG_SWAP[_method(node)])])
        elif _method(node) == "agg" and node.args and isinstance(node.args[0], ast.Dict):
            for value in node.args[0].values:  # .agg({"x": "sum"})
                if _str(value) in ("sum", "avg", "mean", "max", "min"):
                    out.append([_set(value, "value", _AGG_SWAP[value.value])])
    return out


@_bug_class("groupby_key_missing")
def _groupby_key_missing(ctx: _Context) -> list[Site]:
    """Aggregation at the wrong grain: one groupBy key forgotten."""
    out: list[Site] = []
    for node in _nodes(ctx.tree):
        if _method(node) not in _GROUP_METHODS or ctx.is_window_spec(node):
            continue
        keys = _key_list(node)
        if len(keys) >= 2:
            out.extend([_del_item(keys, i)] for i in range(len(keys)))
    return out


_DIRECTION_FLIP = {"asc": "desc", "desc": "asc", "asc_nulls_first": "desc_nulls_first",
                   "asc_nulls_last": "desc_nulls_last", "desc_nulls_first": "asc_nulls_first",
                   "desc_nulls_last": "asc_nulls_last"}


def _flip_direction(ctx: _Context, key: ast.expr) -> Mutation | None:
    """``x.desc()`` -> ``x``; ``x.asc()`` -> ``x.desc()``; ``F.desc(c)`` <-> ``F.asc(c)``;
    a bare column -> ``F.col(c).desc()``."""
    method, fname = _method(key), _fname(key)
    if method == "desc" and not key.args:
        return ctx.replace(key, key.func.value)
    if method in _DIRECTION_FLIP and not key.args:
        return _rename_call(key, _DIRECTION_FLIP[method])
    if fname in _DIRECTION_FLIP:
        return _rename_call(key, _DIRECTION_FLIP[fname])
    if _str(key) is not None or ctx.column_ref(key) is not None:
        column = key if _str(key) is None else _f_call("col", ast.Constant(key.value))
        return ctx.replace(key, ast.Call(ast.Attribute(column, "desc", ast.Load()), [], []))
    return None


def _key_list(call: ast.Call) -> list[ast.expr]:
    """The key list of ``f("a", "b")`` or ``f(["a", "b"])`` (the node's own list, not a copy)."""
    keys = call.args
    if len(keys) == 1 and isinstance(keys[0], (ast.List, ast.Tuple)):
        keys = keys[0].elts
    return keys


@_bug_class("window_spec")
def _window_spec(ctx: _Context) -> list[Site]:
    """Wrong window: partitionBy dropped, ordering direction flipped, or frame clause dropped."""
    out: list[Site] = []
    for node in _nodes(ctx.tree):
        method = _method(node)
        if method is None or not ctx.is_window_spec(node):
            continue
        receiver = node.func.value
        chained = isinstance(ctx.parents.get(node), ast.Attribute)  # more spec calls follow
        keeps_spec = chained or not (isinstance(receiver, ast.Name) and receiver.id == "Window")
        if method in ("partitionBy", "rowsBetween", "rangeBetween") and keeps_spec:
            out.append([ctx.drop_call(node)])
        if method == "partitionBy" and len(keys := _key_list(node)) >= 2:
            out.extend([_del_item(keys, i)] for i in range(len(keys)))
        elif method == "orderBy":
            out.extend([m] for key in _key_list(node) if (m := _flip_direction(ctx, key)))
    return out


_ROW_NUMBERS = {"row_number", "rank", "dense_rank"}
_SQL_FIRST_ROW = r"\s*`?{}`?\s*(==?|<=)\s*1\s*"


def _row_number_columns(ctx: _Context) -> set[str]:
    """Columns holding a row_number/rank (``withColumn("rn", F.row_number().over(w))``)."""
    names = set()
    for node in _nodes(ctx.tree):
        method = _method(node)
        if method == "withColumn" and len(node.args) == 2 and _str(node.args[0]):
            name, value = node.args[0].value, node.args[1]
        elif method == "alias" and node.args and _str(node.args[0]):
            name, value = node.args[0].value, node.func.value
        else:
            continue
        if any(_fname(n) in _ROW_NUMBERS for n in _nodes(value)):
            names.add(name)
    return names


def _keeps_first_row(ctx: _Context, cond: ast.expr, ranks: set[str]) -> bool:
    """``F.col("rn") == 1`` / ``rn <= 1`` / ``"rn = 1"`` on a row-number column."""
    if _str(cond) is not None:
        return any(re.fullmatch(_SQL_FIRST_ROW.format(re.escape(r)), cond.value) for r in ranks)
    if not (isinstance(cond, ast.Compare) and len(cond.ops) == 1
            and isinstance(cond.ops[0], (ast.Eq, ast.LtE))):
        return False
    ref = ctx.column_ref(cond.left) or ctx.column_ref(cond.comparators[0])
    other = cond.comparators[0] if ref and ref.node is cond.left else cond.left
    return ref is not None and ref.name in ranks and isinstance(other, ast.Constant) \
        and other.value == 1


@_bug_class("dedup_missing")
def _dedup_missing(ctx: _Context) -> list[Site]:
    """Missing deduplication: dropDuplicates/distinct/keep-first-row filter removed."""
    ranks = _row_number_columns(ctx)
    out: list[Site] = []
    for node in _nodes(ctx.tree):
        method = _method(node)
        if method in ("dropDuplicates", "drop_duplicates") or (method == "distinct" and not node.args):
            out.append([ctx.drop_call(node)])
        elif method in _FILTERS and len(node.args) == 1 and _keeps_first_row(ctx, node.args[0], ranks):
            out.append([ctx.drop_call(node)])
        elif _fname(node) == "collect_set":
            out.append([_rename_call(node, "collect_list")])
    return out
