"""Bug injector: each class on a small hand-written transform, then every pipeline family."""
from __future__ import annotations

import ast
import inspect

import pytest

import pipelines
from miniworld.suites import bugs

ORDERS = "order_id INT, customer_id INT, store_id INT, amount DOUBLE, order_date DATE"
CUSTOMERS = "customer_id INT, store_id INT, country STRING"
INPUTS = {"orders": ORDERS, "customers": CUSTOMERS}
EVENTS = {"events": "user_id INT, ts TIMESTAMP, amount DOUBLE, kind STRING"}

JOIN_ON = '''
def transform(orders, customers):
    joined = orders.join(customers, on="customer_id", how="left")
    return joined.select("order_id", "customer_id", "country")
'''
JOIN_CONDITION = '''
def transform(orders, customers):
    return orders.join(
        customers,
        (orders["customer_id"] == customers["customer_id"]) & (orders["store_id"] == customers["store_id"]),
        "inner",
    )
'''
JOIN_ALIASES = '''
def transform(orders, customers):
    o = orders.alias("o")
    c = customers.alias("c")
    return o.join(c, F.col("o.customer_id") == F.col("c.customer_id"), "left_anti")
'''
JOIN_LIST = '''
def transform(orders, customers):
    return orders.join(customers, ["customer_id", "store_id"])
'''
FILTERS = '''
def transform(orders):
    big = orders.withColumn("big", F.col("amount") > 100)
    return big.filter((F.col("amount") >= 10) & (F.col("amount") < 100)).where("store_id <= 5 AND store_id <> 3")
'''
NULLS = '''
def transform(orders):
    return orders.filter(F.col("customer_id").isNull() | F.isnotnull("store_id")).where("order_date IS NOT NULL")
'''
FILLS = '''
def transform(orders):
    return orders.select(F.coalesce(F.col("amount"), F.lit(0.0)).alias("amount")).fillna(0).na.fill(1).filter(F.col("amount") > 0)
'''
AGGREGATES = '''
def transform(orders):
    return orders.groupBy("customer_id", "store_id").agg(
        F.sum("amount").alias("total"), F.count("*").alias("n"), F.countDistinct("order_id").alias("orders")
    ).filter(F.max("total") > 0)
'''
WINDOWS = '''
def transform(events):
    w = Window.partitionBy("user_id").orderBy(F.col("ts").desc()).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return events.withColumn("prev", F.lag("ts").over(w)).withColumn("total", F.sum("amount").over(w))
'''
DEDUP = '''
def transform(orders):
    w = Window.partitionBy("customer_id").orderBy(F.col("order_date").desc())
    latest = orders.withColumn("rn", F.row_number().over(w)).filter(F.col("rn") == 1).drop("rn")
    return latest.filter(F.col("amount") > 0).dropDuplicates(["order_id"]).select("order_id", "customer_id")
'''
COLUMNS = '''
def transform(orders):
    return orders.withColumn("total", F.col("amount") * 2).select("customer_id", "total")
'''
CASTS = '''
def transform(orders):
    return orders.select(F.col("amount").cast("double"), F.col("order_date").cast(T.TimestampType()), F.lit("1").cast("int"))
'''
UNIONS = '''
def transform(orders, customers):
    return orders.unionByName(customers, allowMissingColumns=True).distinct()
'''
SORTS = '''
def transform(orders):
    ranked = orders.orderBy(F.col("amount").desc(), "customer_id")
    return ranked.sort("order_id", ascending=False)
'''
MISC = '''
def transform(customers):
    return customers.select(F.round(F.col("store_id") / 3, 2).alias("ratio"), F.lower(F.trim(F.col("country"))).alias("country"))
'''
IDENTITY = '''
def transform(orders):
    return orders
'''

