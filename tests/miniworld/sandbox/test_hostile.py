"""More hostile code (issue 7): a corpus by escape class, run through the session sandbox in
small batches, and a hypothesis fuzz test over random and mutated programs.

Together with ``tests/miniworld/sandbox/test_sandbox.py::HOSTILE`` the corpus holds more than 60 programs. For each
program: the outcome it gets (never ``correct``), nothing outside the worker's scratch directory
changed (a canary file that programs try to overwrite or delete keeps its content, no sentinel
appears), no planted secret (an environment variable of the trainer, a file outside the sandbox)
reaches the result's stdout, error or feedback, and the next episode (the task's reference) on
the same pool and Spark server still scores ``correct``.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniworld.sandbox import gate
from miniworld.checks import OUTCOMES

from test_sandbox import HOSTILE, SENTINEL  # noqa: E402 - tests/ is on sys.path (rootdir import)

SECRET = "cosmocore-hostile-secret-91be"
os.environ["COSMOCORE_HOSTILE_SECRET"] = SECRET  # set at collection, before the sandbox starts
CANARY = "/tmp/miniworld_hostile_canary.txt"  # programs try to overwrite or delete it
SECRET_FILE = "/tmp/miniworld_hostile_secret.txt"  # programs try to read it
CANARY_TEXT = "canary: must stay as it is\n"
PASSWD_LINE = re.compile(r"root:[^:\n]*:0:0:")  # a line of /etc/passwd, read server-side

T = "def transform(**inputs):\n"
DF = "    df = list(inputs.values())[0]\n"
RET = "    return spark.range(1)\n"
PICKLE_SYSTEM = "b\"cos\\nsystem\\n(S'touch /tmp/miniworld_pwned'\\ntR.\""
PICKLE_REMOVE = f"b\"cos\\nremove\\n(S'{CANARY}'\\ntR.\""
PANDAS_EVAL = (T + "    pdf = spark.range(1).toPandas()\n    u = '_' + '_'\n"
               "    e = '@s.' + u + 'init' + u + '.' + u + 'globals' + u + '.get(@k).system(@c)'\n"
               "    pdf.eval(e, local_dict={'s': spark, 'k': 'os', 'c': 'touch /tmp/miniworld_pwned'})\n" + RET)
XXE = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r>&e;</r>')

#: A JSON schema with a Python user-defined type: the server builds it, the client imports the
#: module it names when the schema comes back ("pyClass" split so no constant holds it).
_UDT_A, _UDT_B = json.dumps({"type": "struct", "fields": [{"name": "x", "nullable": True, "metadata": {}, "type": {
    "type": "udt", "pyClass": "antigravity.X", "serializedClass": "", "sqlType": "long"}}]}).split("pyClass")
_UDT_SQL = f"from_json('{{}}', concat('{_UDT_A}py', 'Class{_UDT_B}')) as v"
#: The JVM form (``"class"``: the server would construct that class), folded from two literals.
_JVM_A, _JVM_B = json.dumps({"type": "struct", "fields": [{"name": "x", "nullable": True, "metadata": {}, "type": {
    "type": "udt", "class": "java.lang.Object", "pyClass": "x", "sqlType": "long"}}]}).split("pyClass")

PV, RT, UR, TO, RL, WR, SE = ("policy_violation", "runtime_error", "unknown_reference", "timeout",
                              "resource_limit", "wrong_result", "syntax_error")
#: Blocked either by the AST policy or, for SQL text assembled at run time, by the worker's
#: check of every plan it sends (a PermissionError: ``runtime_error``).
SQL_BLOCKED = {PV, RT}
#: The follow-up reference run's limit (the sandbox default is 30 s).
FOLLOW_UP_TIMEOUT_S = 120.0

#: name -> (escape class, code, allowed outcomes)
MORE: dict[str, tuple[str, str, set[str]]] = {
    # --- file system ---------------------------------------------------------------------
    "fs_pathlib_read": ("file_system", "from pathlib import Path\n" + T + "    Path('/etc/passwd').read_text()\n" + RET, {PV}),
    "fs_io_open": ("file_system", "import io\n" + T + f"    io.open('{SECRET_FILE}').read()\n" + RET, {PV}),
    "fs_codecs_open": ("file_system", "import codecs\n" + T + f"    codecs.open('{CANARY}', 'w').write('x')\n" + RET, {PV}),
    "fs_remove_canary": ("file_system", T + f"    __import__('os').remove('{CANARY}')\n" + RET, {PV}),
    "fs_symlink": ("file_system", "from os import symlink\n" + T + "    symlink('/etc/passwd', 'p')\n" + RET, {PV}),
    "fs_shutil_rmtree": ("file_system", "import shutil\n" + T + "    shutil.rmtree('/tmp')\n" + RET, {PV}),
    "fs_createDataFrame_from_file": (
        "file_system", T + f"    return spark.createDataFrame([(open('{SECRET_FILE}').read(),)], 'v string')\n", {PV}),
    "fs_pandas_to_csv_canary": ("file_system", T + f"    spark.range(1).toPandas().to_csv('{CANARY}')\n" + RET, {PV}),
    "fs_pickle_remove_canary": ("file_system", T + f"    T.CloudPickleSerializer().loads({PICKLE_REMOVE})\n" + RET, {UR}),
    "fs_sql_subquery_file": (
        "file_system", T + "    return spark.range(1).select(F.expr(\"(select first(value) from text.`/etc/passwd`)\"))\n",
        SQL_BLOCKED),
    "fs_sql_subquery_secret_file": (
        "file_system", T + f"    return spark.range(1).selectExpr(\"(select max(value) from text.`{SECRET_FILE}`) as v\")\n",
        SQL_BLOCKED),
    "fs_sql_pipe_syntax": (
        "file_system", T + "    return spark.range(1).select(F.expr('(FROM text.`/etc/passwd` |> AGGREGATE max(value))'))\n",
        SQL_BLOCKED),
    "fs_read_files_runtime_string": (
        "file_system", T + "    f = 'read' + '_files'\n    return spark.range(1).select(F.expr(f + \"('/etc/passwd')\"))\n",
        SQL_BLOCKED),
    "fs_exists_subquery_comment": (
        "file_system", T + DF + "    return df.filter('exists(/**/select 1 from text.`/etc/passwd`)')\n", SQL_BLOCKED),
    "fs_xxe_xpath": (
        "file_system", T + f"    return spark.range(1).select(F.xpath(F.lit('{XXE}'), F.lit('/r/text()')))\n",
        {RT, WR}),
    "fs_xxe_from_xml": (
        "file_system", T + f"    return spark.range(1).select(F.from_xml(F.lit('{XXE}'), 'r string'))\n",
        {RT, WR}),
    "fs_plot_accessor": ("file_system", T + "    spark.range(3).plot.line(x='id', y='id').write_html('/tmp/miniworld_pwned')\n" + RET, {PV}),
    "fs_udt_schema_string_import": (
        "file_system", T + f"    s = {_UDT_A!r} + 'py' + 'Class' + {_UDT_B!r}\n    return spark.createDataFrame([(1,)], s)\n",
        SQL_BLOCKED),
    "fs_udt_from_json_sql_concat": (
        "file_system", T + f"    s = {_UDT_SQL!r}\n    return spark.range(1).selectExpr(s)\n", {RT, UR, WR}),
    "jvm_udt_class_from_json_concat_column": (
        "jvm", T + f"    s = F.concat(F.lit({_JVM_A + 'py'!r}), F.lit({'Class' + _JVM_B!r}))\n"
        "    return spark.range(1).select(F.from_json(F.lit('{}'), s))\n", {RT}),
    "jvm_udt_class_from_json_concat_sql": (
        "jvm", T + f"    s = \"from_json('{{}}', concat('\" + {_JVM_A!r} + \"py', 'Class\" + {_JVM_B!r} + \"'))\"\n"
        "    return spark.range(1).selectExpr(s)\n", SQL_BLOCKED),
    "fs_udt_fromJson_import": (
        "file_system", T + "    T.StructType.fromJson({'fields': [{'name': 'x', 'nullable': True, 'metadata': {},"
        " 'type': {'type': 'udt', 'pyClass': 'antigravity.X', 'class': 'x', 'sqlType': 'long'}}]})\n" + RET, {PV}),
    # --- environment secrets -------------------------------------------------------------
    "env_os_environ": ("secrets", "from os import environ\n" + T + "    print(environ)\n" + RET, {PV}),
    "env_func_globals": ("secrets", T + "    return transform.__globals__\n", {PV}),
    "env_proc_self_environ_sql": (
        "secrets", T + "    return spark.range(1).select(F.expr(\"(select max(value) from text.`/proc/self/environ`)\"))\n",
        SQL_BLOCKED),
    "env_reflect_getenv_runtime": (
        "secrets", T + "    f = 'java' + '_method'\n    return spark.range(1).select(F.expr(f + "
        "\"('java.lang.System', 'getenv', 'COSMOCORE_HOSTILE_SECRET')\"))\n", SQL_BLOCKED),
    "env_identifier_clause": (
        "secrets", T + "    return spark.range(1).select(F.expr(\"IDENTIFIER('java' || '_method')"
        "('java.lang.System', 'getenv', 'COSMOCORE_HOSTILE_SECRET')\"))\n", SQL_BLOCKED),
    "env_reflect_comment": (
        "secrets", T + "    return spark.range(1).selectExpr(\"reflect/**/('java.lang.System', 'getenv', 'HOME')\")\n", {PV}),
    "env_reflect_backticks": (
        "secrets", T + "    return spark.range(1).selectExpr(\"`java_method`('java.lang.System', 'getProperty', 'user.home')\")\n",
        {PV}),
    "env_agg_dict_reflect": ("secrets", T + "    return spark.range(1).agg({'id': 'reflect'})\n", SQL_BLOCKED),
    "env_pandas_eval_globals": ("secrets", PANDAS_EVAL, {PV}),
    "env_exception_traceback_frame": (
        "secrets", T + "    try:\n        1 / 0\n    except Exception as e:\n        return e.__traceback__.tb_frame.f_globals\n",
        {PV}),
    # --- network -------------------------------------------------------------------------
    "net_urllib": ("network", "import urllib.request\n" + T + "    urllib.request.urlopen('http://example.com')\n" + RET, {PV}),
    "net_builtins_dict_import": ("network", T + "    __builtins__['__import__']('socket')\n" + RET, {PV}),
    "net_importlib": ("network", "import importlib\n" + T + "    importlib.import_module('socket')\n" + RET, {PV}),
    "net_connect_client_module": ("network", "import pyspark.sql.connect.client\n", {PV}),
    "net_sql_http": (
        "network", T + "    return spark.range(1).select(F.expr(\"(select max(value) from text.`http://127.0.0.1:1/x`)\"))\n",
        SQL_BLOCKED),
    # --- process creation ----------------------------------------------------------------
    "proc_pty": ("process", "import pty\n" + T + "    pty.spawn('/bin/sh')\n" + RET, {PV}),
    "proc_multiprocessing": ("process", "from multiprocessing import Process\n" + T + "    Process(target=print).start()\n" + RET, {PV}),
    "proc_pickle_system": ("process", T + f"    T.CloudPickleSerializer().loads({PICKLE_SYSTEM})\n" + RET, {UR}),
    "proc_arrow_udf": ("process", T + "    f = F.arrow_udf(lambda s: s, 'long')\n    return spark.range(1).select(f('id'))\n", {UR}),
    "proc_userdefinedfunction": (
        "process", T + "    f = F.UserDefinedFunction(lambda x: x, T.LongType())\n    return spark.range(1).select(f('id'))\n",
        {UR}),
    "proc_udtf_class": ("process", T + "    return F.UserDefinedTableFunction\n", {UR}),
    # --- JVM through py4j or Connect -----------------------------------------------------
    "jvm_client": ("jvm", T + "    return spark._client\n", {PV}),
    "jvm_sparkcontext": ("jvm", T + "    return spark.sparkContext._jvm\n", {PV}),
    "jvm_sql_ddl_alias": ("jvm", T + "    s = spark\n    s.sql('CREATE TABLE t (a INT) USING parquet')\n" + RET, {PV}),
    "jvm_session_via_bound_method": ("jvm", T + "    return spark.createDataFrame.__self__.sql('select 1')\n", {PV}),
    "jvm_reflect_exit_runtime": (
        "jvm", T + "    f = 'ref' + 'lect'\n    return spark.range(1).select(F.expr(f + \"('java.lang.System', 'exit', 1)\"))\n",
        SQL_BLOCKED),
    "jvm_collect_reflect_in_transform": (
        "jvm", T + "    f = 'try_' + 'reflect'\n    spark.range(1).selectExpr(f + \"('java.lang.Thread', 'sleep', 100000L)\").collect()\n" + RET,
        SQL_BLOCKED),
    "jvm_merge_into_input": ("jvm", T + DF + "    df.mergeInto('global_temp.x', F.lit(True)).whenMatched().delete().merge()\n" + RET, {PV}),
    "jvm_other_view_subquery": (
        "jvm", T + "    return spark.range(1).select(F.expr('(table global_temp.orders)'))\n", SQL_BLOCKED),
    # --- Python introspection --------------------------------------------------------------
    "py_mro_subclasses": ("introspection", T + "    return ().__class__.__mro__[1].__subclasses__()\n", {PV}),
    "py_format_map": ("introspection", T + "    return '{0}'.format_map({'0': spark})\n", {PV}),
    "py_fstring_dunder": ("introspection", T + "    return f'{spark.__class__}'\n", {PV}),
    "py_operator_attrgetter": ("introspection", "from operator import attrgetter\n" + T + "    return attrgetter('sql')(spark)\n", {PV}),
    "py_decorator_globals": ("introspection", "@(lambda f: f.__globals__)\n" + T + RET, {PV}),
    "py_default_arg_self": ("introspection", T + "    g = lambda p=print: p.__self__\n    return g()\n", {PV}),
    "py_compile_exec": ("introspection", T + "    exec(compile('import os', 'x', 'exec'))\n" + RET, {PV}),
    "py_type_three_args": ("introspection", T + "    return type('X', (), {})\n", {PV}),
    "py_class_statement": ("introspection", "class X:\n    pass\n" + T + RET, {UR, RT}),
    "py_generator_frame": ("introspection", T + "    g = (i for i in [1])\n    return g.gi_frame.f_back\n", {PV}),
    "py_runtime_dunder_string_no_sink": (
        "introspection", T + "    u = '_' * 2\n    return u + 'class' + u\n", {RT}),
    "py_functions_inspect_module": ("introspection", T + "    F.inspect.currentframe()\n" + RET, {UR}),
    "py_metaclass_builds_class": ("introspection", T + "    X = T.DataTypeSingleton('X', (), {})\n" + RET, {UR}),
    "py_private_keyword": ("introspection", T + "    return spark.createDataFrame([(1,)], _schema='a int')\n", {PV}),
    "py_importfrom_private": ("introspection", "from pyspark.sql import _typing\n", {PV}),
    # --- resource exhaustion -----------------------------------------------------------------
    "res_bigint_power": ("resources", T + "    x = 10 ** (10 ** 9)\n" + RET, {TO, RL}),
    "res_sorted_huge": ("resources", T + "    x = sorted(range(10 ** 10))\n" + RET, {RL, TO}),
    "res_bytes_bomb": ("resources", T + "    x = b'x' * (10 ** 10)\n" + RET, {RL}),
    "res_print_flood": ("resources", T + "    for i in range(20000):\n        print('x' * 1000)\n" + RET, {WR}),
    "res_spark_groupby_huge": (
        "resources", T + "    spark.range(10 ** 11).groupBy((F.col('id') % 7).alias('k')).count().collect()\n" + RET, {TO}),
    "res_crossjoin_count": (
        "resources", T + "    spark.range(10 ** 9).crossJoin(spark.range(10 ** 9)).count()\n" + RET, {TO}),
    "res_lambda_recursion": ("resources", T + "    f = lambda n: f(n + 1)\n    return f(0)\n", {RT}),
    "res_nested_parens": ("resources", T + "    return " + "(" * 100_000 + "1" + ")" * 100_000 + "\n", {SE}),
}

CLASSES = ("file_system", "secrets", "network", "process", "jvm", "introspection", "resources")


@pytest.fixture(scope="module")
def task(smoke_tasks):
    return next(t for t in smoke_tasks if t.family == "orders_enrichment")


@pytest.fixture()
def planted():
    """The canary and the secret file, planted fresh; the sentinel absent."""
    Path(CANARY).write_text(CANARY_TEXT)
    Path(SECRET_FILE).write_text(SECRET + "\n")
    if Path(SENTINEL).exists():
        os.remove(SENTINEL)
    yield
    for path in (CANARY, SECRET_FILE):
        Path(path).unlink(missing_ok=True)


def _assert_contained(name: str, result, allowed: set[str]) -> None:
    assert result.outcome in allowed, (name, result.outcome, result.error)
    assert result.outcome != "correct" and result.reward < 1.0, name
    assert Path(CANARY).read_text() == CANARY_TEXT, f"{name} changed the canary outside its scratch"
    assert not Path(SENTINEL).exists(), f"{name} wrote outside its scratch directory"
    assert len(result.stdout) <= 8192, name
    for text in (result.stdout, result.error or "", result.feedback):
        assert SECRET not in text, f"{name} leaked the planted secret"
        assert not PASSWD_LINE.search(text), f"{name} read /etc/passwd through the server"


def _assert_server_alive(sandbox) -> None:
    if sandbox.server_pid:
        os.kill(sandbox.server_pid, 0)  # raises if the local Connect server died


def test_the_corpus_covers_every_class_and_is_large_enough() -> None:
    assert len(HOSTILE) + len(MORE) >= 60
    assert not set(HOSTILE) & set(MORE)
    assert {cls for cls, _, _ in MORE.values()} == set(CLASSES)
    for name, (_, _, allowed) in MORE.items():
        assert allowed <= set(OUTCOMES) and "correct" not in allowed, name


@pytest.mark.slow
def test_hostile_corpus_is_contained(sandbox, task, planted) -> None:
    """Programs run two at a time (the pool's size); after each pair that reached a worker, the
    task's reference runs on both workers and must still score ``correct``."""
    names = sorted(MORE)
    started = time.monotonic()
    outcomes: dict[str, str] = {}
    gated = [n for n in names if _rejected_by_gate(MORE[n][1])]
    for name, result in zip(gated, sandbox.evaluate_many([(task, MORE[n][1]) for n in gated], timeout_s=3.0)):
        outcomes[name] = result.outcome
        _assert_contained(name, result, MORE[name][2])
    running = [n for n in names if n not in gated]
    for i in range(0, len(running), 2):
        pair = running[i:i + 2]
        results = sandbox.evaluate_many([(task, MORE[n][1]) for n in pair], timeout_s=3.0)
        for name, result in zip(pair, results):
            outcomes[name] = result.outcome
            print(f"{MORE[name][0]:14} {name:36} {result.outcome:18} {result.error or ''}"[:200])
            _assert_contained(name, result, MORE[name][2])
        _assert_server_alive(sandbox)
        # The reference's own limit is generous: a hog's Spark job is cancelled (interruptTag) but
        # its executor threads can take a while to stop on a loaded machine; what is checked here is
        # that the server comes back and scores the next episode right, not how fast it recovers.
        follow = sandbox.evaluate_many([(task, task.reference_code)] * 2, timeout_s=FOLLOW_UP_TIMEOUT_S)
        assert [r.outcome for r in follow] == ["correct", "correct"], (pair, [r.error for r in follow])
    summary: dict[str, dict[str, int]] = {}
    for name, outcome in outcomes.items():
        per = summary.setdefault(MORE[name][0], {})
        per[outcome] = per.get(outcome, 0) + 1
    print(f"hostile corpus: {len(outcomes)} programs in {time.monotonic() - started:.1f}s: {summary}")


def _rejected_by_gate(code: str) -> bool:
    try:
        return bool(gate.check(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True


@pytest.mark.slow
def test_sql_assembled_at_run_time_never_reaches_the_server(sandbox, task) -> None:
    """The AST policy cannot see ``'ref' + 'lect'``; the worker's plan check does."""
    result = sandbox.evaluate(task, MORE["jvm_reflect_exit_runtime"][1], timeout_s=5.0)
    assert result.outcome == "runtime_error", result.error
    assert "policy violation at run time" in (result.error or "")
    _assert_server_alive(sandbox)
    assert sandbox.evaluate(task, task.reference_code).outcome == "correct"


@pytest.mark.slow
def test_schemas_reach_the_server_only_as_literals(sandbox, task) -> None:
    """A UDT schema folded from pieces would make the JVM construct a class; a literal schema
    (checked for UDTs) still parses JSON."""
    for name in ("jvm_udt_class_from_json_concat_column", "jvm_udt_class_from_json_concat_sql"):
        result = sandbox.evaluate(task, MORE[name][1], timeout_s=5.0)
        assert result.outcome == "runtime_error" and "policy violation at run time" in (result.error or ""), \
            (name, result.outcome, result.error)
    ok = T + "    return spark.range(1).select(F.from_json(F.lit('{\"a\": 5}'), 'a int').a.alias('a'))\n"
    assert sandbox.run_many_raw([(task, ok)])[0]["datasets"][0]["rows"] == [[5]]
    _assert_server_alive(sandbox)


def test_sql_checks_accept_ordinary_expressions() -> None:
    for text in ("coalesce(x, 0) as x", "rn = 1", "extract(year from d)", "trim(BOTH 'x' FROM s)",
                 "count(*)", "x in (1, 2, 3)", "date_format(d, 'yyyy-MM') -- month"):
        assert gate.sql_text_violation(text, expression=True) is None, text
    for text in ("(select 1)", "exists ( SELECT 1 )", "(FROM t |> AGGREGATE count(*))", "(TABLE t)",
                 "x IN (/**/select 1)", "IDENTIFIER('ref' || 'lect')('a', 'b')", "reflect/**/('a','b')",
                 "`java_method`('a', 'b')", "builtin.read_files('/etc')"):
        assert gate.sql_text_violation(text, expression=True), text
    assert gate.sql_function_violation("`REFLECT`") and gate.sql_function_violation("system.builtin.java_method")
    assert gate.sql_function_violation("sum") is None


# --- fuzzing -------------------------------------------------------------------------------

#: Snippets spliced into or substituted for tokens of the reference: escapes and plain noise.
SNIPPETS = [
    "__import__('os')", "spark._jvm", "open('/etc/passwd')", "getattr(spark, 'sql')", "spark.sparkContext",
    ".toPandas()", "F.expr('ref' + 'lect(1)')", "().__class__", "exec", "eval", "T.CloudPickleSerializer",
    "while True: pass", "import os", "lambda: 1", "[0] * 10 ** 10", "print('x' * 10 ** 6)", "yield",
    "\x00", "'''", "(", ")", ":", "\n    ", "\n", "return", "spark.range(10 ** 9)", "inputs", "None",
    "F.col('zz')", "1 / 0", "global F", "async ", "@", "**", "df", "F.lit(1)", ".alias('x')",
]
RENAMES = ["spark", "inputs", "F", "T", "Window", "DataFrame", "print", "range", "None", "True", "sorted",
           "sparkSession", "rdd", "read", "toPandas", "eval", "x", "id", "amount", "explode", "expr"]
HOSTILE_MARKERS = ("__", "_jvm", "open(", "getattr", "sparkContext", "toPandas", "ref' + 'lect", "exec",
                   "eval", "CloudPickle", "import os", "sparkSession", "rdd", "read", "toPandas")
_TOKEN = re.compile(r"\w+|[^\w\s]|\s+")


@st.composite
def programs(draw, reference: str) -> str:
    kind = draw(st.sampled_from(["printable", "splice", "mutate", "rename", "rename", "combo"]))
    if kind == "printable":
        return draw(st.text(st.characters(min_codepoint=9, max_codepoint=126), max_size=200))
    if kind == "splice":
        i = draw(st.integers(0, len(reference)))
        j = draw(st.integers(i, len(reference)))
        return reference[:i] + draw(st.sampled_from(SNIPPETS)) + reference[j:]
    if kind == "rename":  # identifiers swapped for others: mostly valid Python that runs
        tokens = _TOKEN.findall(reference)
        names = [k for k, t in enumerate(tokens) if t.isidentifier()]
        for _ in range(draw(st.integers(1, 2))):
            k = draw(st.sampled_from(names))
            tokens[k] = draw(st.sampled_from(sorted({tokens[n] for n in names} | set(RENAMES))))
        return "".join(tokens)
    if kind == "mutate":
        tokens = _TOKEN.findall(reference)
        for _ in range(draw(st.integers(1, 3))):
            k = draw(st.integers(0, len(tokens) - 1))
            tokens[k] = draw(st.sampled_from(SNIPPETS + tokens))
        return "".join(tokens)
    body = draw(st.lists(st.sampled_from(SNIPPETS), min_size=1, max_size=6))
    return T + "    " + " ".join(body) + "\n" + RET


@pytest.mark.slow
def test_fuzzed_programs_keep_the_invariants(sandbox, task, planted) -> None:
    reference = task.reference_code
    seen: list[str] = []

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(code=programs(reference))
    def check(code: str) -> None:
        result = sandbox.evaluate(task, code, timeout_s=3.0)
        assert result.outcome in OUTCOMES, (code, result.outcome)
        if result.outcome == "correct":  # only a harmless mutation of the reference may pass
            assert not any(m in code for m in HOSTILE_MARKERS), code
        else:
            _assert_contained("fuzz", result, set(OUTCOMES) - {"correct"})
        seen.append(result.outcome)

    check()
    print("fuzz outcomes:", {o: seen.count(o) for o in sorted(set(seen))})
    assert len(seen) >= 40
    _assert_server_alive(sandbox)
    follow = sandbox.evaluate_many([(task, reference)] * 2)
    assert [r.outcome for r in follow] == ["correct", "correct"], [r.error for r in follow]
