"""Order-line fill status: pre-aggregation, a two-key left join and a when/otherwise status."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

FAMILY = "shipment_fill_rate"
SPEC = """\
Report the fill status of every order line. A shipment belongs to the order line with the same
order_id AND the same line_no (line numbers restart at 1 in every order). qty_shipped is the total
qty_shipped of the line's shipments as BIGINT (null quantities are ignored; 0 for a line without
shipments or with only null quantities). status is 'complete' when qty_shipped >= qty_ordered
(exactly the ordered quantity is complete), otherwise 'partial' when qty_shipped > 0, otherwise
'unshipped'. Shipments that match no order line are ignored. Return order_id, line_no, sku,
qty_ordered, qty_shipped, status, in that order, one row per order line ((order_id, line_no) is
unique in order_lines)."""
INPUTS = {
    "order_lines": "order_id INT, line_no INT, sku STRING, qty_ordered INT",
    "shipments": "shipment_id INT, order_id INT, line_no INT, qty_shipped INT, shipped_on DATE",
}
KEYS = ["order_id", "line_no"]
ORDERED = False

_SKUS = ["BOLT-M6", "Schraube-Ø8", "NUT-M6", "ÉCROU-10", "WASHER"]


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Split shipments that add up exactly, over-shipments, orphans, null keys and quantities."""
    n_orders = {"typical": 12, "edge": 2, "adversarial": 8}[kind]
    lines = []
    for oid in range(1, n_orders + 1):
        for line_no in range(1, rng.randint(1, 4) + 1):
            lines.append((oid, line_no, rng.choice(_SKUS), rng.choice([1, 2, 3, 5, 10, 0])))
    shipments = []
    day = dt.date(2024, 3, 31)
    if kind != "edge":
        for oid, line_no, _, qty in lines:
            short = max(qty - 2, 0)
            parts = rng.choice([[], [qty], [max(qty - 1, 0), 1], [qty, 1], [short], [None]])
            if kind == "adversarial" and oid == 1:
                parts = [1] * 12  # one line shipped piece by piece
            for part in parts:
                shipments.append((oid, line_no, part))
        shipments += [(n_orders + 5, 1, 3), (None, 1, 2), (1, 9, 4), (2, None, 1)]  # orphans
    rows = [
        (sid, oid, line_no, qty, day + dt.timedelta(days=rng.randint(-3, 3)))
        for sid, (oid, line_no, qty) in enumerate(shipments, start=1)
    ]
    rng.shuffle(rows)
    return {"order_lines": lines, "shipments": rows}


def transform(order_lines: DataFrame, shipments: DataFrame) -> DataFrame:
    shipped = shipments.groupBy("order_id", "line_no").agg(
        F.sum("qty_shipped").alias("qty_shipped")
    )
    lines = order_lines.alias("l").join(
        shipped.alias("s"),
        on=(F.col("l.order_id") == F.col("s.order_id"))
        & (F.col("l.line_no") == F.col("s.line_no")),
        how="left",
    )
    qty_shipped = F.coalesce(F.col("s.qty_shipped"), F.lit(0))
    status = (
        F.when(qty_shipped >= F.col("l.qty_ordered"), "complete")
        .when(qty_shipped > 0, "partial")
        .otherwise("unshipped")
    )
    return lines.select(
        F.col("l.order_id").alias("order_id"),
        F.col("l.line_no").alias("line_no"),
        F.col("l.sku").alias("sku"),
        F.col("l.qty_ordered").alias("qty_ordered"),
        qty_shipped.alias("qty_shipped"),
        status.alias("status"),
    )
