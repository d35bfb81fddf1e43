"""The sandbox against hostile code: each program is contained with a clear outcome, nothing
outside the worker's scratch directory changes, no secret reaches a worker, and the next
(correct) episode still runs on the same pool and Spark server."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from miniworld.sandbox import isolation

SECRET = "cosmocore-test-secret-7f3a"
os.environ["COSMOCORE_TEST_SECRET"] = SECRET  # set before the session's sandbox starts
SENTINEL = "/tmp/miniworld_pwned"

T = "def transform(**inputs):\n"  # every hostile program takes the task's inputs by keyword

HOSTILE: dict[str, tuple[str, set[str]]] = {
    # --- the policy gate ---------------------------------------------------------------
    "import_os": ("import os\n" + T + "    os.system('touch /tmp/miniworld_pwned')\n", {"policy_violation"}),
    "import_subprocess": ("import subprocess\n" + T + "    subprocess.run(['id'])\n", {"policy_violation"}),
    "import_socket": ("import socket\n" + T + "    socket.create_connection(('pypi.org', 443))\n", {"policy_violation"}),
    "import_ctypes": ("import ctypes\n", {"policy_violation"}),
    "dunder_import": (T + "    __import__('os').system('id')\n", {"policy_violation"}),
    "open_file": (T + "    return open('/etc/shadow').read()\n", {"policy_violation"}),
    "write_file": (T + "    open('/tmp/miniworld_pwned', 'w').write('x')\n", {"policy_violation"}),
    "eval_exec": (T + "    exec('import os')\n", {"policy_violation"}),
    "getattr_escape": (T + "    return getattr(spark, 'sql')('select 1')\n", {"policy_violation"}),
    "subclasses": (T + "    return ().__class__.__base__.__subclasses__()\n", {"policy_violation"}),
    "frame_escape": (T + "    g = (i for i in [1])\n    return g.gi_frame.f_back.f_globals\n", {"policy_violation"}),
    "format_escape": (T + "    return '{0.__class__}'.format(spark)\n", {"policy_violation"}),
    "jvm_access": (T + "    return spark._jvm.java.lang.Runtime.getRuntime()\n", {"policy_violation"}),
    "spark_stop": (T + "    spark.stop()\n", {"policy_violation"}),
    "spark_read_server_file": (T + "    return spark.read.text('/etc/passwd')\n", {"policy_violation"}),
    "aliased_session_sql": (T + "    s = list(inputs.values())[0].sparkSession\n    return s.sql('select 1')\n",
                            {"policy_violation"}),
    "sql_reflect": (T + "    return spark.range(1).selectExpr(\"reflect('java.lang.System', 'getenv', 'HOME')\")\n",
                    {"policy_violation"}),
    "python_udf": (T + "    f = F.udf(lambda x: x)\n    return spark.range(1).select(f('id'))\n", {"policy_violation"}),
    "rdd": (T + "    return spark.range(1).rdd.map(lambda r: r).toDF()\n", {"policy_violation"}),
    "write_table": (T + "    spark.range(1).write.mode('overwrite').parquet('/tmp/miniworld_pwned')\n", {"policy_violation"}),
    "drop_input_views": (T + "    spark.catalog.dropGlobalTempView('x')\n", {"policy_violation"}),
    "exit": (T + "    exit(1)\n", {"policy_violation"}),
    "type_introspection": (T + "    return type(spark)\n", {"policy_violation"}),
    # --- past the gate: restricted scope, rlimits, deadlines, Landlock ---------------------
    "functions_sys_module": (T + "    F.sys.exit(1)\n", {"unknown_reference"}),
    "import_sparksession_class": ("from pyspark.sql import SparkSession\n", {"unknown_reference"}),
    "pandas_write_outside_scratch": (
        T + "    df = spark.range(3).toPandas()\n    df.to_csv('/tmp/miniworld_pwned')\n    return spark.range(1)\n",
        {"policy_violation"}),  # toPandas is blocked (pandas eval/query escapes); Landlock backs it up
    "infinite_loop": (T + "    while True:\n        pass\n", {"timeout"}),
    "swallowed_interrupt": (T + "    while True:\n        try:\n            while True:\n                pass\n"
                            "        except:\n            pass\n", {"timeout"}),
    "memory_bomb": (T + "    x = [0] * (10 ** 10)\n", {"resource_limit"}),
    "string_bomb": (T + "    x = 'a' * (10 ** 11)\n", {"resource_limit"}),
    "deep_recursion": ("def f(n):\n    return f(n + 1)\n" + T + "    return f(0)\n", {"runtime_error"}),
    "huge_spark_job": (T + "    return spark.range(10 ** 12).crossJoin(spark.range(10 ** 9)).groupBy().count()\n",
                       {"timeout"}),
    "spark_busy_loop": (T + "    while True:\n        spark.range(5).count()\n", {"timeout"}),
    "huge_output": (T + "    print('x' * (10 ** 8))\n    return spark.range(1)\n", {"wrong_result", "runtime_error"}),
    "not_a_dataframe": (T + "    return 42\n", {"runtime_error"}),
    "no_transform": ("x = 1\n", {"unknown_reference"}),
    "raises": (T + "    return [][1]\n", {"runtime_error"}),
    "syntax_error": ("def transform(a) return a\n", {"syntax_error"}),
    "null_bytes": ("def transform(a):\n    return a\x00\n", {"syntax_error"}),
}


@pytest.fixture(scope="module")
def task(smoke_tasks):
    return next(t for t in smoke_tasks if t.family == "orders_enrichment")


def test_the_corpus_is_large_enough() -> None:
    assert len(HOSTILE) >= 30


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_contained(name: str, sandbox, task) -> None:
    code, outcomes = HOSTILE[name]
    if name == "pandas_write_outside_scratch" and not isolation.landlock_available():
        pytest.skip("Landlock is unavailable here: only the policy and scope layers apply")
    if Path(SENTINEL).exists():
        os.remove(SENTINEL)
    result = sandbox.evaluate(task, code, timeout_s=3.0)
    assert result.outcome in outcomes, (name, result.outcome, result.error)
    assert result.reward < 1.0
    assert not Path(SENTINEL).exists(), f"{name} wrote outside its scratch directory"
    assert len(result.stdout) <= 8192
    follow_up = sandbox.evaluate(task, task.reference_code)
    if follow_up.outcome == "timeout":
        # Known limit (docs/RELIABILITY.md): a runaway Spark job that is slow to honour its
        # cancellation (``huge_spark_job``) can still hold the 2 local cores when the next
        # episode starts; seen once in five suite runs. The server must recover: one retry.
        follow_up = sandbox.evaluate(task, task.reference_code)
    assert follow_up.outcome == "correct", (name, follow_up.error)


@pytest.mark.slow
def test_no_secret_reaches_workers_or_server(sandbox) -> None:
    pids = sandbox.pool.pids() + ([sandbox.server_pid] if sandbox.server_pid else [])
    assert pids
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert SECRET.encode() not in environ, pid


@pytest.mark.slow
def test_workers_share_the_servers_network_namespace_not_ours(sandbox) -> None:
    if not sandbox.endpoint.isolated:
        pytest.skip("network namespaces are unavailable on this machine (sandbox warned)")
    ours = os.readlink("/proc/self/ns/net")
    server = os.readlink(f"/proc/{sandbox.server_pid}/ns/net")
    assert server != ours
    for pid in sandbox.pool.pids():
        assert os.readlink(f"/proc/{pid}/ns/net") == server


@pytest.mark.slow
def test_a_killed_worker_is_replaced(sandbox, task) -> None:
    before = sandbox.pool.replaced
    result = sandbox.evaluate(task, HOSTILE["swallowed_interrupt"][0], timeout_s=1.0)
    assert result.outcome == "timeout"
    assert sandbox.pool.replaced == before + 1
    results = sandbox.evaluate_many([(task, task.reference_code)] * 4)
    assert [r.outcome for r in results] == ["correct"] * 4
