"""`cosmocore tasks import`: a user's own PySpark function becomes a verified suite.

Static parts (finding the function, schemas from hints/docstring/samples, the sandbox dialect,
seeded data) run without Spark; the import itself runs the real CLI on its own local server, and
the suite it writes is then scored in the session's sandbox (reference correct, mutant not).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cosmocore.cli import app
from miniworld.sandbox import gate
from miniworld.suites import catalog, datagen, importer, user_suites

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "tests" / "data" / "user_pipelines"
SEGMENT = EXAMPLES / "segment_revenue.py"
LATE = EXAMPLES / "late_shipments.py"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmocore.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


# -- static analysis (no Spark) -------------------------------------------------------------
def test_type_hinted_pipeline_is_rewritten_to_the_sandbox_dialect() -> None:
    a = importer.analyse(SEGMENT)
    assert a.function == "segment_revenue" and a.family == "segment_revenue"
    assert a.schema_sources == {"orders": "type hint", "customers": "type hint"}
    assert a.inputs["customers"] == "customer_id INT, segment STRING, country STRING"
    func = ast.parse(a.reference).body[0]
    assert func.name == "transform" and [x.arg for x in func.args.args] == ["orders", "customers"]
    assert "F.col('status')" in a.reference and "col(" not in a.reference.replace("F.col(", "")
    assert ">= 5.0" in a.reference and "MIN_AMOUNT" not in a.reference  # default and constant inlined
    assert "Revenue per (segment, country)" in a.spec and '"""' not in a.reference
    assert gate.check(a.reference) == []
    assert a.keys == ["segment", "country"] and a.ordered is False
    assert a.hints.literals["amount"] == [5.0] and a.hints.literals["status"] == ["completed"]
    assert a.hints.join_keys == {"customer_id"}


def test_docstring_schemas_and_doctest_rows() -> None:
    a = importer.analyse(LATE, "late_shipments")
    assert a.schema_sources == {"shipments": "docstring", "carriers": "docstring"}
    assert a.inputs["carriers"] == "carrier_id INT, carrier_name STRING"
    assert a.hints.samples["carriers"][0] == (1, "DHL")
    assert a.ordered is True and a.keys == []
    assert "Inputs:" not in a.spec and "shipment_id INT" not in a.spec


def test_sample_file_gives_schema_and_rows(tmp_path) -> None:
    csv = tmp_path / "customers.csv"
    csv.write_text("customer_id,segment,country\n1,smb,DE\n2,,FR\n3,enterprise,\n")
    src = tmp_path / "p.py"
    src.write_text("from pyspark.sql import functions as F\n\n"
                   "def enrich(orders: 'Annotated[DataFrame, \"order_id INT, customer_id INT\"]', customers):\n"
                   "    return orders.join(customers, 'customer_id', 'left')\n")
    a = importer.analyse(src, samples={"customers": csv})
    assert a.schema_sources["customers"] == "sample"
    assert a.inputs["customers"] == "customer_id BIGINT, segment STRING, country STRING"
    fam = importer.build_family(a, "p.py:enrich")
    assert fam.data["typical"]["customers"][:3] == [(1, "smb", "DE"), (2, None, "FR"), (3, "enterprise", None)]


def test_generated_data_is_seeded_and_hits_the_code_s_boundaries() -> None:
    a = importer.analyse(SEGMENT)
    one, two = importer.build_family(a, "x"), importer.build_family(a, "x")
    assert one.data == two.data
    amounts = {r[3] for kind in one.data.values() for r in kind["orders"]}
    assert {5.0, 4.99, 5.01} <= amounts  # the filter's literal and its off-by-one neighbours
    statuses = {r[2] for r in one.data["adversarial"]["orders"]}
    assert "completed" in statuses and statuses & {"COMPLETED", " completed ", "Completed"}
    customers = {r[0] for r in one.data["typical"]["customers"]}
    assert {r[1] for r in one.data["typical"]["orders"] if r[1] is not None} - customers  # orphans to join
    assert datagen.supported("array<int>") and not datagen.supported("map<string,int>")


