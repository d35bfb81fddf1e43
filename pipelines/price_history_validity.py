"""SCD type-2 validity ranges from a price change log: same-day dedup, lead and lag."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

FAMILY = "price_history_validity"
SPEC = """\
Turn a price change log into SCD type-2 validity ranges. Drop changes with a null sku or a null
effective_date. When several changes share a sku and an effective_date, only the one with the
largest change_id counts. Then, for each sku ordered by effective_date: valid_to is the day before
the next change's effective_date, or 9999-12-31 for the sku's latest change (DATE); price_delta is
price minus the previous change's price rounded to 2 decimals (null for the sku's first change and
whenever either price is null); is_current is true for the sku's latest change and false otherwise.
Return sku, effective_date, valid_to, price, price_delta, is_current, in that order."""
INPUTS = {"price_changes": "change_id INT, sku STRING, effective_date DATE, price DOUBLE"}
KEYS = ["sku", "effective_date"]
ORDERED = False

_SKUS = ["TEA-01", "ÄPFEL-1kg", "CAFÉ-250", "MILK-1L"]


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Same-day corrections, consecutive-day changes, null prices/keys and one volatile sku."""
    n = {"typical": 40, "edge": 4, "adversarial": 70}[kind]
    start = dt.date(2024, 1, 1)
    rows = []
    for _ in range(n):
        if kind == "adversarial":
            sku = rng.choice(["TEA-01"] * 5 + _SKUS + [None])
            day = start + dt.timedelta(days=rng.randrange(0, 6))  # many same-day corrections
        else:
            sku = rng.choice(_SKUS if kind == "edge" else [*_SKUS, None])
            day = start + dt.timedelta(days=rng.randrange(0, 60))
        price = rng.choice([round(rng.uniform(0.5, 30), 2), round(rng.uniform(0.5, 30), 2), None])
        rows.append((sku, day if rng.random() > 0.05 else None, price))
    if kind == "edge":  # changes on consecutive days: valid_to equals the change's own date
        rows += [("MILK-1L", dt.date(2024, 2, 1), 1.19), ("MILK-1L", dt.date(2024, 2, 2), 1.29)]
    change_ids = rng.sample(range(1, 10 * len(rows)), len(rows))
    return {"price_changes": [(cid, *row) for cid, row in zip(change_ids, rows)]}


def transform(price_changes: DataFrame) -> DataFrame:
    valid = price_changes.filter(F.col("sku").isNotNull() & F.col("effective_date").isNotNull())
    same_day = Window.partitionBy("sku", "effective_date").orderBy(F.col("change_id").desc())
    deduped = valid.withColumn("rn", F.row_number().over(same_day)).filter(F.col("rn") == 1)
    timeline = Window.partitionBy("sku").orderBy("effective_date")
    versions = deduped.withColumn("next_date", F.lead("effective_date").over(timeline)).withColumn(
        "prev_price", F.lag("price").over(timeline)
    )
    return versions.select(
        "sku",
        "effective_date",
        F.coalesce(F.date_sub(F.col("next_date"), 1), F.to_date(F.lit("9999-12-31"))).alias(
            "valid_to"
        ),
        "price",
        F.round(F.col("price") - F.col("prev_price"), 2).alias("price_delta"),
        F.col("next_date").isNull().alias("is_current"),
    )
