"""Join bugs: a wrong key, a wrong join type, a dropped condition."""
from __future__ import annotations

import ast

from miniworld.suites.bugs.ast_edits import _arg, _del_item, _set, _str
from miniworld.suites.bugs.context import Frame, _Context
from miniworld.suites.bugs.registry import Site, _bug_class


def _same_type_columns(name: str, kind: str | None, *frames: Frame, exclude=()) -> list[str]:
    """Columns of the first frame with type ``kind`` that every frame has (other than ``name``)."""
    if kind is None:
        return []
    return [c for c, t in frames[0].items()
            if c != name and c not in exclude and t == kind and all(f.get(c) == kind for f in frames)]


def _equalities(cond: ast.AST) -> list[ast.Compare]:
    """``a == b`` comparisons of a join condition (through ``&`` and lists)."""
    if isinstance(cond, ast.Compare) and len(cond.ops) == 1 and isinstance(cond.ops[0], ast.Eq):
        return [cond]
    if isinstance(cond, ast.BinOp) and isinstance(cond.op, ast.BitAnd):
        return _equalities(cond.left) + _equalities(cond.right)
    if isinstance(cond, (ast.List, ast.Tuple)):
        return [c for item in cond.elts for c in _equalities(item)]
    return []


@_bug_class("join_key")
def _join_key(ctx: _Context) -> list[Site]:
    """Wrong join key: joined on another column of the same type."""
    out: list[Site] = []
    for call in ctx.join_calls():
        on = ctx.resolve(_arg(call, "on", 1))
        left = ctx.frame(call.func.value) or ctx.any_frame()
        right = ctx.frame(call.args[0]) or ctx.any_frame()
        keys = [on] if _str(on) else on.elts if isinstance(on, (ast.List, ast.Tuple)) else []
        if keys and all(_str(k) for k in keys):
            names = [k.value for k in keys]
            for key in keys:
                kind = left.get(key.value) or right.get(key.value)
                others = _same_type_columns(key.value, kind, left, right, exclude=names)
                out.append([_set(key, "value", c) for c in others])
            continue
        for equality in _equalities(on):
            for side in (equality.left, equality.comparators[0]):
                ref = ctx.column_ref(side)
                if ref is None:
                    continue
                frame = ref.frame or {**right, **left}
                kind = frame.get(ref.name) or ctx.input_columns.get(ref.name)
                out.append([ref.rename(c) for c in _same_type_columns(ref.name, kind, frame)])
    return out


_JOIN_TYPE_SWAP = {
    "left": "inner", "leftouter": "inner", "left_outer": "inner",
    "inner": "left",
    "left_anti": "left_semi", "leftanti": "leftsemi", "anti": "semi",
    "left_semi": "left_anti", "leftsemi": "leftanti", "semi": "anti",
    "full": "inner", "outer": "inner", "full_outer": "inner", "fullouter": "inner",
    "right": "inner", "rightouter": "inner", "right_outer": "inner",
}


@_bug_class("join_type")
def _join_type(ctx: _Context) -> list[Site]:
    """Wrong join type: left/inner swapped, anti/semi swapped, outer joins made inner."""
    out: list[Site] = []
    for call in ctx.join_calls():
        how = _arg(call, "how", 2)
        if _str(how) is not None and how.value.lower() in _JOIN_TYPE_SWAP:
            out.append([_set(how, "value", _JOIN_TYPE_SWAP[how.value.lower()])])
        elif how is None and _arg(call, "on", 1) is not None:  # default inner -> left
            keyword = ast.keyword(arg="how", value=ast.Constant("left"))
            out.append([lambda call=call, kw=keyword: call.keywords.append(kw)])
    return out


def _conjuncts(cond: ast.AST) -> list[ast.expr]:
    if isinstance(cond, ast.BinOp) and isinstance(cond.op, ast.BitAnd):
        return _conjuncts(cond.left) + _conjuncts(cond.right)
    return [cond]


def _and_all(parts: list[ast.expr]) -> ast.expr:
    result = parts[0]
    for part in parts[1:]:
        result = ast.BinOp(left=result, op=ast.BitAnd(), right=part)
    return result


@_bug_class("join_condition_missing")
def _join_condition_missing(ctx: _Context) -> list[Site]:
    """Partial join condition: one key of a composite join key forgotten."""
    out: list[Site] = []
    for call in ctx.join_calls():
        on = ctx.resolve(_arg(call, "on", 1))
        if isinstance(on, (ast.List, ast.Tuple)) and len(on.elts) >= 2:
            out.extend([_del_item(on.elts, i)] for i in range(len(on.elts)))
        elif on is not None and len(parts := _conjuncts(on)) >= 2:
            for i in range(len(parts)):
                rest = _and_all(parts[:i] + parts[i + 1:])
                out.append([ctx.replace(on, rest)])
    return out
