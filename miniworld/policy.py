"""The sandbox's first gate: an AST policy over candidate code, checked before anything runs.

Candidate code may build DataFrame plans from its inputs with ``F`` (functions), ``T`` (types)
and ``Window``; it may not reach files, the network, processes, the JVM or the interpreter's
internals. The policy is deliberately a deny-list over *names* (whatever the receiver), because
aliasing (``s = spark; s.read``) defeats receiver-based checks. It is one layer of several (see
docs/SECURITY.md): restricted builtins, rlimits, a network namespace and Landlock back it up.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

#: Modules a candidate may import (the same objects are already in scope).
ALLOWED_IMPORTS = frozenset(
    {"pyspark", "pyspark.sql", "pyspark.sql.functions", "pyspark.sql.types", "pyspark.sql.window"}
)

#: Attribute names that reach I/O, the JVM, server-side Python, session state or other sessions.
BLOCKED_ATTRIBUTES = frozenset(
    {
        # reading/writing data and catalogs outside the given inputs
        "read", "readStream", "write", "writeStream", "writeTo", "sql", "table", "catalog",
        "dataSource", "tvf", "inputFiles", "checkpoint", "localCheckpoint", "saveAsTable",
        "insertInto", "save", "load", "text", "csv", "json", "parquet", "orc",
        # session / engine control
        "stop", "conf", "client", "sparkContext", "_jvm", "_jsc", "builder", "Builder", "active",
        "getActiveSession", "newSession", "cloneSession", "sparkSession", "streams", "profile",
        "addArtifact", "addArtifacts", "copyFromLocalToFs", "interruptAll", "interruptTag",
        "interruptOperation", "addTag", "removeTag", "clearTags", "registerProgressHandler",
        "createGlobalTempView", "createOrReplaceGlobalTempView", "createTempView",
        "createOrReplaceTempView", "registerTempTable", "cache", "persist", "unpersist",
        # code that runs server-side (Python workers, JVM reflection)
        "rdd", "udf", "udtf", "pandas_udf", "call_udf", "mapInPandas", "mapInArrow",
        "applyInPandas", "applyInPandasWithState", "applyInArrow", "cogroup", "foreach",
        "foreachPartition", "foreachBatch", "transformWithStateInPandas", "reflect",
        "java_method", "try_reflect",
        # interpreter introspection that strings can smuggle
        "format", "format_map", "mro",
    }
)

#: Frame, generator, coroutine, traceback and code attributes lead back to real globals.
_INTROSPECTION = re.compile(r"^(gi|cr|ag|f|tb|co|func|im)_")

#: Builtin names whose mere mention is a violation (they are also absent at run time).
BLOCKED_NAMES = frozenset(
    {
        "open", "exec", "eval", "compile", "__import__", "getattr", "setattr", "delattr", "vars",
        "globals", "locals", "dir", "input", "breakpoint", "help", "type", "super", "object",
        "memoryview", "exit", "quit", "os", "sys", "subprocess", "socket", "builtins",
    }
)

#: SQL text inside strings (F.expr, selectExpr, filter("...")) that reaches the JVM or files.
_SQL_DENY = re.compile(r"\b(reflect|java_method|try_reflect|read_files|input_file_name)\s*\(", re.I)


@dataclass(frozen=True)
class Violation:
    """Why a program was rejected: a rule name and the line it was found on."""

    rule: str
    detail: str
    line: int

    def __str__(self) -> str:
        return f"line {self.line}: {self.detail} ({self.rule})"


def check(source: str) -> list[Violation]:
    """Every policy violation in ``source`` (empty list: the program may run).

    Raises ``SyntaxError`` when the source does not parse; the caller reports that as the
    ``syntax_error`` outcome rather than as a policy violation.
    """
    tree = ast.parse(source)
    found: list[Violation] = []

    def flag(node: ast.AST, rule: str, detail: str) -> None:
        found.append(Violation(rule, detail, getattr(node, "lineno", 0)))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in ALLOWED_IMPORTS:
                    flag(node, "import", f"import of {alias.name!r} is not allowed")
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module not in ALLOWED_IMPORTS:
                flag(node, "import", f"import from {node.module!r} is not allowed")
            for alias in node.names:
                if alias.name == "*" or alias.name.startswith("_") or alias.name in BLOCKED_ATTRIBUTES:
                    flag(node, "import", f"importing {alias.name!r} is not allowed")
        elif isinstance(node, ast.Attribute):
            name = node.attr
            if name.startswith("_"):
                flag(node, "private_attribute", f"access to private attribute {name!r}")
            elif name in BLOCKED_ATTRIBUTES:
                flag(node, "blocked_attribute", f"use of {name!r} is not allowed in a pipeline")
            elif _INTROSPECTION.match(name):
                flag(node, "introspection", f"interpreter introspection via {name!r}")
        elif isinstance(node, ast.Name):
            if node.id in BLOCKED_NAMES or node.id.startswith("__"):
                flag(node, "blocked_name", f"use of {node.id!r} is not allowed")
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            flag(node, "scope", "global/nonlocal statements are not allowed")
        elif isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)):
            flag(node, "async", "async code is not allowed")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "__" in node.value:
                flag(node, "dunder_string", "string constants may not contain '__'")
            elif _SQL_DENY.search(node.value):
                flag(node, "sql_function", "SQL text calls a JVM-reflection or file function")
        elif isinstance(node, ast.keyword) and node.arg and node.arg.startswith("_"):
            flag(node, "private_attribute", f"keyword {node.arg!r} is not allowed")
    return found
