"""The AST policy (first gate of the sandbox): legitimate pipelines pass, escapes are named."""
from __future__ import annotations

import pytest

from miniworld.sandbox import gate

OK = [
    "def transform(a):\n    return a.filter(F.col('x') > 1)\n",
    "from pyspark.sql import functions as F\nfrom pyspark.sql.window import Window\n"
    "def transform(a):\n    w = Window.partitionBy('k').orderBy(F.col('t').desc())\n"
    "    return a.withColumn('rn', F.row_number().over(w)).filter('rn = 1').drop('rn')\n",
    "import pyspark.sql.functions as F\ndef transform(a, b):\n    return a.join(b, on=['k'], how='left')\n",
    "def transform(a):\n    return a.select(F.expr('coalesce(x, 0) as x'), F.date_format('d', 'yyyy-MM'))\n",
]

BAD = {
    "import os\ndef transform(a):\n    return a\n": "import",
    "from subprocess import run\n": "import",
    "def transform(a):\n    return spark.read.text('/etc/passwd')\n": "blocked_attribute",
    "def transform(a):\n    s = spark\n    return s.sql('select 1')\n": "blocked_attribute",
    "def transform(a):\n    return a.sparkSession.catalog.listTables()\n": "blocked_attribute",
    "def transform(a):\n    return spark._jvm.java.lang.System.exit(0)\n": "private_attribute",
    "def transform(a):\n    return ().__class__.__bases__[0].__subclasses__()\n": "private_attribute",
    "def transform(a):\n    return open('/etc/passwd').read()\n": "blocked_name",
    "def transform(a):\n    return eval('1')\n": "blocked_name",
    "def transform(a):\n    return getattr(a, 'rdd')\n": "blocked_name",
    "def transform(a):\n    g = (x for x in [1])\n    return g.gi_frame.f_back.f_globals\n": "introspection",
    "def transform(a):\n    return '{0.__class__}'.format(a)\n": "dunder_string",
    "def transform(a):\n    return 'x{}'.format(a)\n": "blocked_attribute",
    "def transform(a):\n    return a.selectExpr(\"reflect('java.lang.System', 'getenv', 'HOME')\")\n": "sql_function",
    "def transform(a):\n    f = F.udf(lambda x: x)\n    return a\n": "blocked_attribute",
    "def transform(a):\n    return a.rdd.map(lambda r: r)\n": "blocked_attribute",
    "def transform(a):\n    a.write.parquet('/tmp/x')\n": "blocked_attribute",
    "async def transform(a):\n    return a\n": "async",
    "def transform(a):\n    global F\n    return a\n": "scope",
}


@pytest.mark.parametrize("source", OK)
def test_legitimate_pipelines_pass(source: str) -> None:
    assert gate.check(source) == []


@pytest.mark.parametrize("source,rule", list(BAD.items()))
def test_escapes_are_rejected_with_the_rule_named(source: str, rule: str) -> None:
    violations = gate.check(source)
    assert violations, source
    assert rule in {v.rule for v in violations}
    assert all(v.line >= 1 for v in violations)


def test_unparsable_code_is_a_syntax_error_not_a_violation() -> None:
    with pytest.raises(SyntaxError):
        gate.check("def transform(a) return a")
