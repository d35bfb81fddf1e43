"""Bug injection: realistic data-pipeline bugs as AST edits of a family's ``transform`` source.

A *bug class* is a named kind of mistake a data engineer makes (a wrong join key, a ``>=`` that
became ``>``, a forgotten ``dropDuplicates``...). Each class is one small *collector* function
registered in :data:`BUG_CLASSES`: it walks the parsed source and returns the class's *sites*,
the places it can strike, each with one or more *variants* (e.g. several plausible wrong column
names). A variant is a closure that edits the tree in place.

:func:`inject` parses the source afresh, collects the sites, applies exactly one variant and
unparses, so reference (:func:`normalize`) and mutant differ only at the bug. Mutations are
enumerated variant-major (every site's first variant, then every site's second...), so
consecutive seeds hit different sites before they revisit one; mutants identical to the reference
or to an earlier mutant are dropped, so :func:`sites` counts distinct, real bugs.

Column-aware classes read the family's ``INPUTS`` (``{parameter: "DDL schema"}``) and follow the
columns of each DataFrame variable through simple chains (select, withColumn, join, agg...), so a
swapped join key has the same type and exists on both sides, and a hallucinated column exists
nowhere.
"""
from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class BugClass:
    id: str  # stable id
    description: str  # one line, what a data engineer would call this bug


Mutation = Callable[[], None]  # edits the freshly parsed tree in place
Site = list[Mutation]  # the alternatives at one place in the source
Collector = Callable[["_Context"], list[Site]]

BUG_CLASSES: dict[str, BugClass] = {}
_COLLECTORS: dict[str, Collector] = {}


def _bug_class(bug_id: str) -> Callable[[Collector], Collector]:
    """Register a collector; its docstring's first line is the class description."""

    def register(fn: Collector) -> Collector:
        description = (fn.__doc__ or bug_id).strip().splitlines()[0]
        BUG_CLASSES[bug_id] = BugClass(bug_id, description)
        _COLLECTORS[bug_id] = fn
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def normalize(source: str) -> str:
    """``ast.unparse(ast.parse(dedented source))``: the reference text mutants are compared to."""
    return ast.unparse(ast.parse(textwrap.dedent(source)))


def sites(source: str, bug_class: str, inputs: dict[str, str]) -> int:
    """How many distinct mutations this class can make in ``source`` (0 = not applicable)."""
    return len(_mutants(source, _check_class(bug_class), _freeze(inputs)))


def inject(source: str, bug_class: str, seed: int, inputs: dict[str, str]) -> str | None:
    """The mutated function source, or None when the class has no site in ``source``.

    Deterministic in (source, bug_class, seed, inputs); the mutation is ``seed`` modulo the
    number of mutations, enumerated site by site before variant by variant.
    """
    mutants = _mutants(source, _check_class(bug_class), _freeze(inputs))
    return mutants[seed % len(mutants)] if mutants else None


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


# ---------------------------------------------------------------------------------------------
# Engine
# ---------------------------------------------------------------------------------------------


def _check_class(bug_class: str) -> str:
    if bug_class not in _COLLECTORS:
        raise ValueError(f"unknown bug class {bug_class!r}; known: {', '.join(BUG_CLASSES)}")
    return bug_class


def _freeze(inputs: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((inputs or {}).items())


@lru_cache(maxsize=1024)
def _mutants(source: str, bug_class: str, inputs: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Every distinct mutant text of one class, in enumeration order."""
    source = textwrap.dedent(source)
    reference = normalize(source)
    collect = _COLLECTORS[bug_class]
    counts = [len(site) for site in collect(_Context(ast.parse(source), dict(inputs)))]
    order = sorted((v, s) for s, n in enumerate(counts) for v in range(n))
    seen, mutants = {reference}, []
    for variant, site in order:
        tree = ast.parse(source)  # fresh tree: each mutation edits its own copy
        collect(_Context(tree, dict(inputs)))[site][variant]()
        text = ast.unparse(ast.fix_missing_locations(tree))
        if text in seen:
            continue
        try:
            ast.parse(text)
        except SyntaxError:  # pragma: no cover - a collector bug, never a valid mutant
            continue
        seen.add(text)
        mutants.append(text)
    return tuple(mutants)


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


# ---------------------------------------------------------------------------------------------
# Small AST helpers
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Context: the parsed function, its input schemas, and the columns of its DataFrame variables
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Bug classes: one collector each, in catalogue order
# ---------------------------------------------------------------------------------------------


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
