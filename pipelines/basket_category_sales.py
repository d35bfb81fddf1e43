"""Units and revenue per category from basket arrays: explode, a two-key join, aggregates."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

FAMILY = "basket_category_sales"
SPEC = """\
Report units and revenue per product category from shopping baskets. Every element of a basket's
skus array is one unit (a sku listed twice is two units); null or empty arrays and null elements
contribute nothing. Prices are per market: a unit is priced by the `prices` row with the same sku
AND the same market as its basket ((sku, market) is unique in prices); units without such a row
are left out. A null category is reported as 'uncategorized'. Return one row per category with
columns category, units (number of units, BIGINT), baskets (number of distinct basket_id with at
least one priced unit in the category, BIGINT), revenue (sum of unit_price over the units, rounded
to 2 decimals), in that order, sorted by revenue descending, then category ascending."""
INPUTS = {
    "baskets": "basket_id INT, customer_id INT, market STRING, created_at TIMESTAMP, "
    "skus ARRAY<STRING>",
    "prices": "sku STRING, market STRING, category STRING, unit_price DOUBLE",
}
KEYS = ["category"]
ORDERED = True

_SKUS = ["SKU-1", "SKU-2", "SKU-3", "SKU-4", "SKU-5", "SKU-6"]
_CATEGORIES = ["Café & Tee", "Snacks", "Haushalt", None, "Snacks", "Café & Tee"]
_MARKETS = ["DE", "FR", "BR"]


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Repeated and unknown skus, null elements and arrays, prices missing in some markets."""
    category = dict(zip(_SKUS, rng.sample(_CATEGORIES, len(_CATEGORIES))))
    prices = [
        (sku, market, category[sku], rng.choice([round(rng.uniform(0.5, 60), 2), 1.0, 2.5]))
        for sku in _SKUS
        for market in _MARKETS
        if rng.random() < 0.75
    ]
    n = {"typical": 30, "edge": 5, "adversarial": 40}[kind]
    pool = [*_SKUS, "SKU-404"] if kind == "typical" else [*_SKUS, "SKU-404", None, "sku-1"]
    baskets = []
    for bid in range(1, n + 1):
        if kind == "adversarial" and rng.random() < 0.5:
            skus = ["SKU-1"] * rng.randint(3, 8)  # a bestseller bought in bulk
        else:
            skus = [rng.choice(pool) for _ in range(rng.randint(0, 5))]
        if kind != "typical" and rng.random() < 0.15:
            skus = None
        created = dt.datetime(2024, 5, 1) + dt.timedelta(minutes=rng.randrange(0, 5000))
        baskets.append((bid, rng.randint(1, 10), rng.choice(_MARKETS), created, skus))
    if kind == "edge":
        baskets += [(n + 1, 1, "DE", dt.datetime(2024, 5, 1), []), (n + 2, 2, "FR", None, [None])]
    return {"baskets": baskets, "prices": prices}


def transform(baskets: DataFrame, prices: DataFrame) -> DataFrame:
    units = baskets.select("basket_id", "market", F.explode("skus").alias("sku"))
    priced = units.join(prices, on=["sku", "market"], how="inner").withColumn(
        "category", F.coalesce(F.col("category"), F.lit("uncategorized"))
    )
    per_category = priced.groupBy("category").agg(
        F.count("sku").alias("units"),
        F.countDistinct("basket_id").alias("baskets"),
        F.round(F.sum("unit_price"), 2).alias("revenue"),
    )
    return per_category.orderBy(F.col("revenue").desc(), F.col("category").asc())
