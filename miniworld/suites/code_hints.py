"""What a pipeline's code says about its data and its output, read off its AST.

:mod:`miniworld.suites.importer` knows only a user's function and its input schemas. To generate data
on which the function's bugs *show* (:mod:`miniworld.suites.datagen`), it needs to know which literals
each column is compared with, which columns join, group and sort; to score candidates well, which
output columns identify a row and whether the output is ordered. These are heuristics over the
rewritten ``transform`` (pyspark reached through ``F``): they only shape test data and the
partial-credit key check, never what counts as correct, which is the reference's own output.
"""
from __future__ import annotations

import ast
import re
from typing import Any

from miniworld.suites import datagen
from miniworld.suites.bugs import parse_ddl


def _column(node: ast.AST, columns: set[str]) -> str | None:
    """The input column a node names (``F.col("x")``, ``df["x"]``, ``df.x``, ``"x"``)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("col", "column") \
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        name = node.args[0].value.rsplit(".", 1)[-1]
    elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        name = node.slice.value
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id not in ("F", "T"):
        name = node.attr
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        name = node.value
    else:
        return None
    return name if name in columns else None


def _literal(node: ast.AST, columns: set[str]) -> Any:
    """The one constant in an expression without columns (``10``, ``F.lit("2024-01-01").cast("date")``)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    if isinstance(node, ast.Constant):
        return node.value
    if any(_column(n, columns) and not isinstance(n, ast.Constant) for n in ast.walk(node)):
        return None
    consts = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)]
    skip = {"date", "timestamp", "double", "int", "string", "bigint", "float", "yyyy-MM-dd"}
    consts = [c for c in consts if not (isinstance(c, str) and c in skip)]
    return consts[0] if len(consts) == 1 else None


_WRAPPERS = {"lower", "upper", "trim", "ltrim", "rtrim", "initcap", "to_date", "to_timestamp", "abs", "cast",
             "astype", "coalesce", "date_trunc", "year", "month"}


def _compared_column(node: ast.AST, columns: set[str], depth: int = 0) -> str | None:
    """The input column under a compared expression (``F.lower(F.trim(F.col("s")))`` -> "s")."""
    if isinstance(node, ast.Constant) or depth > 8:
        return None
    found = _column(node, columns)
    if found or not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                     and node.func.attr in _WRAPPERS):
        return found
    receiver = node.func.value
    inner = node.args if isinstance(receiver, ast.Name) and receiver.id == "F" else [receiver]
    return next((c for a in inner if (c := _compared_column(a, columns, depth + 1))), None)


_SQL_CMP = re.compile(r"\b(\w+)\s*(?:>=|<=|==|=|!=|<>|>|<)\s*('([^']*)'|-?\d+(?:\.\d+)?)")


def data_hints(func: ast.FunctionDef, inputs: dict[str, str]) -> datagen.Hints:
    columns = {c for ddl in inputs.values() for c in parse_ddl(ddl)}
    hints = datagen.Hints()

    def add(col: str | None, value: Any) -> None:
        if col and value is not None and not isinstance(value, bool) and value not in hints.literals.get(col, []):
            hints.literals.setdefault(col, []).append(value)

    for node in ast.walk(func):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for a, b in zip(sides, sides[1:]):
                add(_compared_column(a, columns), _literal(b, columns))
                add(_compared_column(b, columns), _literal(a, columns))
                if isinstance(node.ops[0], ast.Eq) and _column(a, columns) and _column(b, columns):
                    hints.join_keys |= {_column(a, columns), _column(b, columns)}
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method, receiver = node.func.attr, node.func.value
        if method in ("isin", "between"):
            one_list = len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple))
            items = node.args[0].elts if one_list else node.args
            for item in items:
                add(_column(receiver, columns), _literal(item, columns))
        elif method in ("groupBy", "groupby", "partitionBy", "rollup", "cube", "dropDuplicates"):
            for arg in node.args:
                for item in arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]:
                    if _column(item, columns):
                        hints.group_keys.add(_column(item, columns))
        elif method in ("orderBy", "sort"):
            for arg in node.args:
                for item in arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]:
                    while isinstance(item, ast.Call) and isinstance(item.func, ast.Attribute) \
                            and item.func.attr in ("desc", "asc", "desc_nulls_last", "asc_nulls_first"):
                        item = item.func.value  # F.col("x").desc() -> F.col("x")
                    if _column(item, columns):
                        hints.order_keys.add(_column(item, columns))
        elif method == "join":
            on = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "on"), None)
            for item in (on.elts if isinstance(on, (ast.List, ast.Tuple)) else [on] if on is not None else []):
                if isinstance(item, ast.Constant) and _column(item, columns):
                    hints.join_keys.add(item.value)
        elif method in ("filter", "where", "expr") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            for m in _SQL_CMP.finditer(node.args[0].value):
                value = m.group(3) if m.group(3) is not None else float(m.group(2))
                add(m.group(1) if m.group(1) in columns else None, value)
    return hints


_SAME_COLUMNS = {"filter", "where", "orderBy", "sort", "limit", "withColumn", "withColumns", "alias",
                 "sortWithinPartitions", "repartition", "coalesce", "distinct", "dropDuplicates", "hint"}


def _returned_chain(func: ast.FunctionDef) -> list[ast.Call]:
    """The method calls of the last ``return``, outermost first, through single assignments."""
    returns = [n for n in ast.walk(func) if isinstance(n, ast.Return) and n.value is not None]
    if not returns:
        return []
    assigned: dict[str, list[ast.expr]] = {}
    for n in ast.walk(func):
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            assigned.setdefault(n.targets[0].id, []).append(n.value)
    chain, node, hops = [], returns[-1].value, 0
    while hops < 50:
        hops += 1
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            chain.append(node)
            node = node.func.value
        elif isinstance(node, ast.Name) and len(assigned.get(node.id, [])) == 1:
            node = assigned[node.id][0]
        else:
            break
    return chain


def output_keys(func: ast.FunctionDef) -> list[str]:
    """The groupBy keys of a final aggregation whose later steps keep every column, else []."""
    chain = _returned_chain(func)
    for i, call in enumerate(chain):
        if call.func.attr != "agg":
            if call.func.attr not in _SAME_COLUMNS:
                return []
            continue
        group = call.func.value
        if isinstance(group, ast.Call) and isinstance(group.func, ast.Attribute) \
                and group.func.attr in ("groupBy", "groupby"):
            items = [x for a in group.args for x in (a.elts if isinstance(a, (ast.List, ast.Tuple)) else [a])]
            if items and all(isinstance(x, ast.Constant) and isinstance(x.value, str) for x in items):
                return [x.value for x in items]
        return []
    return []


def ordered(func: ast.FunctionDef) -> bool:
    """The result is sorted when its last row-shaping step is an orderBy/sort."""
    for call in _returned_chain(func):
        if call.func.attr in ("orderBy", "sort"):
            return True
        if call.func.attr not in ("limit", "select", "withColumn", "withColumns", "drop", "alias",
                                  "withColumnRenamed", "filter", "where"):
            return False
    return False
