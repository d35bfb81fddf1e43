"""A user's own pipeline file, made ready for the sandbox without changing its line numbers.

``cosmocore run my_pipeline.py --task ...`` takes the file as the user wrote it: a script with
pyspark imports, a ``SparkSession`` builder, module-level constants, helpers and an
``if __name__ == "__main__":`` block. Only the transformation is the candidate, so this module

- blanks the ``__main__`` block, the functions and classes the transform does not use, the ``SparkSession`` builder assignments (the sandbox provides
  ``spark``), bare module-level calls (``df.show()``, ``main()``) and imports whose names the
  remaining code no longer uses (``SparkSession``, ``typing.Annotated`` once annotations are gone);
- replaces type annotations by ``None`` (annotations are evaluated when the ``def`` runs, and
  ``Annotated[DataFrame, "..."]`` would need ``typing``, which the sandbox does not offer);
- binds the chosen function to ``transform`` (a trailing ``transform = NAME``, or a keyword
  wrapper that passes the sandbox's ``spark`` when the function takes it).

Everything else is left to the sandbox's gate, which then reports the true line of the user's file
(blanked lines keep their place; a multi-line annotation becomes ``(None`` + newlines + ``)``).
The rewrite is textual on purpose: ``ast.unparse`` would renumber every line the user sees.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass


class UserFileError(ValueError):
    """The file cannot be made a candidate (one line: what, and what to pass or change)."""


@dataclass(frozen=True)
class Prepared:
    code: str  # what the sandbox runs; same line numbers as the user's file
    function: str  # the user's function that runs as ``transform``
    stripped: tuple[int, ...]  # first lines of the statements blanked (for the CLI to mention)


_SESSION_WORDS = {"SparkSession", "builder", "getOrCreate"}


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and \
        any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)


def _builds_session(node: ast.stmt) -> bool:
    value = getattr(node, "value", None)
    return value is not None and any(
        (isinstance(n, ast.Name) and n.id in _SESSION_WORDS) or (isinstance(n, ast.Attribute) and n.attr in _SESSION_WORDS)
        for n in ast.walk(value))


def _bound_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    return [(a.asname or a.name).split(".")[0] for a in node.names]


def _pick(tree: ast.Module, function: str | None) -> ast.FunctionDef:
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    names = ", ".join(f.name for f in funcs) or "none"
    if function is not None:
        found = next((f for f in funcs if f.name == function), None)
        if found is None:
            raise UserFileError(f"--function {function}: the file has no top-level function {function!r} "
                                f"(functions: {names})")
        return found
    found = next((f for f in funcs if f.name == "transform"), None)
    public = [f for f in funcs if not f.name.startswith("_")]
    typed = [f for f in public if any("DataFrame" in ast.unparse(a.annotation) for a in f.args.args if a.annotation)
             and (f.returns is None or "DataFrame" in ast.unparse(f.returns))]
    for pool in (typed, public):  # the one DataFrame -> DataFrame function, else the one public function
        if found is None and len(pool) == 1:
            found = pool[0]
    if found is None:
        raise UserFileError(f"the file defines no function named 'transform' and several others ({names}): "
                            "pass --function NAME")
    return found


def prepare(source: str, function: str | None = None) -> Prepared:
    """The file as the sandbox runs it (see the module docstring). A file that does not parse is
    returned unchanged: the sandbox reports it as ``syntax_error`` with its line."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return Prepared(source + (f"\ntransform = {function}\n" if function else ""), function or "transform", ())
    chosen = _pick(tree, function)
    spans: list[tuple[int, int, int, int, str]] = []
    blanks: list[tuple[int, int]] = []  # (first line, last line) of blanked statements
    imports: list[ast.Import | ast.ImportFrom] = []
    needed = _reachable(tree, chosen)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name not in needed:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            blanks.append((first, node.end_lineno or node.lineno))  # a helper the transform never calls
        elif _is_main_guard(node) or (isinstance(node, (ast.Assign, ast.AnnAssign)) and _builds_session(node)) \
                or (isinstance(node, ast.Expr) and not isinstance(node.value, ast.Constant)):
            blanks.append((node.lineno, node.end_lineno or node.lineno))  # the script around the transform
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotated = [a.annotation for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]
                         if a is not None and a.annotation is not None]
            spans.extend(_none(n) for n in annotated + ([node.returns] if node.returns is not None else []))
        elif isinstance(node, ast.AnnAssign) and node.simple:
            spans.append(_none(node.annotation))
    blanked = {i for first, last in blanks for i in range(first, last + 1)}
    spans = [s for s in spans if s[0] not in blanked]
    used = _used_names(_blank(_replace(source, spans), blanks + [(n.lineno, n.end_lineno or n.lineno) for n in imports]))
    for node in imports:
        keep = [a for a in node.names if (a.asname or a.name).split(".")[0] in used]
        if len(keep) == len(node.names):
            continue
        last = node.end_lineno or node.lineno
        if keep:  # only the names still used (``from pyspark.sql import SparkSession, Window`` -> Window)
            kept = type(node)(**{**{f: getattr(node, f) for f in node._fields}, "names": keep})
            spans.append((node.lineno, node.col_offset, last, node.end_col_offset or 0,
                          ast.unparse(kept) + "\n" * (last - node.lineno)))
        else:
            blanks.append((node.lineno, last))
    code = _blank(_replace(source, spans), blanks)
    params = {a.arg for a in chosen.args.posonlyargs + chosen.args.args + chosen.args.kwonlyargs}
    if "spark" in params:  # the sandbox passes DataFrames only; its own ``spark`` fills this one
        code += (f"\n\nuser_function = {chosen.name}\n\n\ndef transform(**inputs):\n"
                 "    return user_function(spark=spark, **inputs)\n")
    elif chosen.name != "transform":
        code += f"\n\ntransform = {chosen.name}\n"
    return Prepared(code, chosen.name, tuple(sorted(first for first, _ in blanks)))


