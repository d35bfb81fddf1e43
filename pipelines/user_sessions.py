"""Clickstream sessionisation: lag over a per-user window, a 30-minute gap rule, running count."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

FAMILY = "user_sessions"
SPEC = """\
Split each user's clicks into sessions. Drop clicks with a null user_id or a null event_ts. Order
each user's clicks by event_ts, then click_id. gap_minutes is the time since the same user's
previous click in minutes: the difference in whole seconds divided by 60, rounded to 2 decimals
(DOUBLE; null for the user's first click). A click starts a new session when it is the user's first
click or when the gap is 30 minutes or more (a gap of exactly 30 minutes starts a new session; two
clicks in the same second never do). session_number (BIGINT) numbers the user's sessions from 1 in
that order. Return click_id, user_id, event_ts, page, gap_minutes, session_number, in that order."""
INPUTS = {"clicks": "click_id INT, user_id INT, event_ts TIMESTAMP, page STRING"}
KEYS = ["click_id"]
ORDERED = False

_PAGES = ["/", "/cart", "/produkte/größe-42", "/café", "/checkout", None]
_GAPS = [0, 45, 1799, 1800, 1800, 1801, 3600, 600]  # seconds; 1800 is the session threshold


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Per-user click trails whose gaps sit on the 30-minute threshold, shuffled like a raw log."""
    n_users = {"typical": 6, "edge": 2, "adversarial": 4}[kind]
    per_user = {"typical": 9, "edge": 3, "adversarial": 12}[kind]
    rows = []
    for user in range(1, n_users + 1):
        count = per_user * (4 if kind == "adversarial" and user == 1 else 1)  # one heavy user
        ts = dt.datetime(2024, 2, 29, 23, 0) + dt.timedelta(seconds=rng.randrange(0, 7200))
        for _ in range(count):
            rows.append((user, ts, rng.choice(_PAGES)))
            ts += dt.timedelta(seconds=rng.choice(_GAPS))
    if kind != "edge":
        for _ in range(3):
            rows.append((None, rows[rng.randrange(len(rows))][1], "/"))
    if kind == "adversarial":
        rows += [(1, None, "/"), (2, None, "/cart")]
    rng.shuffle(rows)
    click_ids = rng.sample(range(1, 20 * len(rows)), len(rows))
    return {"clicks": [(cid, *row) for cid, row in zip(click_ids, rows)]}


def transform(clicks: DataFrame) -> DataFrame:
    valid = clicks.filter(F.col("user_id").isNotNull() & F.col("event_ts").isNotNull())
    by_user = Window.partitionBy("user_id").orderBy("event_ts", "click_id")
    with_prev = valid.withColumn("prev_ts", F.lag("event_ts").over(by_user))
    gap_seconds = F.col("event_ts").cast("long") - F.col("prev_ts").cast("long")
    starts = with_prev.withColumn("gap_minutes", F.round(gap_seconds / 60.0, 2)).withColumn(
        "new_session", F.when(F.col("prev_ts").isNull() | (gap_seconds >= 1800), 1).otherwise(0)
    )
    running = by_user.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return starts.withColumn("session_number", F.sum("new_session").over(running)).select(
        "click_id", "user_id", "event_ts", "page", "gap_minutes", "session_number"
    )
