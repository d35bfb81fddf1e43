"""Daily active users per platform in one week: time-range filter, day buckets, distinct counts."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

FAMILY = "daily_active_users"
SPEC = """\
Count daily active users per platform for the week of 2024-03-01 to 2024-03-07 (UTC). Keep events
with event_ts >= 2024-03-01 00:00:00 and event_ts < 2024-03-08 00:00:00 (an event at exactly
2024-03-08 00:00:00 belongs to the next week; one at exactly 2024-03-01 00:00:00 belongs to this
one). event_date is the calendar date of event_ts, as a DATE. Normalise platform by trimming spaces
and lower-casing; a null platform is 'unknown'. Return one row per (event_date, platform) with
columns event_date, platform, active_users (number of distinct non-null user_id, BIGINT), events
(number of events, those with a null user_id included, BIGINT), in that order, sorted by
event_date, then platform."""
INPUTS = {"events": "event_id INT, user_id INT, platform STRING, event_ts TIMESTAMP"}
KEYS = ["event_date", "platform"]
ORDERED = True

_EDGES = [
    dt.datetime(2024, 3, 1, 0, 0, 0),
    dt.datetime(2024, 2, 29, 23, 59, 59),
    dt.datetime(2024, 3, 7, 23, 59, 59),
    dt.datetime(2024, 3, 8, 0, 0, 0),
]
_PLATFORMS = ["ios", " iOS", "android", "ANDROID ", "web", "HarmonyOS", "café-kiosk", None]


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Events on both week edges, repeat users, null users and platforms, one power user."""
    n = {"typical": 80, "edge": 8, "adversarial": 110}[kind]
    rows = []
    for eid in range(1, n + 1):
        if kind == "adversarial":
            user = rng.choice([42, 42, 42, 42, 42, 7, None])
        else:
            user = rng.choice([*range(1, 15), None] if kind == "typical" else [1, 2, None])
        if rng.random() < 0.3 or kind == "edge":
            ts = rng.choice(_EDGES)
        else:
            ts = dt.datetime(2024, 2, 28) + dt.timedelta(seconds=rng.randrange(0, 10 * 86400))
        rows.append((eid, user, rng.choice(_PLATFORMS), ts))
    return {"events": rows}


def transform(events: DataFrame) -> DataFrame:
    week = events.filter(
        (F.col("event_ts") >= F.lit("2024-03-01 00:00:00").cast("timestamp"))
        & (F.col("event_ts") < F.lit("2024-03-08 00:00:00").cast("timestamp"))
    )
    bucketed = week.select(
        F.col("event_ts").cast("date").alias("event_date"),
        F.coalesce(F.lower(F.trim(F.col("platform"))), F.lit("unknown")).alias("platform"),
        "user_id",
        "event_id",
    )
    daily = bucketed.groupBy("event_date", "platform").agg(
        F.countDistinct("user_id").alias("active_users"),
        F.count("event_id").alias("events"),
    )
    return daily.orderBy("event_date", "platform")
