"""Data checks, outcome names and self-correction feedback, computed in the trusted parent from
what a worker returned (schemas and rows) against the reference's output.

Per dataset the checks are: ``executes``, ``schema`` (column names and types, in order),
``row_count``, ``key_set`` (distinct values of the family's key columns), ``values`` (the rows
as a multiset, floats within a relative tolerance) and, where the spec asks for an order,
``ordering``. Reward = checks passed / checks total: the progressive reward of COCOS.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from miniworld import rows as rowcodec

OUTCOMES = ("correct", "wrong_result", "runtime_error", "unknown_reference", "syntax_error",
            "timeout", "policy_violation", "resource_limit")

#: Spark error conditions that mean "this name does not exist": the classic hallucination.
_UNKNOWN_CONDITIONS = ("UNRESOLVED_", "TABLE_OR_VIEW_NOT_FOUND", "FIELD_NOT_FOUND",
                       "COLUMN_NOT_FOUND", "CANNOT_RESOLVE_DATAFRAME_COLUMN", "ROUTINE_NOT_FOUND")
_UNKNOWN_TYPES = ("NameError", "AttributeError", "ImportError", "UnboundLocalError",
                  "ModuleNotFoundError")


@dataclass(frozen=True)
class Expected:
    """The reference's output on one dataset."""

    schema: tuple[tuple[str, str], ...]
    rows: tuple[tuple, ...]


@dataclass(frozen=True)
class CheckResult:
    name: str
    dataset: str
    passed: bool
    detail: str = ""


def check_names(ordered: bool) -> tuple[str, ...]:
    base = ("executes", "schema", "row_count", "key_set", "values")
    return base + ("ordering",) if ordered else base


def _close(a: Any, b: Any, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, float(b), rel_tol=rtol, abs_tol=atol)
    if isinstance(b, float) and isinstance(a, int) and not isinstance(a, bool):
        return _close(b, a, rtol, atol)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, rtol, atol) for x, y in zip(a, b))
    return a == b


def _rows_equal(expected: list[tuple], actual: list[tuple]) -> bool:
    return len(expected) == len(actual) and all(_close(e, a) for e, a in zip(expected, actual))


def _sorted(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda r: rowcodec.sort_key(tuple(rowcodec.canonical(v) for v in r)))


def check_dataset(name: str, expected: Expected, actual: dict, keys: list[str], ordered: bool) -> list[CheckResult]:
    """All checks for one dataset; a dataset whose run failed fails every check."""
    names = check_names(ordered)
    if "error" in actual or "rows" not in actual:
        err = actual.get("error", {})
        return [CheckResult(n, name, False, f"{err.get('type', 'Error')}: {short_message(err)}") for n in names]
    got_schema = tuple((str(c), str(t)) for c, t in actual.get("schema", []))
    got_rows = rowcodec.decode_rows(actual.get("rows", []))
    truncated = bool(actual.get("truncated"))
    exp_rows = list(expected.rows)
    results = [CheckResult("executes", name, True)]
    results.append(CheckResult("schema", name, got_schema == expected.schema,
                               "" if got_schema == expected.schema else
                               f"expected columns {_fmt_schema(expected.schema)}, got {_fmt_schema(got_schema)}"))
    count_ok = not truncated and len(got_rows) == len(exp_rows)
    results.append(CheckResult("row_count", name, count_ok, "" if count_ok else
                               f"expected {len(exp_rows)} rows, got {len(got_rows)}{'+' if truncated else ''}"))
    results.append(_key_check(name, expected, got_schema, got_rows, keys))
    same_width = all(len(r) == len(expected.schema) for r in got_rows)
    values_ok = same_width and not truncated and _rows_equal(_sorted(exp_rows), _sorted(got_rows))
    results.append(CheckResult("values", name, values_ok, "" if values_ok else
                               diff_rows(expected.schema, exp_rows, got_schema, got_rows)))
    if ordered:
        order_ok = values_ok and _rows_equal(exp_rows, got_rows)
        results.append(CheckResult("ordering", name, order_ok, "" if order_ok else "rows are not in the order the spec asks for"))
    return results


def _key_check(name: str, expected: Expected, got_schema: tuple, got_rows: list[tuple], keys: list[str]) -> CheckResult:
    if not keys:
        exp = {rowcodec.canonical(list(r)) for r in expected.rows}
        got = {rowcodec.canonical(list(r)) for r in got_rows}
        return CheckResult("key_set", name, exp == got, "" if exp == got else "the set of distinct rows differs")
    exp_cols = [c for c, _ in expected.schema]
    got_cols = [c for c, _ in got_schema]
    missing = [k for k in keys if k not in got_cols]
    if missing:
        return CheckResult("key_set", name, False, f"key column(s) {missing} missing from the output")
    exp_keys = {tuple(rowcodec.canonical(r[exp_cols.index(k)]) for k in keys) for r in expected.rows}
    got_keys = {tuple(rowcodec.canonical(r[got_cols.index(k)]) for k in keys) for r in got_rows}
    if exp_keys == got_keys:
        return CheckResult("key_set", name, True)
    return CheckResult("key_set", name, False,
                       f"keys {keys}: {len(exp_keys - got_keys)} missing, {len(got_keys - exp_keys)} unexpected")


