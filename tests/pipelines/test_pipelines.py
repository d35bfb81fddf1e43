"""Every reference pipeline family runs on Spark, is deterministic and keeps the family contract.

Mini-World poses thousands of tasks from these modules, so a family that fails here would poison
every task built from it: a non-deterministic reference makes correct candidates look wrong, and a
transform that leans on module names cannot be handed to a model as self-contained source.
"""
from __future__ import annotations

import ast
import inspect
import random
import sys
import textwrap
from collections.abc import Iterator
from types import ModuleType

import pytest

import pipelines
from pipelines import KINDS, family_names, load

SEEDS = (0, 1)
BUG_CLASSES = (
    "join_key", "join_type", "join_condition_missing", "filter_boundary", "null_compare",
    "null_fill_missing", "agg_function", "groupby_key_missing", "window_spec", "dedup_missing",
    "unknown_column", "cast_type", "union_by_position", "lag_lead",
)
# The output columns each spec promises, in order: transform must return exactly these.
EXPECTED_COLUMNS = {
    "account_running_balance": ["txn_id", "account_id", "txn_ts", "signed_amount", "balance"],
    "basket_category_sales": ["category", "units", "baskets", "revenue"],
    "customer_region_revenue": [
        "region", "customer_id", "order_count", "total_amount", "avg_amount", "max_amount",
    ],
    "daily_active_users": ["event_date", "platform", "active_users", "events"],
    "employee_department_payroll": [
        "dept_name", "location_id", "headcount", "total_salary", "max_salary",
    ],
    "lapsed_customers": ["customer_id", "name", "signup_date"],
    "latest_customer_address": ["customer_id", "address", "city", "updated_at"],
    "orders_enrichment": [
        "order_id", "customer_id", "order_date", "amount", "country", "segment",
    ],
    "price_history_validity": [
        "sku", "effective_date", "valid_to", "price", "price_delta", "is_current",
    ],
    "product_catalog_cleanup": ["sku", "name", "brand", "price", "updated_on"],
    "shipment_fill_rate": [
        "order_id", "line_no", "sku", "qty_ordered", "qty_shipped", "status",
    ],
    "store_channel_monthly_pivot": ["store_id", "month", "online", "phone", "store"],
    "unified_events": ["event_id", "source", "user_id", "event_type", "device", "event_ts"],
    "user_sessions": ["click_id", "user_id", "event_ts", "page", "gap_minutes", "session_number"],
}
FAMILIES = family_names()


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    """One classic local session for the whole module: starting Spark costs ~10 s."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("test_pipelines")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()


# ---------------------------------------------------------------------------------------------
# static helpers


def _transform_tree(module: ModuleType) -> ast.FunctionDef:
    """The parsed source of transform alone, exactly the text a candidate model receives."""
    source = textwrap.dedent(inspect.getsource(module.transform))
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


def _ddl_columns(ddl: str) -> list[tuple[str, str]]:
    """(name, type) pairs of a flat DDL schema string (no nested commas in our inputs)."""
    pairs = []
    for field in ddl.split(","):
        name, _, dtype = field.strip().partition(" ")
        pairs.append((name, dtype.strip().upper()))
    return pairs


def _call_name(node: ast.Call) -> str:
    """Method or function name of a call: `F.sum(...)` -> 'sum', `df.join(...)` -> 'join'."""
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def bug_sites(module: ModuleType) -> set[str]:
    """Bug classes with a natural injection site in a family's transform (see the issue list)."""
    fn = _transform_tree(module)
    calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call)]
    names = {_call_name(c) for c in calls}
    sites: set[str] = set()
    joins = [c for c in calls if _call_name(c) == "join"]
    schemas = [_ddl_columns(ddl) for ddl in module.INPUTS.values()]
    shared = [set(a) & set(b) for i, a in enumerate(schemas) for b in schemas[i + 1:]]
    if joins and any(len(common) >= 2 for common in shared):
        sites.add("join_key")
    if any(kw.arg == "how" for c in joins for kw in c.keywords):
        sites.add("join_type")
    for call in joins:
        on = [kw.value for kw in call.keywords if kw.arg == "on"] + call.args[1:2]
        for value in on:
            if isinstance(value, ast.List) and len(value.elts) >= 2:
                sites.add("join_condition_missing")
            if isinstance(value, ast.BinOp) and isinstance(value.op, ast.BitAnd):
                sites.add("join_condition_missing")
    ordering = (ast.Gt, ast.GtE, ast.Lt, ast.LtE)
    if any(isinstance(n, ast.Compare) and isinstance(n.ops[0], ordering) for n in ast.walk(fn)):
        sites.add("filter_boundary")
    if names & {"isNull", "isNotNull"}:
        sites.add("null_compare")
    if names & {"coalesce", "fillna"} or any(
        _call_name(c) == "fill" and isinstance(c.func, ast.Attribute)
        and isinstance(c.func.value, ast.Attribute) and c.func.value.attr == "na"
        for c in calls
    ):
        sites.add("null_fill_missing")
    aggregates = {"sum", "avg", "mean", "max", "min", "count", "countDistinct"}
    for call in calls:
        if _call_name(call) == "agg" and any(
            isinstance(n, ast.Call) and _call_name(n) in aggregates
            for arg in call.args for n in ast.walk(arg)
        ):
            sites.add("agg_function")
        if _call_name(call) == "groupBy" and len(call.args) >= 2:
            sites.add("groupby_key_missing")
    if "partitionBy" in names and "over" in names:
        sites.add("window_spec")
    if names & {"dropDuplicates", "distinct", "row_number"}:
        sites.add("dedup_missing")
    if any(isinstance(n, ast.Constant) and isinstance(n.value, str) for n in ast.walk(fn)):
        sites.add("unknown_column")
    if "cast" in names:
        sites.add("cast_type")
    if "unionByName" in names and any(
        [c for c, _ in a] != [c for c, _ in b] and sorted(a) == sorted(b)
        for i, a in enumerate(schemas) for b in schemas[i + 1:]
    ):
        sites.add("union_by_position")
    if names & {"lag", "lead"}:
        sites.add("lag_lead")
    return sites