# (class, source, inputs, seed, expected mutant)
CASES = [
    ("join_key", JOIN_ON, INPUTS, 0,
     "def transform(orders, customers):\n"
     "    joined = orders.join(customers, on='store_id', how='left')\n"
     "    return joined.select('order_id', 'customer_id', 'country')"),
    ("join_key", JOIN_CONDITION, INPUTS, 0,
     "def transform(orders, customers):\n"
     "    return orders.join(customers, (orders['order_id'] == customers['customer_id']) "
     "& (orders['store_id'] == customers['store_id']), 'inner')"),
    ("join_key", JOIN_CONDITION, INPUTS, 1,
     "def transform(orders, customers):\n"
     "    return orders.join(customers, (orders['customer_id'] == customers['store_id']) "
     "& (orders['store_id'] == customers['store_id']), 'inner')"),
    ("join_key", JOIN_ALIASES, INPUTS, 0,
     "def transform(orders, customers):\n"
     "    o = orders.alias('o')\n"
     "    c = customers.alias('c')\n"
     "    return o.join(c, F.col('o.order_id') == F.col('c.customer_id'), 'left_anti')"),
    ("join_type", JOIN_ON, INPUTS, 0,
     "def transform(orders, customers):\n"
     "    joined = orders.join(customers, on='customer_id', how='inner')\n"
     "    return joined.select('order_id', 'customer_id', 'country')"),
    ("join_type", JOIN_CONDITION, INPUTS, 0,
     "def transform(orders, customers):\n"
     "    return orders.join(customers, (orders['customer_id'] == customers['customer_id']) "
     "& (orders['store_id'] == customers['store_id']), 'left')"),
    ("join_type", JOIN_ALIASES, INPUTS, 0,
     "def transform(orders, customers):\n"
     "    o = orders.alias('o')\n"
     "    c = customers.alias('c')\n"
     "    return o.join(c, F.col('o.customer_id') == F.col('c.customer_id'), 'left_semi')"),
    ("join_type", JOIN_LIST, INPUTS, 0,
     "def transform(orders, customers):\n"
     "    return orders.join(customers, ['customer_id', 'store_id'], how='left')"),
    ("join_condition_missing", JOIN_LIST, INPUTS, 0,
     "def transform(orders, customers):\n"
     "    return orders.join(customers, ['store_id'])"),
    ("join_condition_missing", JOIN_LIST, INPUTS, 1,
     "def transform(orders, customers):\n"
     "    return orders.join(customers, ['customer_id'])"),
    ("join_condition_missing", JOIN_CONDITION, INPUTS, 1,
     "def transform(orders, customers):\n"
     "    return orders.join(customers, orders['customer_id'] == customers['customer_id'], 'inner')"),
    ("filter_boundary", FILTERS, INPUTS, 0,
     "def transform(orders):\n"
     "    big = orders.withColumn('big', F.col('amount') > 100)\n"
     "    return big.filter((F.col('amount') > 10) & (F.col('amount') < 100))"
     ".where('store_id <= 5 AND store_id <> 3')"),
    ("filter_boundary", FILTERS, INPUTS, 1,
     "def transform(orders):\n"
     "    big = orders.withColumn('big', F.col('amount') > 100)\n"
     "    return big.filter((F.col('amount') >= 10) & (F.col('amount') <= 100))"
     ".where('store_id <= 5 AND store_id <> 3')"),
    ("filter_boundary", FILTERS, INPUTS, 2,
     "def transform(orders):\n"
     "    big = orders.withColumn('big', F.col('amount') > 100)\n"
     "    return big.filter((F.col('amount') >= 10) & (F.col('amount') < 100))"
     ".where('store_id < 5 AND store_id <> 3')"),
    ("null_compare", NULLS, INPUTS, 0,
     "def transform(orders):\n"
     "    return orders.filter((F.col('customer_id') == None) | F.isnotnull('store_id'))"
     ".where('order_date IS NOT NULL')"),
    ("null_compare", NULLS, INPUTS, 1,
     "def transform(orders):\n"
     "    return orders.filter(F.col('customer_id').isNull() | (F.col('store_id') != None))"
     ".where('order_date IS NOT NULL')"),
    ("null_compare", NULLS, INPUTS, 2,
     "def transform(orders):\n"
     "    return orders.filter(F.col('customer_id').isNull() | F.isnotnull('store_id'))"
     ".where('order_date != NULL')"),
    ("null_fill_missing", FILLS, INPUTS, 0,
     "def transform(orders):\n"
     "    return orders.select(F.coalesce(F.col('amount'), F.lit(0.0)).alias('amount'))"
     ".fillna(0).filter(F.col('amount') > 0)"),
    ("null_fill_missing", FILLS, INPUTS, 1,
     "def transform(orders):\n"
     "    return orders.select(F.coalesce(F.col('amount'), F.lit(0.0)).alias('amount'))"
     ".na.fill(1).filter(F.col('amount') > 0)"),
    ("null_fill_missing", FILLS, INPUTS, 2,
     "def transform(orders):\n"
     "    return orders.select(F.col('amount').alias('amount'))"
     ".fillna(0).na.fill(1).filter(F.col('amount') > 0)"),
    ("agg_function", AGGREGATES, INPUTS, 0,
     "def transform(orders):\n"
     "    return orders.groupBy('customer_id', 'store_id').agg(F.avg('amount').alias('total'), "
     "F.count('*').alias('n'), F.countDistinct('order_id').alias('orders')).filter(F.max('total') > 0)"),
    ("agg_function", AGGREGATES, INPUTS, 1,
     "def transform(orders):\n"
     "    return orders.groupBy('customer_id', 'store_id').agg(F.sum('amount').alias('total'), "
     "F.count('*').alias('n'), F.count('order_id').alias('orders')).filter(F.max('total') > 0)"),
    ("groupby_key_missing", AGGREGATES, INPUTS, 0,
     "def transform(orders):\n"
     "    return orders.groupBy('store_id').agg(F.sum('amount').alias('total'), "
     "F.count('*').alias('n'), F.countDistinct('order_id').alias('orders')).filter(F.max('total') > 0)"),
    ("groupby_key_missing", AGGREGATES, INPUTS, 1,
     "def transform(orders):\n"
     "    return orders.groupBy('customer_id').agg(F.sum('amount').alias('total'), "
     "F.count('*').alias('n'), F.countDistinct('order_id').alias('orders')).filter(F.max('total') > 0)"),
    ("window_spec", WINDOWS, EVENTS, 0,
     "def transform(events):\n"
     "    w = Window.partitionBy('user_id').orderBy(F.col('ts').desc())\n"
     "    return events.withColumn('prev', F.lag('ts').over(w)).withColumn('total', F.sum('amount').over(w))"),
    ("window_spec", WINDOWS, EVENTS, 1,
     "def transform(events):\n"
     "    w = Window.partitionBy('user_id').orderBy(F.col('ts'))"
     ".rowsBetween(Window.unboundedPreceding, Window.currentRow)\n"
     "    return events.withColumn('prev', F.lag('ts').over(w)).withColumn('total', F.sum('amount').over(w))"),
    ("window_spec", WINDOWS, EVENTS, 2,
     "def transform(events):\n"
     "    w = Window.orderBy(F.col('ts').desc()).rowsBetween(Window.unboundedPreceding, Window.currentRow)\n"
     "    return events.withColumn('prev', F.lag('ts').over(w)).withColumn('total', F.sum('amount').over(w))"),
    ("lag_lead", WINDOWS, EVENTS, 0,
     "def transform(events):\n"
     "    w = Window.partitionBy('user_id').orderBy(F.col('ts').desc())"
     ".rowsBetween(Window.unboundedPreceding, Window.currentRow)\n"
     "    return events.withColumn('prev', F.lead('ts').over(w)).withColumn('total', F.sum('amount').over(w))"),
    ("dedup_missing", DEDUP, INPUTS, 0,
     "def transform(orders):\n"
     "    w = Window.partitionBy('customer_id').orderBy(F.col('order_date').desc())\n"
     "    latest = orders.withColumn('rn', F.row_number().over(w)).drop('rn')\n"
     "    return latest.filter(F.col('amount') > 0).dropDuplicates(['order_id']).select('order_id', 'customer_id')"),
    ("dedup_missing", DEDUP, INPUTS, 1,
     "def transform(orders):\n"
     "    w = Window.partitionBy('customer_id').orderBy(F.col('order_date').desc())\n"
     "    latest = orders.withColumn('rn', F.row_number().over(w)).filter(F.col('rn') == 1).drop('rn')\n"
     "    return latest.filter(F.col('amount') > 0).select('order_id', 'customer_id')"),
    ("dedup_missing", UNIONS, INPUTS, 0,
     "def transform(orders, customers):\n"
     "    return orders.unionByName(customers, allowMissingColumns=True)"),
    ("filter_missing", DEDUP, INPUTS, 0,
     "def transform(orders):\n"
     "    w = Window.partitionBy('customer_id').orderBy(F.col('order_date').desc())\n"
     "    latest = orders.withColumn('rn', F.row_number().over(w)).filter(F.col('rn') == 1).drop('rn')\n"
     "    return latest.dropDuplicates(['order_id']).select('order_id', 'customer_id')"),
    ("unknown_column", COLUMNS, INPUTS, 0,
     "def transform(orders):\n"
     "    return orders.withColumn('total', F.col('amt') * 2).select('customer_id', 'total')"),
    ("unknown_column", COLUMNS, INPUTS, 1,
     "def transform(orders):\n"
     "    return orders.withColumn('total', F.col('amount') * 2).select('customerId', 'total')"),
    ("unknown_column", COLUMNS, INPUTS, 2,
     "def transform(orders):\n"
     "    return orders.withColumn('total', F.col('amount') * 2).select('customer_id', 'tot')"),
    ("unknown_column", COLUMNS, INPUTS, 4,
     "def transform(orders):\n"
     "    return orders.withColumn('total', F.col('amount') * 2).select('cust_id', 'total')"),
    ("cast_type", CASTS, INPUTS, 0,
     "def transform(orders):\n"
     "    return orders.select(F.col('amount').cast('int'), F.col('order_date').cast(T.TimestampType()), "
     "F.lit('1').cast('int'))"),
    ("cast_type", CASTS, INPUTS, 1,
     "def transform(orders):\n"
     "    return orders.select(F.col('amount').cast('double'), F.col('order_date').cast(T.DateType()), "
     "F.lit('1').cast('int'))"),
    ("union_by_position", UNIONS, INPUTS, 0,
     "def transform(orders, customers):\n"
     "    return orders.union(customers).distinct()"),
    ("order_direction", SORTS, INPUTS, 0,
     "def transform(orders):\n"
     "    ranked = orders.orderBy(F.col('amount'), 'customer_id')\n"
     "    return ranked.sort('order_id', ascending=False)"),
    ("order_direction", SORTS, INPUTS, 1,
     "def transform(orders):\n"
     "    ranked = orders.orderBy(F.col('amount').desc(), F.col('customer_id').desc())\n"
     "    return ranked.sort('order_id', ascending=False)"),
    ("order_direction", SORTS, INPUTS, 2,
     "def transform(orders):\n"
     "    ranked = orders.orderBy(F.col('amount').desc(), 'customer_id')\n"
     "    return ranked.sort('order_id', ascending=True)"),
    ("round_missing", MISC, INPUTS, 0,
     "def transform(customers):\n"
     "    return customers.select((F.col('store_id') / 3).alias('ratio'), "
     "F.lower(F.trim(F.col('country'))).alias('country'))"),
    ("string_normalize_missing", MISC, INPUTS, 0,
     "def transform(customers):\n"
     "    return customers.select(F.round(F.col('store_id') / 3, 2).alias('ratio'), "
     "F.trim(F.col('country')).alias('country'))"),
    ("string_normalize_missing", MISC, INPUTS, 1,
     "def transform(customers):\n"
     "    return customers.select(F.round(F.col('store_id') / 3, 2).alias('ratio'), "
     "F.lower(F.col('country')).alias('country'))"),
]

