"""Current address per customer from a change log: latest record per key (SCD type-1 view)."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

FAMILY = "latest_customer_address"
SPEC = """\
Build each customer's address as of the cut-off 2024-07-01 00:00:00 (UTC) from an append-only
change log. Ignore changes with a null customer_id or a null updated_at, and changes at or after
the cut-off (updated_at must be strictly before 2024-07-01 00:00:00; a change at exactly the
cut-off is ignored). For each customer keep the latest remaining change by updated_at; when
several share the latest updated_at, the one with the largest change_id wins. A null address or
city in the winning change stays null. Return customer_id, address, city, updated_at, in that
order, one row per customer that has at least one remaining change."""
INPUTS = {
    "address_changes": "change_id INT, customer_id INT, address STRING, city STRING, "
    "updated_at TIMESTAMP"
}
KEYS = ["customer_id"]
ORDERED = False

_CUTOFF = dt.datetime(2024, 7, 1)
_PLACES = [
    ("Hauptstraße 5", "München"),
    ("Rua São João 12", "São Paulo"),
    ("1 Main St", "Springfield"),
    ("神南1-2-3", "東京"),
    ("12 Rue de l'Église", "Besançon"),
    (None, None),
]


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Changes on the cut-off, tied timestamps, null keys/stamps and one very chatty customer."""
    n_customers = {"typical": 15, "edge": 3, "adversarial": 6}[kind]
    n_changes = {"typical": 50, "edge": 5, "adversarial": 70}[kind]
    tie = dt.datetime(2024, 3, 15, 9, 30)
    stamps = [
        _CUTOFF,
        _CUTOFF - dt.timedelta(seconds=1),
        _CUTOFF + dt.timedelta(days=2),
        tie,
        tie,
        dt.datetime(2023, 12, 31, 23, 59, 59),
        None,
    ]
    change_ids = rng.sample(range(1, 10 * n_changes), n_changes + 4)
    rows = []
    for i in range(n_changes):
        if kind == "adversarial":
            cid = rng.choice([1, 1, 1, 1, 2, None, n_customers])
        else:
            cid = rng.choice([*range(1, n_customers + 1), None])
        if rng.random() < 0.5:
            stamp = rng.choice(stamps)
        else:
            stamp = dt.datetime(2024, 1, 1) + dt.timedelta(hours=rng.randrange(0, 24 * 200))
        rows.append((change_ids[i], cid, *rng.choice(_PLACES), stamp))
    if kind == "edge":  # customer 1: cut-off vs one second before; customer 2: tied stamps
        rows += [
            (change_ids[-4], 1, "Am Ring 1", "Köln", _CUTOFF),
            (change_ids[-3], 1, "Am Ring 2", "Köln", _CUTOFF - dt.timedelta(seconds=1)),
            (change_ids[-2], 2, "Via Roma 3", "Milano", tie),
            (change_ids[-1], 2, "Via Roma 4", "Milano", tie),
        ]
    return {"address_changes": rows}


def transform(address_changes: DataFrame) -> DataFrame:
    cutoff = F.lit("2024-07-01 00:00:00").cast("timestamp")
    valid = address_changes.filter(
        F.col("customer_id").isNotNull()
        & F.col("updated_at").isNotNull()
        & (F.col("updated_at") < cutoff)
    )
    latest_first = Window.partitionBy("customer_id").orderBy(
        F.col("updated_at").desc(), F.col("change_id").desc()
    )
    ranked = valid.withColumn("rn", F.row_number().over(latest_first))
    return ranked.filter(F.col("rn") == 1).select("customer_id", "address", "city", "updated_at")
