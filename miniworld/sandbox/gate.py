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
        "java_method", "try_reflect", "mergeInto",
        # local (pandas/arrow) objects: pandas ``eval``/``query`` resolve attribute chains in
        # strings (``'@x.__init__.__globals__'`` built at run time) and pandas writes files
        "toPandas", "toArrow", "pandas_api", "to_pandas_on_spark", "to_pandas", "eval", "query",
        "plot", "transformWithState",
        # ``T.StructType.fromJson`` imports any module named by a UDT's ``pyClass``
        "fromJson",
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

#: SQL functions that reach the JVM or server-side files (``reflect/**/(``, ``\`reflect\`(`` and
#: ``builtin.reflect(`` included: comment markers are blanked before matching).
_SQL_DENY = re.compile(r"\b(reflect|java_method|try_reflect|read_files|input_file_name)`?\s*\(", re.I)
_SQL_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect", "read_files", "input_file_name"})
#: In an expression string: a nested query (scalar, EXISTS or IN subquery, ``FROM t |> ...``,
#: ``TABLE t``), which reaches other views and server files (``text.`/etc/passwd` ``), or a
#: function name computed at analysis time with ``IDENTIFIER('ref' || 'lect')``.
_SQL_NESTED = re.compile(r"\(\s*(select|from|table|values|with)\b|\bidentifier\s*\(", re.I)
#: In an expression string: a schema-parsing function (its schema could be folded from pieces
#: into a JVM user-defined type; the DataFrame API's ``F.from_json(col, "literal")`` stays open).
_SQL_SCHEMA_PARSE = re.compile(r"\bfrom_(json|csv|xml)`?\s*\(", re.I)
_SQL_COMMENT = re.compile(r"/\*|\*/|--")


def sql_text_violation(text: str, expression: bool = False) -> str | None:
    """Why SQL text may not be sent to Spark, or None. ``expression``: the text is parsed as an
    expression by the server (``F.expr``, ``selectExpr``, ``filter("...")``), checked at run time
    by the worker on the plan it sends, so strings assembled at run time are covered too."""
    flat = _SQL_COMMENT.sub(" ", text)
    if _SQL_DENY.search(flat):
        return "SQL text calls a JVM-reflection or file function"
    if expression and _SQL_NESTED.search(flat):
        return "SQL expression text nests a query or computes a function name"
    if expression and _SQL_SCHEMA_PARSE.search(flat):
        return "SQL expression text parses a schema (use F.from_json with a literal schema)"
    return None


_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def udt_violation(text: str) -> str | None:
    """Why a schema string may not be sent, or None. A JSON schema with a user-defined type
    (``{"type": "udt", "pyClass": ...}``) makes the server instantiate a JVM class by name and
    the client import the Python module it names when the schema comes back. Every UDT form
    needs the ``pyClass`` key (``\\u`` escapes decoded: JSON would decode them too)."""
    plain = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    if "pyclass" in plain.lower():
        return "schema text declares a user-defined type"
    return None


def sql_function_violation(name: str) -> str | None:
    """Why a function called by name (``df.agg({'x': 'reflect'})``) may not run, or None."""
    if name.strip().strip("`").rsplit(".", 1)[-1].strip("`").lower() in _SQL_FUNCTIONS:
        return f"SQL function {name!r} reaches the JVM or server files"
    return None


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
    # docstrings and other bare string statements: nothing can reach them without dunder access
    inert = {id(s.value) for s in ast.walk(tree) if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)}

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
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inert:
            if "__" in node.value:
                flag(node, "dunder_string", "string constants may not contain '__'")
            elif sql_text_violation(node.value):
                flag(node, "sql_function", "SQL text calls a JVM-reflection or file function")
            elif udt_violation(node.value):
                flag(node, "udt", "string constants may not declare a user-defined type")
        elif isinstance(node, ast.keyword) and node.arg and node.arg.startswith("_"):
            flag(node, "private_attribute", f"keyword {node.arg!r} is not allowed")
    return found