REQUIRED = [
    "join_key", "join_type", "join_condition_missing", "filter_boundary", "null_compare",
    "null_fill_missing", "agg_function", "groupby_key_missing", "window_spec", "dedup_missing",
    "unknown_column", "cast_type", "union_by_position", "lag_lead",
]
SOURCES = [JOIN_ON, JOIN_CONDITION, JOIN_ALIASES, JOIN_LIST, FILTERS, NULLS, FILLS, AGGREGATES,
           WINDOWS, DEDUP, COLUMNS, CASTS, UNIONS, SORTS, MISC]


def _inputs_for(source: str) -> dict[str, str]:
    return EVENTS if "events" in source else INPUTS


@pytest.mark.parametrize(("bug_class", "source", "inputs", "seed", "expected"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_exact_mutant(bug_class, source, inputs, seed, expected):
    assert bugs.inject(source, bug_class, seed, inputs) == expected


def test_catalogue_holds_the_required_classes_in_order():
    assert list(bugs.BUG_CLASSES)[: len(REQUIRED)] == REQUIRED
    for bug_id, bug_class in bugs.BUG_CLASSES.items():
        assert bug_class.id == bug_id
        assert bug_class.description and "\n" not in bug_class.description


def test_unknown_class_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="no_such_bug"):
        bugs.inject(JOIN_ON, "no_such_bug", 0, INPUTS)
    with pytest.raises(ValueError, match="no_such_bug"):
        bugs.sites(JOIN_ON, "no_such_bug", INPUTS)


@pytest.mark.parametrize("bug_class", list(bugs.BUG_CLASSES))
def test_not_applicable_gives_none(bug_class):
    assert bugs.sites(IDENTITY, bug_class, INPUTS) == 0
    assert bugs.inject(IDENTITY, bug_class, 3, INPUTS) is None


def test_not_applicable_where_the_shape_is_missing():
    # No other INT column is on both sides of a two-key join: no key to swap.
    assert bugs.sites(JOIN_LIST, "join_key", INPUTS) == 0
    # A single join key cannot be partly forgotten; a single groupBy key cannot be dropped.
    assert bugs.inject(JOIN_ON, "join_condition_missing", 0, INPUTS) is None
    assert bugs.sites(COLUMNS, "groupby_key_missing", INPUTS) == 0
    # Compares outside filter/where/when are not boundaries; row counts have no distinct form.
    assert bugs.sites("def t(orders):\n    return orders.select(F.col('amount') > 1)",
                      "filter_boundary", INPUTS) == 0
    assert bugs.sites("def t(orders):\n    return orders.agg(F.count('*'))", "agg_function", INPUTS) == 0
    # A literal's cast is value-preserving once Spark widens it back.
    assert bugs.sites("def t(orders):\n    return orders.filter(F.col('order_date') >= "
                      "F.lit('2024-01-01').cast('date'))", "cast_type", INPUTS) == 0


def test_site_counts():
    assert bugs.sites(FILTERS, "filter_boundary", INPUTS) == 3
    assert bugs.sites(JOIN_CONDITION, "join_key", INPUTS) == 6  # 2 + 1 + 2 + 1 same-type columns
    assert bugs.sites(JOIN_CONDITION, "join_condition_missing", INPUTS) == 2
    assert bugs.sites(WINDOWS, "window_spec", EVENTS) == 3
    assert bugs.sites(COLUMNS, "unknown_column", INPUTS) == 9  # 3 columns x 3 spellings


def test_seed_wraps_modulo_the_number_of_mutations():
    n = bugs.sites(FILTERS, "filter_boundary", INPUTS)
    for seed in range(n):
        assert bugs.inject(FILTERS, "filter_boundary", seed + n, INPUTS) == \
            bugs.inject(FILTERS, "filter_boundary", seed, INPUTS)
    assert bugs.inject(FILTERS, "filter_boundary", -1, INPUTS) == \
        bugs.inject(FILTERS, "filter_boundary", n - 1, INPUTS)


def test_deterministic_across_calls_and_caches():
    first = [bugs.inject(s, c, seed, _inputs_for(s)) for s in SOURCES for c in bugs.BUG_CLASSES
             for seed in range(3)]
    bugs._mutants.cache_clear()
    second = [bugs.inject(s, c, seed, _inputs_for(s)) for s in SOURCES for c in bugs.BUG_CLASSES
              for seed in range(3)]
    assert first == second


def test_different_seeds_hit_different_sites_first():
    # Sites come before variants: the first len(sites) seeds each change a different place.
    mutants = [bugs.inject(COLUMNS, "unknown_column", seed, INPUTS) for seed in range(3)]
    changed = [{tok for tok in ("amount", "customer_id", "'total')") if tok not in m} for m in mutants]
    assert changed == [{"amount"}, {"customer_id"}, {"'total')"}]
    assert len({bugs.inject(FILTERS, "filter_boundary", s, INPUTS) for s in range(3)}) == 3


@pytest.mark.parametrize("source", SOURCES)
def test_every_mutant_parses_and_differs_from_the_reference(source):
    inputs = _inputs_for(source)
    reference = bugs.normalize(source)
    for bug_class in bugs.BUG_CLASSES:
        n = bugs.sites(source, bug_class, inputs)
        mutants = [bugs.inject(source, bug_class, seed, inputs) for seed in range(n)]
        assert len(set(mutants)) == n  # distinct
        for mutant in mutants:
            ast.parse(mutant)
            assert mutant != reference


def test_normalize_dedents_and_round_trips():
    indented = "    def f(df):\n        return df.filter(F.col('a')>1)\n"
    assert bugs.normalize(indented) == "def f(df):\n    return df.filter(F.col('a') > 1)"
    assert bugs.normalize(bugs.normalize(indented)) == bugs.normalize(indented)


def test_chain_is_kept_when_a_call_is_removed():
    source = "def t(a):\n    return a.filter(F.col('x') > 1).dropDuplicates(['k']).select('k', 'x')"
    inputs = {"a": "k INT, x INT"}
    assert bugs.inject(source, "dedup_missing", 0, inputs) == \
        "def t(a):\n    return a.filter(F.col('x') > 1).select('k', 'x')"
    assert bugs.inject(source, "filter_missing", 0, inputs) == \
        "def t(a):\n    return a.dropDuplicates(['k']).select('k', 'x')"


def test_hallucinated_columns_exist_nowhere():
    inputs = {"orders": ORDERS + ", cust_id INT"}
    mutants = {bugs.inject(COLUMNS, "unknown_column", s, inputs) for s in range(20)}
    assert not any("'cust_id'" in m for m in mutants)
    assert any("'customerId'" in m for m in mutants)
    # 'total' is created by the function itself, so no mutant may rename to another alias.
    assert bugs.hallucinated_names("customer_id")[:3] == ["customerId", "cust_id", "customer_key"]
    assert bugs.hallucinated_names("orderId")[:2] == ["order_id", "OrderId"]


def test_join_key_swap_keeps_type_and_both_sides():
    inputs = {"orders": "customer_id INT, store_id STRING, region_id INT",
              "customers": "customer_id INT, store_id STRING, region_id INT, tier_id INT"}
    assert [bugs.inject(JOIN_ON, "join_key", s, inputs).split("on=")[1][:11]
            for s in range(bugs.sites(JOIN_ON, "join_key", inputs))] == ["'region_id'"]


def test_parse_ddl_handles_nested_types():
    ddl = "id INT, tags ARRAY<STRING>, attrs STRUCT<a: INT, b: MAP<STRING, BIGINT>>, " \
          "price DECIMAL(10, 2), n LONG, `odd name` STRING NOT NULL"
    assert bugs.parse_ddl(ddl) == {
        "id": "int", "tags": "array<string>", "attrs": "struct<a:int,b:map<string,bigint>>",
        "price": "decimal(10,2)", "n": "bigint", "odd name": "string",
    }


def _families():
    for name in pipelines.family_names():
        module = pipelines.load(name)
        yield name, inspect.getsource(module.transform), module.INPUTS


def test_every_family_has_three_classes_and_parsing_mutants():
    families = list(_families())
    assert families, "no pipeline families found"
    for name, source, inputs in families:
        reference = bugs.normalize(source)
        applicable = [c for c in bugs.BUG_CLASSES if bugs.sites(source, c, inputs) > 0]
        assert len(applicable) >= 3, f"{name}: only {applicable}"
        for bug_class in applicable:
            for seed in range(bugs.sites(source, bug_class, inputs)):
                mutant = bugs.inject(source, bug_class, seed, inputs)
                assert mutant != reference, (name, bug_class, seed)
                tree = ast.parse(mutant)
                assert isinstance(tree.body[0], ast.FunctionDef), (name, bug_class, seed)
                assert tree.body[0].name == "transform"
