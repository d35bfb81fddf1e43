"""The task-kind registry: every suite's kind comes from it, and each kind answers for itself."""
from __future__ import annotations

import pickle

import pytest

from miniworld.kinds import registry
from miniworld.suites import catalog


def test_every_built_in_suite_has_a_registered_kind_that_made_its_tasks() -> None:
    for path in sorted(catalog.SUITES_DIR.glob("*.yaml")):
        suite = catalog.load_suite(str(path))
        assert registry.get(suite.kind.name) is suite.kind
        tasks = catalog.generate(suite)
        assert tasks and all(registry.of(t) is suite.kind for t in tasks)
        assert all(t.checks_total > 0 for t in tasks)


def test_unknown_kind_names_the_known_ones(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown kind 'sql' \(known: pyspark, python\)"):
        registry.get("sql")
    path = tmp_path / "s.yaml"
    path.write_text("kind: sql\n")
    with pytest.raises(catalog.SuiteError, match="unknown kind 'sql'"):
        catalog.load_suite(str(path))


def test_a_pipeline_suite_may_name_its_kind(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("kind: pyspark\nfamilies: [orders_enrichment]\nbug_classes: [join_type]\n")
    suite = catalog.load_suite(str(path))
    assert suite.kind.name == "pyspark" and suite.kind.needs_spark


def test_prompts_and_descriptions_are_the_kinds_own() -> None:
    spark = catalog.generate(catalog.load_suite("smoke"))[0]
    python = catalog.generate(catalog.load_suite("humaneval"))[0]
    spark_msgs, python_msgs = registry.messages(spark), registry.messages(python)
    assert "PySpark" in spark_msgs[0]["content"] and "PySpark" not in python_msgs[0]["content"]
    assert spark.buggy_code in spark_msgs[1]["content"] and python.spec.rstrip() in python_msgs[1]["content"]
    assert registry.prompt(spark, [("x = 1", "wrong")]).endswith("Fix the function so that it meets the spec.")
    assert "test_code" not in registry.of(spark).describe(spark)
    assert registry.of(python).describe(python)["entry_point"] == python.entry_point


def test_a_pickled_suite_keeps_its_kind() -> None:
    suite = catalog.load_suite("humaneval")
    again = pickle.loads(pickle.dumps(suite))
    assert again == suite and again.kind == suite.kind and not again.kind.needs_spark
    assert hash(again.kind) == hash(suite.kind) and again.kind != catalog.load_suite("smoke").kind
