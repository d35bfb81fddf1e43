"""Product feed cleanup: trimming, case, regex whitespace and price parsing, then dedup."""
from __future__ import annotations

import datetime as dt
import random

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

FAMILY = "product_catalog_cleanup"
SPEC = """\
Clean a supplier product feed. sku: trim spaces and upper-case; drop rows whose cleaned sku is null
or the empty string. name: replace every run of whitespace (spaces, tabs, newlines) with a single
space, then trim (a null name stays null). brand: trim, then capitalise the first letter of each
word and lower-case the rest (Spark initcap); a null brand becomes 'Unbranded'. price: remove every
'$', ',' and whitespace character from price_text, parse the rest as DOUBLE and round to 2
decimals (null stays null). The feed re-sends a product version (same cleaned sku and updated_on)
with different spacing, case or price formatting; such re-sends are identical after cleaning and
must appear once. Return sku, name, brand, price, updated_on, in that order."""
INPUTS = {
    "products": "sku STRING, name STRING, brand STRING, price_text STRING, updated_on DATE",
}
KEYS = ["sku", "updated_on"]
ORDERED = False

_NAMES = ["Kaffee Mühle", "Tea pot", "Chef's knife", "Crème brûlée torch", "Über Mug", None]
_BRANDS = ["acme", "Nordisk Ære", "élan vital", "BIG co", None]


def _resend(rng: random.Random, sku: str, name: str | None, brand: str | None,
            price: float | None, day: dt.date) -> tuple:
    """One delivery of a product version, with the cosmetic noise a re-send may carry."""
    sku_text = rng.choice([sku, f"  {sku.lower()} ", f"{sku} "])
    if name is not None:
        name = rng.choice([name, name.replace(" ", "  "), f"\t{name} ", name.replace(" ", " \n ")])
    if brand is not None:
        brand = rng.choice([brand, brand.upper(), f" {brand.lower()}  "])
    price_text = None
    if price is not None:
        price_text = rng.choice([f"${price:,.2f}", f"{price}", f" {price:.2f} ", f"{price:,.2f}"])
    return (sku_text, name, brand, price_text, day)


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Versions re-sent with cosmetic differences, blank and null skus, non-ASCII names."""
    n_versions = {"typical": 25, "edge": 3, "adversarial": 30}[kind]
    max_resends = {"typical": 2, "edge": 2, "adversarial": 5}[kind]
    rows = []
    for i in range(n_versions):
        sku = f"SK-{rng.randrange(0, n_versions // 2 + 1):03d}"  # several versions per sku
        day = dt.date(2024, 1, 1) + dt.timedelta(days=i)
        price = rng.choice([round(rng.uniform(1, 2500), 2), round(rng.uniform(1, 20), 2), None])
        name, brand = rng.choice(_NAMES), rng.choice(_BRANDS)
        for _ in range(rng.randint(1, max_resends)):
            rows.append(_resend(rng, sku, name, brand, price, day))
    if kind != "typical":
        rows += [("   ", "Blank sku", "acme", "1.00", dt.date(2024, 1, 1)),
                 (None, "No sku", None, None, dt.date(2024, 1, 2))]
    rng.shuffle(rows)
    return {"products": rows}


def transform(products: DataFrame) -> DataFrame:
    cleaned = products.select(
        F.upper(F.trim(F.col("sku"))).alias("sku"),
        F.trim(F.regexp_replace(F.col("name"), r"\s+", " ")).alias("name"),
        F.coalesce(F.initcap(F.trim(F.col("brand"))), F.lit("Unbranded")).alias("brand"),
        F.round(F.regexp_replace(F.col("price_text"), r"[$,\s]", "").cast("double"), 2).alias(
            "price"
        ),
        F.col("updated_on"),
    )
    valid = cleaned.filter(F.col("sku").isNotNull() & (F.col("sku") != ""))
    return valid.dropDuplicates(["sku", "updated_on"])
