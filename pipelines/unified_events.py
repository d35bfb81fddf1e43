"""Web and app events merged by column name, normalised and deduplicated after retries."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

FAMILY = "unified_events"
SPEC = """\
Merge web and app events into one table. `app_events` has the same columns as `web_events` in a
different order: combine the two by column name. Add source = 'web' for rows from web_events and
'app' for rows from app_events. Normalise event_type by trimming spaces and lower-casing; a null
device becomes 'unknown'. Drop events with a null event_id. Delivery retries re-send events with
different event_type spelling; rows that are identical after this normalisation are one event and
appear once (event_id is otherwise unique across both sources). Return event_id, source, user_id,
event_type, device, event_ts, in that order."""
INPUTS = {
    "web_events": "event_id STRING, user_id INT, event_type STRING, device STRING, "
    "event_ts TIMESTAMP",
    "app_events": "event_id STRING, user_id INT, device STRING, event_type STRING, "
    "event_ts TIMESTAMP",
}
KEYS = ["event_id"]
ORDERED = False

_TYPES = ["click", "view", "purchase", "añadir_al_carrito"]
_DEVICES = ["Firefox/Linux", "Safari/macOS", "iPhone 15", "Pixel 8", None]


def _events(rng: random.Random, prefix: str, n: int, retries: float) -> list[tuple]:
    """n events (event_id, user_id, event_type, device, event_ts), some re-sent by a retry."""
    out = []
    start = dt.datetime(2024, 4, 30, 23, 58)
    for i in range(n):
        user = rng.choice([1, 1, 1, 2, 3, 4, None])
        event = [f"{prefix}-{i}", user, rng.choice(_TYPES), rng.choice(_DEVICES),
                 start + dt.timedelta(seconds=rng.randrange(0, 600))]
        out.append(tuple(event))
        while rng.random() < retries:
            spelled = rng.choice([event[2].upper(), f" {event[2]} ", event[2].capitalize()])
            out.append((event[0], event[1], spelled, event[3], event[4]))
    return out


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Retried deliveries, null ids and devices, non-ASCII types; edge kind has no app traffic."""
    n_web = {"typical": 30, "edge": 4, "adversarial": 25}[kind]
    n_app = {"typical": 25, "edge": 0, "adversarial": 30}[kind]
    retries = {"typical": 0.2, "edge": 0.5, "adversarial": 0.6}[kind]
    web = _events(rng, "w", n_web, retries)
    app = [(e, u, d, t, ts) for e, u, t, d, ts in _events(rng, "a", n_app, retries)]
    if kind != "edge":
        web.append((None, 1, "click", None, dt.datetime(2024, 5, 1)))
        app.append((None, 2, "Pixel 8", "view", dt.datetime(2024, 5, 1)))
    rng.shuffle(web)
    rng.shuffle(app)
    return {"web_events": web, "app_events": app}


def transform(web_events: DataFrame, app_events: DataFrame) -> DataFrame:
    web = web_events.withColumn("source", F.lit("web"))
    app = app_events.withColumn("source", F.lit("app"))
    events = web.unionByName(app).filter(F.col("event_id").isNotNull())
    cleaned = events.withColumn("event_type", F.lower(F.trim(F.col("event_type")))).fillna(
        {"device": "unknown"}
    )
    return cleaned.select(
        "event_id", "source", "user_id", "event_type", "device", "event_ts"
    ).distinct()
