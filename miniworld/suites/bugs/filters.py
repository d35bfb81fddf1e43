"""Filter and null bugs: a shifted boundary, a null compared with ==, a forgotten fill."""
from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator

from miniworld.suites.bugs.ast_edits import _del_item, _f_call, _fname, _method, _nodes, _set, _str
from miniworld.suites.bugs.context import _Context
from miniworld.suites.bugs.registry import Mutation, Site, _bug_class


_BOUNDARY_FLIP = {ast.GtE: ast.Gt, ast.Gt: ast.GtE, ast.LtE: ast.Lt, ast.Lt: ast.LtE}
_SQL_BOUNDARY = re.compile(r"(?<![<>=!])(>=|<=|>|<)(?![>=])")
_SQL_BOUNDARY_FLIP = {">=": ">", ">": ">=", "<=": "<", "<": "<="}
_FILTERS = {"filter", "where"}


def _string_edits(const: ast.Constant, pattern: re.Pattern, replace: Callable[[re.Match], str]) -> list[Site]:
    """One site per match of ``pattern`` in a string constant (a SQL expression)."""
    def edit(m: re.Match) -> Mutation:
        text = const.value[:m.start()] + replace(m) + const.value[m.end():]
        return _set(const, "value", text)
    return [[edit(m)] for m in pattern.finditer(const.value)]


def _sql_strings(ctx: _Context) -> Iterator[ast.Constant]:
    """String expressions given to filter/where (directly or via F.expr inside filter/where/when)."""
    for node in _nodes(ctx.tree):
        parent = ctx.parents.get(node)
        if _str(node) is None or not isinstance(parent, ast.Call) or node not in parent.args:
            continue
        if _method(parent) in _FILTERS or (
                _fname(parent) == "expr" and ctx.enclosing_call(parent, _FILTERS | {"when"})):
            yield node


@_bug_class("filter_boundary")
def _filter_boundary(ctx: _Context) -> list[Site]:
    """Off-by-one boundary: >= became > (or <= became <) in a filter or condition."""
    out: list[Site] = []
    for node in _nodes(ctx.tree):
        if isinstance(node, ast.Compare) and ctx.enclosing_call(node, _FILTERS | {"when"}):
            for i, op in enumerate(node.ops):
                if type(op) in _BOUNDARY_FLIP:
                    out.append([lambda node=node, i=i, new=_BOUNDARY_FLIP[type(op)]:
                                node.ops.__setitem__(i, new())])
    for const in _sql_strings(ctx):
        out.extend(_string_edits(const, _SQL_BOUNDARY, lambda m: _SQL_BOUNDARY_FLIP[m.group(1)]))
    return out


_SQL_IS_NULL = re.compile(r"\bis\s+(not\s+)?null\b", re.I)


@_bug_class("null_compare")
def _null_compare(ctx: _Context) -> list[Site]:
    """Null compared with ==: ``x.isNull()`` written as ``x == None`` (never true in SQL)."""
    out: list[Site] = []
    for node in _nodes(ctx.tree):
        method, fname = _method(node), _fname(node)
        if method in ("isNull", "isNotNull") and not node.args:
            column, negated = node.func.value, method == "isNotNull"
        elif fname in ("isnull", "isnotnull") and len(node.args) == 1:
            column, negated = node.args[0], fname == "isnotnull"
        else:
            continue
        if _str(column) is not None:  # F.isnull("x"): the name must become a column first
            column = _f_call("col", column)
        op = ast.NotEq() if negated else ast.Eq()
        out.append([ctx.replace(node, ast.Compare(column, [op], [ast.Constant(None)]))])
    for const in _sql_strings(ctx):
        out.extend(_string_edits(const, _SQL_IS_NULL,
                                 lambda m: "!= NULL" if m.group(1) else "= NULL"))
    return out


@_bug_class("null_fill_missing")
def _null_fill_missing(ctx: _Context) -> list[Site]:
    """Missing null handling: a coalesce/fillna default dropped, so nulls leak through."""
    out: list[Site] = []
    for node in _nodes(ctx.tree):
        fname = _fname(node)
        if fname in ("coalesce", "ifnull", "nvl") and len(node.args) >= 2:
            if fname == "coalesce" and len(node.args) > 2:
                out.append([_del_item(node.args, len(node.args) - 1)])
            else:
                out.append([ctx.replace(node, node.args[0])])
        elif _method(node) == "fillna" or (
                _method(node) == "fill" and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "na"):
            out.append([ctx.drop_call(node)])
    return out
