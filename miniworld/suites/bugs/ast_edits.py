"""Small AST helpers the collectors share: find calls, read literals, make edits (mutations)."""
from __future__ import annotations

import ast
from collections.abc import Iterator

from miniworld.suites.bugs.registry import Mutation


_F_MODULES = {"F", "functions"}


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Pre-order depth-first walk: source order, deterministic."""
    yield tree
    for child in ast.iter_child_nodes(tree):
        yield from _nodes(child)


def _method(node: ast.AST) -> str | None:
    """``x.name(...)`` -> "name"."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _fname(node: ast.AST) -> str | None:
    """``F.name(...)`` -> "name" (families reach pyspark functions only through ``F``)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and isinstance(node.func.value, ast.Name) and node.func.value.id in _F_MODULES:
        return node.func.attr
    return None


def _str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _chain_base(node: ast.AST) -> ast.AST:
    """The object a method chain starts from: ``Window`` in ``Window.partitionBy(..).orderBy(..)``."""
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        else:
            return node


def _arg(call: ast.Call, name: str, position: int) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return call.args[position] if len(call.args) > position else None


def _rename_call(call: ast.Call, new: str) -> Mutation:
    """Mutation: ``F.old(...)`` -> ``F.new(...)`` (also ``x.old(...)`` -> ``x.new(...)``)."""
    return _set(call.func, "attr", new)


def _f_call(name: str, *args: ast.expr) -> ast.Call:
    """A fresh ``F.name(*args)`` node."""
    return ast.Call(ast.Attribute(ast.Name("F", ast.Load()), name, ast.Load()), list(args), [])


def _set(obj: ast.AST, attr: str, value: object) -> Mutation:
    return lambda: setattr(obj, attr, value)


def _del_item(items: list, index: int) -> Mutation:
    return lambda: items.pop(index)


def _bare(node: ast.expr) -> str | None:
    """Column name of a plain column reference (``"x"``, ``F.col("x")``, ``df["x"]``, ``df.x``)."""
    if _str(node) is not None:
        return _str(node)
    if _fname(node) in ("col", "column") and node.args and _str(node.args[0]):
        return _str(node.args[0]).rsplit(".", 1)[-1]
    if isinstance(node, ast.Subscript) and _str(node.slice):
        return _str(node.slice)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id not in _F_MODULES | {"T", "Window"}:
        return node.attr
    return None
