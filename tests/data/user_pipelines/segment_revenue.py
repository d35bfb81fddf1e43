"""Revenue per customer segment and country: an example of a data engineer's own pipeline.

Import it with ``cosmocore tasks import tests/data/user_pipelines/segment_revenue.py --suite mine``.
The module-level code below (a session, a table read) is never run by the import: the file is
parsed, and only ``segment_revenue`` becomes tasks.
"""
from typing import Annotated

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import col

MIN_AMOUNT = 5.0


def segment_revenue(
    orders: Annotated[DataFrame, "order_id INT, customer_id INT, status STRING, amount DOUBLE, order_date DATE"],
    customers: Annotated[DataFrame, "customer_id INT, segment STRING, country STRING"],
    min_amount: float = MIN_AMOUNT,
) -> DataFrame:
    """Revenue per (segment, country) from completed orders placed on or after 2024-01-01.

    An order counts when its status is 'completed' (any case, surrounding spaces ignored), its
    amount is at least `min_amount` (5.00; exactly 5.00 counts) and its customer is known.
    Customers without a segment are reported under 'unassigned'. Return segment, country,
    orders (count), revenue (sum of amount, 2 decimals), largest_order, customers (distinct),
    for groups with at least two orders.
    """
    completed = orders.filter(
        (F.lower(F.trim(col("status"))) == "completed")
        & (col("amount") >= min_amount)
        & (col("order_date") >= F.lit("2024-01-01").cast("date"))
    )
    enriched = completed.join(customers, on="customer_id", how="inner").withColumn(
        "segment", F.coalesce(col("segment"), F.lit("unassigned"))
    )
    return (
        enriched.groupBy("segment", "country")
        .agg(
            F.count("order_id").alias("orders"),
            F.round(F.sum("amount"), 2).alias("revenue"),
            F.max("amount").alias("largest_order"),
            F.countDistinct("customer_id").alias("customers"),
        )
        .filter(col("orders") >= 2)
    )


if __name__ == "__main__":  # how the pipeline runs in production; the import never executes this
    spark = SparkSession.builder.getOrCreate()
    segment_revenue(spark.read.table("sales.orders"), spark.read.table("crm.customers")).show()