def _reachable(tree: ast.Module, chosen: ast.FunctionDef) -> set[str]:
    """Top-level functions and classes the chosen function uses, directly or through each other."""
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    seen, todo = {chosen.name}, [chosen]
    while todo:
        for n in ast.walk(todo.pop()):
            if isinstance(n, ast.Name) and n.id in defs and n.id not in seen:
                seen.add(n.id)
                todo.append(defs[n.id])
    return seen


def _none(node: ast.expr) -> tuple[int, int, int, int, str]:
    """An annotation's text replaced by ``None`` spanning the same lines."""
    span = (node.end_lineno or node.lineno) - node.lineno
    return (node.lineno, node.col_offset, node.end_lineno or node.lineno, node.end_col_offset or 0,
            "None" if span == 0 else "(None" + "\n" * span + ")")


def _replace(source: str, spans: list[tuple[int, int, int, int, str]]) -> str:
    """Replace each (line, col, end_line, end_col) span by its text, the last first. Every text
    spans as many lines as what it replaces. Columns are UTF-8 byte offsets, as ``ast`` gives them."""
    lines = [ln.encode("utf-8") for ln in source.splitlines(keepends=True)]
    for line, col, end_line, end_col, text in sorted(spans, reverse=True):
        joined = lines[line - 1][:col] + text.encode("utf-8") + lines[end_line - 1][end_col:]
        lines[line - 1:end_line] = [joined] + [b""] * (end_line - line)
    return b"".join(lines).decode("utf-8")


def _blank(source: str, blanks: list[tuple[int, int]]) -> str:
    """Empty the given line ranges, keeping the line count (and so every later line number)."""
    lines = source.splitlines(keepends=True)
    for first, last in blanks:
        for i in range(first - 1, min(last, len(lines))):
            lines[i] = "\n"
    return "".join(lines)


def _used_names(code: str) -> set[str]:
    """Names the code reads or binds (imports already blanked)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
