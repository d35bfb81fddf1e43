"""Lapsed customers for a win-back campaign: date filters and a left anti join."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

FAMILY = "lapsed_customers"
SPEC = """\
Find lapsed customers for a win-back campaign. A customer is eligible when customer_id is not null
and signup_date is before 2024-03-01 (signing up on 2024-03-01 or later, or a null signup_date, is
not eligible). An eligible customer is lapsed when they placed no order dated on or after
2024-06-01 at any store: orders.store_id is where the order was placed and may differ from the
customer's home store_id, so match orders to customers by customer_id only; orders with a null
customer_id or a null order_date match nobody. Return customer_id, name, signup_date of the lapsed
customers, in that order. customer_id is unique in customers."""
INPUTS = {
    "customers": "customer_id INT, store_id INT, name STRING, signup_date DATE",
    "orders": "order_id INT, customer_id INT, store_id INT, order_date DATE",
}
KEYS = ["customer_id"]
ORDERED = False

_NAMES = ["Ana Souza", "Jürgen Groß", "Zoë Lefèvre", "李雷", "Ólafur", "Sam Lee", None]


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Sign-ups and orders on both cut-off dates, orders at other stores, orphans and nulls."""
    n_customers = {"typical": 20, "edge": 6, "adversarial": 15}[kind]
    n_orders = {"typical": 40, "edge": 0, "adversarial": 60}[kind]
    signups = [dt.date(2024, 2, 29), dt.date(2024, 3, 1), dt.date(2023, 6, 1), None,
               dt.date(2024, 1, 15), dt.date(2022, 11, 30)]
    order_days = [dt.date(2024, 5, 31), dt.date(2024, 6, 1), dt.date(2024, 7, 10),
                  dt.date(2024, 1, 2), None]
    customers = [
        (cid, rng.randint(1, 3), rng.choice(_NAMES), rng.choice(signups))
        for cid in range(1, n_customers + 1)
    ]
    customers.append((None, 1, "Ghost Account", dt.date(2023, 1, 1)))  # bad key from a migration
    orders = []
    for oid in range(1, n_orders + 1):
        if kind == "adversarial":
            cid = rng.choice([1, 1, 1, 1, None, n_customers + 7, rng.randint(1, n_customers)])
        else:
            cid = rng.choice([*range(1, n_customers + 3), None])
        orders.append((oid, cid, rng.randint(1, 3), rng.choice(order_days)))
    return {"customers": customers, "orders": orders}


def transform(customers: DataFrame, orders: DataFrame) -> DataFrame:
    eligible = customers.filter(
        F.col("customer_id").isNotNull()
        & (F.col("signup_date") < F.lit("2024-03-01").cast("date"))
    )
    recent = orders.filter(F.col("order_date") >= F.lit("2024-06-01").cast("date"))
    lapsed = eligible.join(recent, on="customer_id", how="left_anti")
    return lapsed.select("customer_id", "name", "signup_date")