def _fmt_schema(schema: tuple) -> str:
    return "(" + ", ".join(f"{c} {t}" for c, t in schema) + ")"


def diff_rows(exp_schema: tuple, exp_rows: list[tuple], got_schema: tuple, got_rows: list[tuple], limit: int = 4) -> str:
    """A short expected-vs-actual diff a data engineer can read: missing and unexpected rows."""
    exp_c = Counter(rowcodec.canonical(list(r)) for r in exp_rows)
    got_c = Counter(rowcodec.canonical(list(r)) for r in got_rows)
    missing = list((exp_c - got_c).elements())
    extra = list((got_c - exp_c).elements())
    lines = [f"expected {len(exp_rows)} rows, got {len(got_rows)}; {len(missing)} expected rows missing, "
             f"{len(extra)} unexpected rows"]
    cols = ", ".join(c for c, _ in exp_schema)
    if missing:
        lines.append(f"missing ({cols}): " + "; ".join(_fmt_row(r) for r in missing[:limit]))
    if extra:
        lines.append(f"unexpected ({', '.join(c for c, _ in got_schema)}): " + "; ".join(_fmt_row(r) for r in extra[:limit]))
    return "\n".join(lines)


def _fmt_row(row: tuple) -> str:
    return "(" + ", ".join("null" if v is None else str(v) for v in row) + ")"


def short_message(error: dict) -> str:
    """The first line of an error, without Spark's logical plan or JVM stack."""
    message = str(error.get("message", "")).strip()
    head = message.split("\n")[0]
    return head[:400]


def classify_error(error: dict) -> str:
    """Outcome name for a failed run."""
    if error.get("timed_out"):
        return "timeout"
    etype, condition = error.get("type", ""), error.get("condition") or ""
    if etype in _UNKNOWN_TYPES or any(condition.startswith(p) for p in _UNKNOWN_CONDITIONS):
        return "unknown_reference"
    if etype == "MemoryError" or condition in ("resource_limit",):
        return "resource_limit"
    if etype == "SyntaxError":
        return "syntax_error"
    return "runtime_error"


def outcome_of(reply: dict, checks: list[CheckResult]) -> tuple[str, str | None]:
    """(outcome, error text or None) for a worker reply and the checks computed from it."""
    status = reply.get("status")
    if status == "syntax_error":
        return "syntax_error", short_message(reply.get("error", {}))
    if status == "timeout":
        return "timeout", "the code did not finish within the time limit"
    if status == "resource_limit":
        return "resource_limit", short_message(reply.get("error", {}))
    if status in ("error", "crashed", "protocol"):
        err = reply.get("error", {})
        return classify_error(err), f"{err.get('type', 'Error')}: {short_message(err)}"
    for dataset in reply.get("datasets", []):
        if "error" in dataset:
            err = dataset["error"]
            return classify_error(err), f"{err.get('type', 'Error')}: {short_message(err)}"
    if checks and all(c.passed for c in checks):
        return "correct", None
    return "wrong_result", None


def feedback(outcome: str, error: str | None, checks: list[CheckResult], max_datasets: int = 2) -> str:
    """What a self-correction turn is told: the error, or the first failing checks with a diff."""
    if outcome == "correct":
        return "All checks passed."
    if error:
        return f"The code failed ({outcome}): {error}"
    lines = [f"The code ran but the result is wrong ({sum(c.passed for c in checks)}/{len(checks)} checks passed)."]
    shown = 0
    for dataset in dict.fromkeys(c.dataset for c in checks):
        failing = [c for c in checks if c.dataset == dataset and not c.passed]
        if not failing:
            continue
        detail = next((c.detail for c in failing if c.name == "values"), failing[0].detail)
        lines.append(f"On dataset {dataset!r}, failed: {', '.join(c.name for c in failing)}.\n{detail}")
        shown += 1
        if shown >= max_datasets:
            break
    return "\n".join(lines)


def accumulated_reward(r1: float, r2: float, gamma: float) -> float:
    """COCOS's return of a two-turn episode, ``gamma * r1 + (r2 - r1)``: credit for the first
    attempt and for what the correction added (used by the trainer's cocos arm and the TRL recipe)."""
    return gamma * r1 + (r2 - r1)
