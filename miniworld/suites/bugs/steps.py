"""Bugs in one step of a pipeline: lag/lead swapped, order flipped, a rounding, normalisation or filter dropped."""
from __future__ import annotations

import ast

from miniworld.suites.bugs.aggregations import _flip_direction, _keeps_first_row, _key_list, _row_number_columns
from miniworld.suites.bugs.ast_edits import _fname, _method, _nodes, _rename_call, _set
from miniworld.suites.bugs.context import _Context
from miniworld.suites.bugs.filters import _FILTERS
from miniworld.suites.bugs.registry import Site, _bug_class


@_bug_class("lag_lead")
def _lag_lead(ctx: _Context) -> list[Site]:
    """Lag/lead swapped: the previous row's value read from the next row (or vice versa)."""
    return [[_rename_call(node, {"lag": "lead", "lead": "lag"}[_fname(node)])]
            for node in _nodes(ctx.tree) if _fname(node) in ("lag", "lead")]


@_bug_class("order_direction")
def _order_direction(ctx: _Context) -> list[Site]:
    """Wrong sort order: a final orderBy/sort key ascending instead of descending (or back)."""
    out: list[Site] = []
    for node in _nodes(ctx.tree):
        if _method(node) not in ("orderBy", "sort") or ctx.is_window_spec(node):
            continue
        for kw in node.keywords:
            if kw.arg == "ascending" and isinstance(kw.value, ast.Constant):
                out.append([_set(kw.value, "value", not kw.value.value)])
            elif kw.arg == "ascending" and isinstance(kw.value, (ast.List, ast.Tuple)):
                out.extend([_set(v, "value", not v.value)] for v in kw.value.elts
                           if isinstance(v, ast.Constant))
        if not any(kw.arg == "ascending" for kw in node.keywords):
            out.extend([m] for key in _key_list(node) if (m := _flip_direction(ctx, key)))
    return out


@_bug_class("round_missing")
def _round_missing(ctx: _Context) -> list[Site]:
    """Missing rounding: F.round(x, n) left out, so results carry float noise."""
    return [[ctx.replace(node, node.args[0])] for node in _nodes(ctx.tree)
            if _fname(node) in ("round", "bround") and node.args]


@_bug_class("string_normalize_missing")
def _string_normalize_missing(ctx: _Context) -> list[Site]:
    """Missing string normalisation: trim/lower/upper dropped before a compare, join or group."""
    return [[ctx.replace(node, node.args[0])] for node in _nodes(ctx.tree)
            if _fname(node) in ("trim", "ltrim", "rtrim", "lower", "upper", "initcap")
            and len(node.args) == 1]


@_bug_class("filter_missing")
def _filter_missing(ctx: _Context) -> list[Site]:
    """Missing filter: a filter/where step of the spec forgotten (dedup filters excluded)."""
    ranks = _row_number_columns(ctx)
    return [[ctx.drop_call(node)] for node in _nodes(ctx.tree)
            if _method(node) in _FILTERS and len(node.args) == 1
            and ctx.frame(node.func.value) is not None
            and not _keeps_first_row(ctx, node.args[0], ranks)]