# -- bad input: exit 2, one line, nothing written -------------------------------------------
BAD = {
    "syntax": ("def f(df:\n    return df\n", [], "does not parse"),
    "missing_function": ("def f(df):\n    return df\n", ["--function", "g"], "no top-level function 'g'"),
    "ambiguous": ("def a(x):\n    return x\n\ndef b(y):\n    return y\n", [], "several candidates (a, b)"),
    "rdd": ("def f(df: 'Annotated[DataFrame, \"a INT\"]'):\n    return df.rdd.map(lambda r: r).toDF()\n", [],
            "RDD API"),
    "spark_context": ("def f(df: 'Annotated[DataFrame, \"a INT\"]'):\n    sc = df.sparkSession.sparkContext\n"
                      "    return df\n", [], "SparkContext"),
    "read_inside": ("def f(df: 'Annotated[DataFrame, \"a INT\"]'):\n    return spark.read.table('t').union(df)\n", [],
                    "does I/O inside the function"),
    "open_inside": ("def f(df: 'Annotated[DataFrame, \"a INT\"]'):\n    open('/tmp/x', 'w')\n    return df\n", [],
                    "does I/O inside the function"),
    "returns_collect": ("def f(df: 'Annotated[DataFrame, \"a INT\"]'):\n    return df.collect()\n", [],
                        "returns .collect()"),
    "returns_nothing": ("def f(df: 'Annotated[DataFrame, \"a INT\"]'):\n    df.show()\n", [], "returns no DataFrame"),
    "no_dataframe_param": ("def f(n: int):\n    return n\n", [], "not a DataFrame"),
    "no_schema": ("def f(orders):\n    return orders\n", [], "cannot infer the schema of 'orders'"),
    "outside_helper": ("def helper(x):\n    return x\n\ndef _f(df: 'Annotated[DataFrame, \"a INT\"]') -> 'DataFrame':\n"
                       "    return helper(df)\n", [], "uses 'helper', defined outside"),
    "decimal_input": ("def f(df: 'Annotated[DataFrame, \"a DECIMAL(10,2)\"]'):\n    return df.filter('a > 1')\n", [],
                      "DOUBLE instead of DECIMAL"),
    "bad_sample": ("def f(orders):\n    return orders\n", ["--sample", "orders=/no/such.csv"], "no such file"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_one_line(case, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COSMOCORE_SUITES", str(tmp_path / "suites"))
    source, extra, message = BAD[case]
    path = tmp_path / "pipeline.py"
    path.write_text(source)
    result = CliRunner().invoke(app, ["tasks", "import", str(path), "--suite", "x", "--json", *extra])
    assert result.exit_code == 2, (case, result.output, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (case, result.stderr)
    error = json.loads(result.stdout)  # --json: the error as one object on stdout too
    assert error["error"] in lines[0] and error["input"] == str(path) and error["exit_status"] == 2
    assert not (tmp_path / "suites").exists()  # nothing written


def test_a_suite_that_an_import_did_not_write_is_left_alone(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COSMOCORE_SUITES", str(tmp_path))
    mine = tmp_path / "hand.yaml"
    mine.write_text("name: hand\npairs: [[orders_enrichment, join_type]]\n")
    for suite in ("hand", str(mine)):
        result = CliRunner().invoke(app, ["tasks", "import", str(SEGMENT), "--suite", suite])
        assert result.exit_code == 2 and "not written by `tasks import`" in result.stderr
    assert CliRunner().invoke(app, ["tasks", "import", str(SEGMENT), "--suite", "smoke"]).exit_code == 2
    assert mine.read_text() == "name: hand\npairs: [[orders_enrichment, join_type]]\n"


# -- the import on Spark ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def imported(cache_dir, tmp_path_factory):
    """segment_revenue imported by the real CLI (its own local Spark) into a private suites dir."""
    suites = tmp_path_factory.mktemp("suites")
    env = {"COSMOCORE_SUITES": str(suites), "COSMOCORE_CACHE": str(cache_dir)}
    out = cli("tasks", "import", str(SEGMENT), "--suite", "mine", "--json", env=env)
    assert out.returncode == 0, out.stderr
    old = os.environ.get("COSMOCORE_SUITES")
    os.environ["COSMOCORE_SUITES"] = str(suites)
    yield json.loads(out.stdout), env
    if old is None:
        os.environ.pop("COSMOCORE_SUITES", None)
    else:
        os.environ["COSMOCORE_SUITES"] = old


@pytest.mark.slow
def test_import_json_and_observable_mutants_across_bug_classes(imported) -> None:
    payload, env = imported
    assert {"suite", "path", "family", "function", "inputs", "schema_sources", "keys", "ordered", "tasks", "train",
            "test", "dev", "bug_classes", "not_applicable", "discarded_unobservable", "duration_s"} <= payload.keys()
    assert payload["suite"] == "mine" and Path(payload["path"]) == Path(env["COSMOCORE_SUITES"]) / "mine.yaml"
    assert payload["tasks"] >= 10 and len(payload["bug_classes"]) >= 6, payload["bug_classes"]
    assert {"join_type", "filter_boundary", "agg_function", "groupby_key_missing"} <= payload["bug_classes"].keys()
    assert payload["train"] > 0 and payload["test"] > 0
    assert sum(payload["bug_classes"].values()) == payload["tasks"] == payload["train"] + payload["dev"] + payload["test"]

    listed = cli("tasks", "list", "--suite", "mine", "--json", env=env)  # from the cache: no Spark
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["tasks"]) == payload["tasks"]
    shown = cli("tasks", "show", "segment_revenue.join_type.0", "--suite", "mine", "--json", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["verified"] is True

    before = Path(payload["path"]).read_bytes()  # a second import of the same function needs --force
    again = cli("tasks", "import", str(SEGMENT), "--suite", "mine", env=env)
    assert again.returncode == 2 and "--force" in again.stderr
    assert Path(payload["path"]).read_bytes() == before


@pytest.mark.slow
def test_generated_suite_scores_reference_correct_and_mutant_not(imported, sandbox) -> None:
    suite = catalog.load_suite("mine")
    tasks = catalog.load_tasks(suite)  # verified by the import: no Spark needed to load
    assert all(t.expected is not None for t in tasks)
    by_class = {t.bug_class: t for t in tasks}
    picked = [by_class["join_type"], by_class["filter_boundary"]]
    items = [(t, t.reference_code) for t in picked] + [(t, t.buggy_code) for t in picked]
    results = sandbox.evaluate_many(items, timeout_s=120)  # generous: the first job warms a cold server
    assert [r.outcome for r in results[:2]] == ["correct", "correct"], [r.error for r in results]
    assert all(r.outcome != "correct" and r.reward < 1 for r in results[2:])


@pytest.mark.slow
def test_a_second_function_joins_the_same_suite(imported, sandbox) -> None:
    payload, _ = imported
    analysis = importer.analyse(LATE, "late_shipments")
    family = importer.build_family(analysis, "late_shipments.py:late_shipments")
    result = user_suites.import_family(analysis, family, "mine", sandbox)
    out = result.to_json()
    assert out["suite_families"] == ["segment_revenue", "late_shipments"]
    assert {"window_spec", "dedup_missing", "order_direction"} <= out["bug_classes"].keys(), out["bug_classes"]
    tasks = catalog.load_tasks(catalog.load_suite("mine"))  # both families, still from the cache
    assert len(tasks) == payload["tasks"] + out["tasks"]
    assert {t.family for t in tasks} == {"segment_revenue", "late_shipments"}


def test_constant_arithmetic_is_folded_and_outside_names_get_their_true_line(tmp_path) -> None:
    from miniworld.suites import importer

    path = tmp_path / "gap.py"
    path.write_text('"""A module docstring\nover two lines."""\nGAP = 30 * 60\n\n\n'
                    'def gaps(events: \'Annotated[DataFrame, "ts LONG"]\'):\n'
                    '    """Rows after a long gap."""\n    return events.filter(F.col("ts") > GAP)\n')
    assert "1800" in importer.analyse(path).reference
    path.write_text(path.read_text().replace("GAP = 30 * 60", "GAP = compute()"))
    with pytest.raises(importer.PipelineImportError, match=r"uses 'GAP', defined outside the function \(line 8\)"):
        importer.analyse(path)
