"""The parsed function, its input schemas, and the columns of its DataFrame variables."""
from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from miniworld.suites.bugs.ast_edits import _bare, _chain_base, _fname, _method, _nodes, _set, _str
from miniworld.suites.bugs.ddl import _normalize_type, parse_ddl
from miniworld.suites.bugs.registry import Mutation


Frame = dict[str, "str | None"]  # column -> normalised type (None when unknown)

_GROUP_METHODS = {"groupBy", "groupby", "rollup", "cube"}


@dataclass
class _ColumnRef:
    """A column reference in code, the DataFrame columns it resolves against, how to rename it."""

    node: ast.AST
    name: str
    frame: Frame | None
    rename: Callable[[str], Mutation]


@dataclass
class _Context:
    tree: ast.Module
    inputs: dict[str, str]
    parents: dict[ast.AST, ast.AST] = field(init=False)
    frames: dict[str, Frame] = field(init=False)  # DataFrame variable -> its columns
    df_aliases: dict[str, Frame] = field(init=False)  # .alias("o") name -> columns
    assigned: dict[str, ast.expr] = field(init=False)  # names assigned exactly once
    created: set[str] = field(init=False)  # column names the function itself creates
    input_columns: Frame = field(init=False)  # every input column (first type seen)

    def __post_init__(self) -> None:
        self.parents = {c: p for p in _nodes(self.tree) for c in ast.iter_child_nodes(p)}
        func = next((n for n in self.tree.body if isinstance(n, ast.FunctionDef)), None)
        params = [a.arg for a in func.args.args] if func else []
        schemas = {k: parse_ddl(v) for k, v in self.inputs.items()}
        keys = list(schemas)
        self.frames = {}
        for i, param in enumerate(params):
            if param in schemas:
                self.frames[param] = dict(schemas[param])
            elif i < len(keys) and keys[i] not in params:  # renamed parameter, same position
                self.frames[param] = dict(schemas[keys[i]])
        self.input_columns = {}
        for schema in schemas.values():
            for col, kind in schema.items():
                self.input_columns.setdefault(col, kind)
        targets: dict[str, list[ast.expr]] = {}
        for node in _nodes(self.tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                targets.setdefault(name, []).append(node.value)
                frame = self.frame(node.value)
                if frame is not None:
                    self.frames[name] = frame
        self.assigned = {k: v[0] for k, v in targets.items() if len(v) == 1}
        self.df_aliases, self.created = {}, set()
        for node in _nodes(self.tree):
            method = _method(node)
            first = _str(node.args[0]) if isinstance(node, ast.Call) and node.args else None
            if method in ("alias", "name") and first:
                self.created.add(first)
                frame = self.frame(node.func.value)
                if frame is not None:
                    self.df_aliases[first] = frame
            elif method == "withColumn" and first:
                self.created.add(first)
            elif method == "withColumnRenamed" and len(node.args) > 1 and _str(node.args[1]):
                self.created.add(_str(node.args[1]))
            elif method == "withColumns" and node.args and isinstance(node.args[0], ast.Dict):
                self.created.update(_str(k) for k in node.args[0].keys if _str(k))

    # -- DataFrame columns ------------------------------------------------------------------

    def frame(self, expr: ast.AST | None) -> Frame | None:
        """Columns of a DataFrame expression, or None when it is not one we can follow."""
        if isinstance(expr, ast.Name):
            return self.frames.get(expr.id)
        if isinstance(expr, ast.Attribute) and expr.attr == "na":
            return self.frame(expr.value)
        if not isinstance(expr, ast.Call) or not isinstance(expr.func, ast.Attribute):
            return None
        method, receiver = expr.func.attr, expr.func.value
        if method == "agg":
            grouped = receiver if _method(receiver) in _GROUP_METHODS else None
            base = self.frame(grouped.func.value if grouped else receiver)
            if base is None:
                return None
            keys = self._project(base, grouped.args) if grouped else {}
            return {**keys, **self._project(base, expr.args)}
        base = self.frame(receiver)
        if base is None:
            return None
        args = expr.args
        if method == "select":
            return self._project(base, args)
        if method == "withColumn" and len(args) == 2 and _str(args[0]):
            return {**base, _str(args[0]): self._type_of(base, args[1])}
        if method == "withColumnRenamed" and len(args) == 2 and _str(args[0]) and _str(args[1]):
            return {(_str(args[1]) if k == _str(args[0]) else k): t for k, t in base.items()}
        if method == "drop":
            dropped = {_bare(a) for a in args}
            return {k: t for k, t in base.items() if k not in dropped}
        if method == "join":
            other = self.frame(args[0]) if args else None
            return {**(other or {}), **base}
        return base  # filter, sort, dedup, union, groupBy...: same columns (near enough)

    def _project(self, base: Frame, args: list[ast.expr]) -> Frame:
        out: Frame = {}
        for arg in args:
            for item in arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]:
                if _str(item) == "*":
                    out.update(base)
                elif _method(item) in ("alias", "name") and item.args and _str(item.args[0]):
                    out[_str(item.args[0])] = self._type_of(base, item.func.value)
                elif _bare(item) is not None:
                    out[_bare(item)] = base.get(_bare(item))
        return out

    def _type_of(self, base: Frame, expr: ast.expr) -> str | None:
        if _method(expr) in ("cast", "astype") and expr.args and _str(expr.args[0]):
            return _normalize_type(_str(expr.args[0]))
        name = _bare(expr)
        return base.get(name) if name else None

    def any_frame(self) -> Frame:
        return dict(self.input_columns)

    # -- Navigation -------------------------------------------------------------------------

    def replace(self, old: ast.AST, new: ast.AST) -> Mutation:
        """Mutation: put ``new`` where ``old`` is in its parent."""
        parent = self.parents[old]

        def apply() -> None:
            for name, value in ast.iter_fields(parent):
                if value is old:
                    setattr(parent, name, new)
                    return
                if isinstance(value, list) and any(v is old for v in value):
                    value[next(i for i, v in enumerate(value) if v is old)] = new
                    return
        return apply

    def drop_call(self, call: ast.Call) -> Mutation:
        """Mutation: ``a.f(x).g(y)`` -> ``a.g(y)``: remove one call, keep the rest of the chain."""
        receiver = call.func.value
        if isinstance(receiver, ast.Attribute) and receiver.attr == "na":  # df.na.fill(...)
            receiver = receiver.value
        return self.replace(call, receiver)

    def enclosing_call(self, node: ast.AST, names: set[str]) -> ast.Call | None:
        """The nearest call named in ``names`` that has ``node`` inside its arguments."""
        child, parent = node, self.parents.get(node)
        while parent is not None and not isinstance(parent, ast.FunctionDef):
            if isinstance(parent, ast.Call) and child is not parent.func \
                    and (_method(parent) in names or _fname(parent) in names):
                return parent
            child, parent = parent, self.parents.get(parent)
        return None

    def resolve(self, node: ast.expr | None) -> ast.expr | None:
        """A name assigned exactly once stands for its value (``cond = ...; a.join(b, cond)``)."""
        if isinstance(node, ast.Name) and node.id in self.assigned:
            return self.assigned[node.id]
        return node

    def column_ref(self, node: ast.AST) -> _ColumnRef | None:
        """``F.col("q.x")``, ``df["x"]`` or ``df.x`` as a column reference."""
        if _fname(node) in ("col", "column") and len(node.args) == 1 and _str(node.args[0]):
            const = node.args[0]
            qualifier, _, name = const.value.rpartition(".")
            prefix = qualifier + "." if qualifier else ""
            frame = self.df_aliases.get(qualifier) if qualifier else None
            return _ColumnRef(node, name, frame, lambda new: _set(const, "value", prefix + new))
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and node.value.id in self.frames and _str(node.slice):
            const = node.slice
            return _ColumnRef(node, const.value, self.frames[node.value.id],
                              lambda new: _set(const, "value", new))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.attr in self.frames.get(node.value.id, {}):
            return _ColumnRef(node, node.attr, self.frames[node.value.id],
                              lambda new: _set(node, "attr", new))
        return None

    def is_window_spec(self, node: ast.AST, depth: int = 0) -> bool:
        """A chain on ``Window`` (or on a variable holding a window spec)."""
        base = _chain_base(node)
        if not isinstance(base, ast.Name) or depth > 8:
            return False
        if base.id == "Window":
            return True
        value = self.assigned.get(base.id)
        return value is not None and self.is_window_spec(value, depth + 1)

    def join_calls(self) -> Iterator[ast.Call]:
        for node in _nodes(self.tree):
            if _method(node) == "join" and node.args and _str(node.func.value) is None:
                yield node
