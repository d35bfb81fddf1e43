"""Checks, outcome classification and feedback (pure: no Spark)."""
from __future__ import annotations

import datetime as dt

from miniworld import rows
from miniworld.checks import Expected, check_dataset, classify_error, feedback, outcome_of

EXP = Expected((("k", "int"), ("v", "double"), ("d", "date")),
               ((1, 1.5, dt.date(2024, 1, 1)), (2, None, None), (3, 0.1 + 0.2, dt.date(2024, 2, 29))))


def _actual(rows_: list[tuple], schema=None, truncated=False) -> dict:
    return {"schema": [list(c) for c in (schema or EXP.schema)], "rows": rows.encode_rows(rows_),
            "truncated": truncated}


def test_same_rows_in_another_order_pass_unordered_checks() -> None:
    got = _actual([EXP.rows[2], EXP.rows[0], EXP.rows[1]])
    assert all(c.passed for c in check_dataset("d", EXP, got, ["k"], ordered=False))


def test_float_tolerance_and_ordering_check() -> None:
    got = _actual([(3, 0.3, dt.date(2024, 2, 29)), EXP.rows[0], EXP.rows[1]])
    checks = {c.name: c for c in check_dataset("d", EXP, got, ["k"], ordered=True)}
    assert checks["values"].passed and not checks["ordering"].passed


def test_wrong_values_fail_values_but_keep_partial_credit() -> None:
    got = _actual([(1, 1.5, dt.date(2024, 1, 1)), (2, 0.0, None), (3, 0.3, dt.date(2024, 2, 29))])
    checks = {c.name: c.passed for c in check_dataset("d", EXP, got, ["k"], ordered=False)}
    assert checks == {"executes": True, "schema": True, "row_count": True, "key_set": True, "values": False}


def test_missing_key_column_and_schema_mismatch() -> None:
    got = _actual([(1.5,)], schema=[["v", "double"]])
    checks = {c.name: c for c in check_dataset("d", EXP, got, ["k"], ordered=False)}
    assert not checks["schema"].passed and "expected columns" in checks["schema"].detail
    assert not checks["key_set"].passed and "missing" in checks["key_set"].detail


def test_truncated_output_never_passes_row_count() -> None:
    got = _actual(list(EXP.rows), truncated=True)
    checks = {c.name: c.passed for c in check_dataset("d", EXP, got, ["k"], ordered=False)}
    assert not checks["row_count"] and not checks["values"]


def test_failed_dataset_fails_all_its_checks() -> None:
    checks = check_dataset("d", EXP, {"error": {"type": "AnalysisException", "message": "boom"}}, ["k"], False)
    assert len(checks) == 5 and not any(c.passed for c in checks)


def test_error_classification() -> None:
    assert classify_error({"type": "AnalysisException", "condition": "UNRESOLVED_COLUMN.WITH_SUGGESTION"}) == "unknown_reference"
    assert classify_error({"type": "AttributeError"}) == "unknown_reference"
    assert classify_error({"type": "MemoryError"}) == "resource_limit"
    assert classify_error({"type": "KeyboardInterrupt", "timed_out": True}) == "timeout"
    assert classify_error({"type": "ArithmeticException", "condition": "DIVIDE_BY_ZERO"}) == "runtime_error"


def test_outcome_and_feedback_for_wrong_result_show_a_row_diff() -> None:
    got = _actual([EXP.rows[0], EXP.rows[1]])
    checks = check_dataset("typical", EXP, got, ["k"], ordered=False)
    outcome, error = outcome_of({"status": "ok", "datasets": [got]}, checks)
    assert outcome == "wrong_result" and error is None
    text = feedback(outcome, error, checks)
    assert "expected 3 rows, got 2" in text and "missing" in text and "typical" in text


def test_feedback_for_errors_has_no_plan_or_stack() -> None:
    reply = {"status": "ok", "datasets": [{"error": {"type": "AnalysisException", "condition": "UNRESOLVED_COLUMN",
                                                     "message": "[UNRESOLVED_COLUMN] `x` cannot be resolved.\n'Project ['x]\n+- Relation"}}]}
    outcome, error = outcome_of(reply, [])
    assert outcome == "unknown_reference"
    assert "Project" not in error and "`x` cannot be resolved" in error