# ---------------------------------------------------------------------------------------------
# contract and static checks


def test_catalog_has_the_expected_families() -> None:
    assert len(FAMILIES) >= 12
    assert set(FAMILIES) == set(EXPECTED_COLUMNS), "declare a new family's output columns here"


@pytest.mark.parametrize("name", FAMILIES)
def test_module_contract(name: str) -> None:
    module = load(name)
    assert module.FAMILY == name
    assert isinstance(module.SPEC, str) and len(module.SPEC.split()) >= 30
    params = list(inspect.signature(module.transform).parameters)
    assert list(module.INPUTS) == params, "INPUTS must follow transform's parameter order"
    assert isinstance(module.ORDERED, bool)
    assert set(module.KEYS) <= set(EXPECTED_COLUMNS[name])
    for column in EXPECTED_COLUMNS[name]:
        assert column in module.SPEC, f"spec never names output column {column!r}"


@pytest.mark.parametrize("name", FAMILIES)
def test_transform_is_self_contained(name: str) -> None:
    """transform may read only F, T, Window, its parameters and its own locals."""
    fn = _transform_tree(load(name))
    allowed = {"F", "T", "Window"} | {a.arg for a in fn.args.args}
    allowed |= {
        n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    body = ast.Module(body=fn.body, type_ignores=[])
    used = {n.id for n in ast.walk(body) if isinstance(n, ast.Name)}
    assert used <= allowed, f"transform uses outside names: {sorted(used - allowed)}"
    banned = {"rdd", "sparkContext", "sql", "udf", "pandas_udf", "read", "write", "toPandas"}
    attrs = {n.attr for n in ast.walk(body) if isinstance(n, ast.Attribute)}
    assert not attrs & banned, f"transform uses {sorted(attrs & banned)}"
    assert not any(isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Lambda))
                   for n in ast.walk(body)), "no imports, helper functions or lambdas in transform"
    params = {a.arg for a in fn.args.args}
    columns = {c for ddl in load(name).INPUTS.values() for c, _ in _ddl_columns(ddl)}
    attribute_columns = [
        n.attr for n in ast.walk(body)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
        and n.value.id in params and n.attr in columns
    ]
    assert not attribute_columns, f"write columns as strings, not df.{attribute_columns[0]}"


@pytest.mark.parametrize("name", FAMILIES)
def test_module_imports_only_pyspark_and_stdlib(name: str) -> None:
    tree = ast.parse(inspect.getsource(load(name)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            roots = [(node.module or "").split(".")[0]]
        else:
            continue
        for root in roots:
            assert root == "pyspark" or root in sys.stdlib_module_names, f"imports {root}"


@pytest.mark.parametrize("name", FAMILIES)
def test_family_offers_enough_bug_sites(name: str) -> None:
    assert len(bug_sites(load(name))) >= 3


def test_every_bug_class_is_offered_by_two_families() -> None:
    offered = {cls: [n for n in FAMILIES if cls in bug_sites(load(n))] for cls in BUG_CLASSES}
    thin = {cls: fams for cls, fams in offered.items() if len(fams) < 2}
    assert not thin, f"bug classes with fewer than two families: {thin}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", FAMILIES)
def test_generate_is_seeded_and_small(name: str, kind: str) -> None:
    module = load(name)
    first = {seed: module.generate(random.Random(seed), kind) for seed in SEEDS}
    again = {seed: module.generate(random.Random(seed), kind) for seed in SEEDS}
    assert first == again, "generate must depend only on the given rng"
    assert first[SEEDS[0]] != first[SEEDS[1]], "different seeds should give different data"
    for data in first.values():
        assert list(data) == list(module.INPUTS)
        for arg, rows in data.items():
            assert len(rows) <= 120, f"{arg}: {len(rows)} rows is too many for a task"
            width = len(_ddl_columns(module.INPUTS[arg]))
            assert all(isinstance(r, tuple) and len(r) == width for r in rows)
        if kind != "edge":
            assert all(5 <= len(rows) for rows in data.values())


# ---------------------------------------------------------------------------------------------
# running on Spark


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", FAMILIES)
def test_transform_runs_and_is_deterministic(spark, name: str, kind: str, seed: int) -> None:
    from pyspark.sql import DataFrame

    module = load(name)
    data = module.generate(random.Random(seed), kind)

    def run() -> tuple[DataFrame, list]:
        frames = [spark.createDataFrame(data[a], schema=ddl) for a, ddl in module.INPUTS.items()]
        out = module.transform(*frames)
        return out, out.collect()

    out, rows = run()
    _, rows_again = run()
    assert isinstance(out, DataFrame)
    assert out.columns == EXPECTED_COLUMNS[name]
    if module.ORDERED:
        assert rows == rows_again
    else:
        assert sorted(map(repr, rows)) == sorted(map(repr, rows_again))
    if module.KEYS:
        keys = [tuple(r[k] for k in module.KEYS) for r in rows]
        assert len(keys) == len(set(keys)), f"KEYS {module.KEYS} do not identify output rows"
    if kind == "typical":
        assert rows, "typical data should give a non-empty result"


def test_package_docstring_names_the_contract() -> None:
    for attribute in ("FAMILY", "SPEC", "INPUTS", "KEYS", "ORDERED", "generate", "transform"):
        assert attribute in (pipelines.__doc__ or "")
