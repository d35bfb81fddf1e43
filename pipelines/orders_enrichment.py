"""Orders enriched with customer attributes: a left join with null handling and a filter."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

FAMILY = "orders_enrichment"
SPEC = """\
Enrich every order placed on or after 2024-01-01 (an order dated exactly 2024-01-01 is kept; one
with a null order_date is dropped) with its customer's country and segment. Keep orders whose
customer is unknown (a null customer_id or no match in `customers`): their country is 'UNKNOWN' and
their segment is null. A matched customer whose country is null also gets country 'UNKNOWN'.
Return order_id, customer_id, order_date, amount, country, segment, in that order, one row per
order, amount unchanged. Customers are unique by customer_id."""
INPUTS = {
    "orders": "order_id INT, customer_id INT, order_date DATE, amount DOUBLE",
    "customers": "customer_id INT, country STRING, segment STRING",
}
KEYS = ["order_id"]
ORDERED = False


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Orders around the 2024-01-01 boundary, unmatched and null customer ids, non-ASCII names."""
    n_customers = {"typical": 12, "edge": 2, "adversarial": 6}[kind]
    countries = ["DE", "FR", "BR", "JP", "Côte d'Ivoire", None]
    customers = [
        (cid, rng.choice(countries), rng.choice(["smb", "enterprise", None]))
        for cid in range(1, n_customers + 1)
    ]
    n_orders = {"typical": 60, "edge": 4, "adversarial": 40}[kind]
    base = dt.date(2024, 1, 1)
    orders = []
    for oid in range(1, n_orders + 1):
        if kind == "adversarial":
            cid = rng.choice([1, 1, 1, 1, None, n_customers + 5, 2])  # skew, nulls, orphans
        else:
            cid = rng.choice([*range(1, n_customers + 3), None])
        day = base + dt.timedelta(days=rng.choice([-1, 0, 0, 1, 30, -40]))
        orders.append((oid, cid, day, round(rng.uniform(-5, 500), 2)))
    if kind == "edge":
        orders.append((n_orders + 1, 1, base, 0.0))
    return {"orders": orders, "customers": customers}


def transform(orders: DataFrame, customers: DataFrame) -> DataFrame:
    recent = orders.filter(F.col("order_date") >= F.lit("2024-01-01").cast("date"))
    joined = recent.join(customers, on="customer_id", how="left")
    return joined.select(
        "order_id",
        "customer_id",
        "order_date",
        "amount",
        F.coalesce(F.col("country"), F.lit("UNKNOWN")).alias("country"),
        "segment",
    )
