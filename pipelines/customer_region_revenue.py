"""Revenue per region and customer: a filtered two-key groupBy with several aggregates."""
from __future__ import annotations

import random

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

FAMILY = "customer_region_revenue"
SPEC = """\
Summarise qualifying orders per region and customer. An order qualifies when its status is
exactly 'completed' (case-sensitive), its customer_id is not null and its amount is at least 10.00
(an amount of exactly 10.00 qualifies; a null amount does not). A null region is reported as
'UNKNOWN' and grouped together with rows whose region already is 'UNKNOWN'. Return one row per
(region, customer_id) with columns region, customer_id, order_count (number of qualifying orders,
BIGINT), total_amount (sum of amount rounded to 2 decimals), avg_amount (mean amount rounded to 2
decimals), max_amount (largest amount), in that order. Row order does not matter."""
INPUTS = {"orders": "order_id INT, customer_id INT, region STRING, status STRING, amount DOUBLE"}
KEYS = ["region", "customer_id"]
ORDERED = False


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Amounts on the 10.00 threshold, near-miss statuses, null keys and one whale customer."""
    n = {"typical": 60, "edge": 6, "adversarial": 90}[kind]
    regions = ["EMEA", "APAC", "AMER", "Région Sud", None]
    statuses = ["completed", "completed", "completed", "cancelled", "pending", "Completed"]
    rows = []
    for oid in range(1, n + 1):
        if kind == "adversarial":
            cid = rng.choice([7, 7, 7, 7, 7, 3, None])  # skewed toward customer 7
            region = rng.choice([*regions, "UNKNOWN", "région sud"])
        elif kind == "edge":
            cid, region = rng.choice([1, 2, None]), rng.choice(["EMEA", None])
        else:
            cid, region = rng.choice([*range(1, 9), None]), rng.choice(regions)
        if rng.random() < 0.3:
            amount = rng.choice([10.0, 9.99, 10.01, None])
        else:
            amount = round(rng.uniform(1, 400), 2)
        rows.append((oid, cid, region, rng.choice(statuses), amount))
    if kind == "edge":
        rows += [(n + 1, 1, "EMEA", "completed", 10.0), (n + 2, 1, "EMEA", "completed", 9.99)]
    return {"orders": rows}


def transform(orders: DataFrame) -> DataFrame:
    qualifying = orders.filter(
        (F.col("status") == "completed")
        & F.col("customer_id").isNotNull()
        & (F.col("amount") >= 10.0)
    ).withColumn("region", F.coalesce(F.col("region"), F.lit("UNKNOWN")))
    return qualifying.groupBy("region", "customer_id").agg(
        F.count("order_id").alias("order_count"),
        F.round(F.sum("amount"), 2).alias("total_amount"),
        F.round(F.avg("amount"), 2).alias("avg_amount"),
        F.max("amount").alias("max_amount"),
    )
