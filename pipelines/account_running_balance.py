"""Running balance per account over a ledger assembled from two feeds with different layouts."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

FAMILY = "account_running_balance"
SPEC = """\
Compute the running balance of every account over card transactions plus manual adjustments.
`adjustments` has the same columns as `transactions` in a different order: combine the two by
column name (txn_id is unique across both). amount arrives as text such as '12.50' or '-3':
parse it as DOUBLE. txn_type is compared after trimming spaces and lower-casing: 'credit' adds the
amount, every other type (null included) subtracts it. signed_amount is that signed amount rounded
to 2 decimals, and 0.0 when amount is null. Drop entries whose account_id is null. Within each
account, order entries by txn_ts then txn_id; balance is the running sum of signed_amount over the
account's entries up to and including the current one, rounded to 2 decimals. Return txn_id,
account_id, txn_ts, signed_amount, balance, in that order, sorted by account_id, txn_ts, txn_id."""
INPUTS = {
    "transactions": "txn_id INT, account_id INT, txn_ts TIMESTAMP, txn_type STRING, amount STRING",
    "adjustments": "account_id INT, txn_id INT, txn_ts TIMESTAMP, txn_type STRING, amount STRING",
}
KEYS = ["txn_id"]
ORDERED = True


def _amount(rng: random.Random) -> str | None:
    """Amounts as an upstream CSV writes them: fixed, integral, negative, zero or missing."""
    value = round(rng.uniform(0, 300), 2)
    return rng.choice([f"{value:.2f}", str(int(value)), f"-{value:.2f}", "0", None, f"{value}"])


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Same-second entries, messy txn_type values, null accounts and one busy account."""
    n_txn = {"typical": 40, "edge": 5, "adversarial": 80}[kind]
    n_adj = {"typical": 8, "edge": 0, "adversarial": 15}[kind]
    base = dt.datetime(2024, 1, 31, 23, 59, 59)
    types = ["credit", "debit", "debit", " Credit ", "DEBIT", "fee", None]

    def stamp() -> dt.datetime:
        return base + dt.timedelta(minutes=rng.choice([0, 0, 1, 5, 60, 1440, rng.randrange(9000)]))

    def account() -> int | None:
        if kind == "adversarial":
            return rng.choice([1, 1, 1, 1, 1, 2, None])
        return rng.choice([1, 2, 3, 4, 5, None] if kind == "typical" else [1, 2])

    transactions = [
        (tid, account(), stamp(), rng.choice(types), _amount(rng)) for tid in range(1, n_txn + 1)
    ]
    adjustments = [
        (account(), 1000 + i, stamp(), rng.choice(["credit", "debit", "Adjustment"]), _amount(rng))
        for i in range(n_adj)
    ]
    if kind == "edge":
        transactions.append((n_txn + 1, 1, base, "credit", "0.00"))
    rng.shuffle(transactions)  # arrival order is not txn_id order
    return {"transactions": transactions, "adjustments": adjustments}


def transform(transactions: DataFrame, adjustments: DataFrame) -> DataFrame:
    ledger = transactions.unionByName(adjustments).filter(F.col("account_id").isNotNull())
    amount = F.col("amount").cast("double")
    signed = F.when(F.lower(F.trim(F.col("txn_type"))) == "credit", amount).otherwise(-amount)
    ledger = ledger.withColumn("signed_amount", F.round(F.coalesce(signed, F.lit(0.0)), 2))
    running = (
        Window.partitionBy("account_id")
        .orderBy("txn_ts", "txn_id")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    return (
        ledger.withColumn("balance", F.round(F.sum("signed_amount").over(running), 2))
        .select("txn_id", "account_id", "txn_ts", "signed_amount", "balance")
        .orderBy("account_id", "txn_ts", "txn_id")
    )
