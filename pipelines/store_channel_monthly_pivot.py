"""Monthly sales per store pivoted by channel: month bucketing, string cleanup, pivot, fillna."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

FAMILY = "store_channel_monthly_pivot"
SPEC = """\
Report monthly sales per store with one column per sales channel. Drop sales with a null store_id
or a null sale_ts. Normalise channel by trimming spaces and lower-casing; only the channels
'online', 'phone' and 'store' are reported (sales in any other or a null channel are dropped).
month is the first day of the calendar month of sale_ts (UTC), as a DATE. Return one row per
(store_id, month) having at least one reported sale, with columns store_id, month, online, phone,
store (in that order): each channel column is the sum of amount for that store, month and channel,
rounded to 2 decimals, and 0.0 when the channel has no sale or only null amounts. Refunds are
negative amounts and count as they are. Sort by store_id, then month."""
INPUTS = {
    "sales": "sale_id INT, store_id INT, sale_ts TIMESTAMP, channel STRING, amount DOUBLE",
}
KEYS = ["store_id", "month"]
ORDERED = True

_BOUNDARIES = [
    dt.datetime(2024, 1, 31, 23, 59, 59),
    dt.datetime(2024, 2, 1, 0, 0, 0),
    dt.datetime(2024, 2, 29, 12, 0, 0),
    dt.datetime(2023, 12, 31, 23, 59, 59),
    dt.datetime(2024, 3, 1, 0, 0, 0),
]
_CHANNELS = ["online", "Online ", " PHONE", "store", "STORE", "kiosk", "télé-achat", None]


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Sales on month boundaries, messy channel spellings, refunds, nulls and a flagship store."""
    n = {"typical": 70, "edge": 6, "adversarial": 100}[kind]
    rows = []
    for sid in range(1, n + 1):
        if kind == "adversarial":
            store = rng.choice([1, 1, 1, 1, 2, None])
        else:
            store = rng.choice([1, 2, 3, 4, None] if kind == "typical" else [1, 2])
        if rng.random() < 0.4:
            ts = rng.choice([*_BOUNDARIES, None if kind != "typical" else _BOUNDARIES[0]])
        else:
            ts = dt.datetime(2023, 12, 1) + dt.timedelta(minutes=rng.randrange(0, 60 * 24 * 100))
        amount = rng.choice([round(rng.uniform(-50, 900), 2), round(rng.uniform(1, 90), 2), 0.0])
        amount = None if rng.random() < 0.2 else amount
        rows.append((sid, store, ts, rng.choice(_CHANNELS), amount))
    if kind == "edge":  # a store-month whose only phone sale has a null amount
        rows.append((n + 1, 3, _BOUNDARIES[1], "phone", None))
    return {"sales": rows}


def transform(sales: DataFrame) -> DataFrame:
    reported = (
        sales.filter(F.col("store_id").isNotNull() & F.col("sale_ts").isNotNull())
        .withColumn("channel", F.lower(F.trim(F.col("channel"))))
        .filter(F.col("channel").isin("online", "phone", "store"))
        .withColumn("month", F.trunc(F.col("sale_ts").cast("date"), "month"))
    )
    wide = (
        reported.groupBy("store_id", "month")
        .pivot("channel", ["online", "phone", "store"])
        .agg(F.round(F.sum("amount"), 2))
    )
    return wide.fillna(0.0, subset=["online", "phone", "store"]).orderBy("store_id", "month")
