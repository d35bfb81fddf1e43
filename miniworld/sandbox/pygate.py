"""The AST gate for plain-Python tasks (HumanEval), checked before anything runs.

The PySpark policy (:mod:`miniworld.sandbox.gate`) allows only pyspark imports; a HumanEval solution
legitimately imports standard-library helpers. This gate allows imports from a safe-list of pure
computation modules and rejects what reaches files, the network, processes or the interpreter's
internals: other imports, the names that open files or run code (``open``, ``exec``,
``getattr`` ...), private and dunder attributes, dunder strings, and ``str.format`` on a
non-constant template (field names like ``{0.__class__}`` walk attributes at run time).

It is one layer of several (see docs/SECURITY.md): the runner (:mod:`miniworld.sandbox.python_child`) gives
the code restricted builtins, hands out module proxies without submodules, re-checks ``eval``
text with this same gate, and runs confined (rlimits, Landlock, no network) in a subprocess.
"""
from __future__ import annotations

import ast
import string

from miniworld.sandbox.gate import Violation

#: Modules a candidate may import: pure computation, no I/O. Submodules must be listed.
SAFE_MODULES = frozenset({
    "math", "cmath", "itertools", "functools", "collections", "collections.abc", "re", "string",
    "hashlib", "heapq", "bisect", "operator", "statistics", "fractions", "decimal", "random",
    "typing", "copy", "datetime", "calendar", "numbers", "array", "enum", "textwrap",
    "unicodedata", "json", "binascii", "zlib",
})

#: Names whose use reads files, runs code, or reaches attributes by computed name.
BLOCKED_NAMES = frozenset({
    "open", "exec", "compile", "input", "breakpoint", "help", "exit", "quit", "globals", "locals",
    "vars", "getattr", "setattr", "delattr", "memoryview", "os", "sys", "subprocess", "socket",
    "builtins", "importlib", "shutil", "pathlib", "io", "ctypes", "signal", "pickle", "marshal",
})

#: Attribute names that reach processes, files, interpreter frames or attribute walking.
BLOCKED_ATTRIBUTES = frozenset({
    "system", "popen", "spawn", "fork", "kill", "environ", "modules", "unlink", "rmdir",
    "open", "read_text", "write_text", "read_bytes", "write_bytes", "f_globals", "f_locals",
    "f_back", "f_builtins", "f_code", "gi_frame", "gi_code", "cr_frame", "ag_frame", "tb_frame",
    "tb_next", "co_code", "attrgetter", "methodcaller", "format_map", "vformat", "get_field",
    "os", "sys", "subprocess", "socket", "builtins", "importlib", "types", "shutil", "io",
    # typing evaluates string annotations with eval: a way around this gate
    "get_type_hints", "ForwardRef", "evaluate_forward_ref",
})

#: Names the harness needs a candidate to see (``__name__`` is "candidate" there).
_ALLOWED_DUNDER_NAMES = frozenset({"__name__"})


def _module_allowed(name: str | None) -> bool:
    return bool(name) and name in SAFE_MODULES


def _format_template_ok(node: ast.Attribute) -> bool:
    """``"...".format(...)`` is fine when the template is a constant whose fields are plain
    positions or names; anything else could walk attributes (``{0.__init__.__globals__}``)."""
    if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
        return False
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(node.value.value) if f]
    except ValueError:
        return False
    return all("." not in f and "[" not in f for f in fields)


def check(source: str, mode: str = "exec") -> list[Violation]:
    """Every violation in ``source`` (empty: it may run). ``mode="eval"`` checks an expression
    (the runner's ``eval`` uses it). Raises SyntaxError when the source does not parse."""
    tree = ast.parse(source, mode=mode)
    found: list[Violation] = []
    inert = {id(s.value) for s in ast.walk(tree) if isinstance(s, ast.Expr)}  # docstrings, bare strings

    def flag(node: ast.AST, rule: str, detail: str) -> None:
        found.append(Violation(rule, detail, getattr(node, "lineno", 0)))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _module_allowed(alias.name):
                    flag(node, "import", f"import of {alias.name!r} is not allowed (allowed: standard "
                                         "computation modules such as math, itertools, collections, re)")
        elif isinstance(node, ast.ImportFrom):
            if node.level or not _module_allowed(node.module):
                flag(node, "import", f"import from {node.module!r} is not allowed")
            for alias in node.names:
                if alias.name.startswith("_") or alias.name in BLOCKED_ATTRIBUTES:
                    flag(node, "import", f"importing {alias.name!r} is not allowed")
        elif isinstance(node, ast.Attribute):
            name = node.attr
            if name.startswith("_"):
                flag(node, "private_attribute", f"access to private attribute {name!r}")
            elif name in BLOCKED_ATTRIBUTES:
                flag(node, "blocked_attribute", f"use of {name!r} is not allowed")
            elif name == "format" and not _format_template_ok(node):
                flag(node, "format", "str.format needs a constant template with plain fields")
        elif isinstance(node, ast.Name):
            if node.id in BLOCKED_NAMES:
                flag(node, "blocked_name", f"use of {node.id!r} is not allowed")
            elif node.id.startswith("__") and node.id not in _ALLOWED_DUNDER_NAMES:
                flag(node, "blocked_name", f"use of {node.id!r} is not allowed")
        elif isinstance(node, (ast.Global, ast.Nonlocal)) and any(n.startswith("__") for n in node.names):
            flag(node, "scope", "global/nonlocal of a dunder name is not allowed")
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("__") and node.name != "__init__":
            # a class with ``__eq__`` returning True passes every ``assert f(x) == y``: the
            # classic HumanEval reward hack, and the checks run in the candidate's process
            flag(node, "special_method", f"defining {node.name!r} is not allowed")
        elif isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)):
            flag(node, "async", "async code is not allowed")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "__" in node.value \
                and id(node) not in inert and node.value != "__main__":
            flag(node, "dunder_string", "string constants may not contain '__'")
        elif isinstance(node, ast.keyword) and node.arg and node.arg.startswith("_"):
            flag(node, "private_attribute", f"keyword {node.arg!r} is not allowed")
    return found
