"""Web sessions from click events: a realistic script, run as written by `cosmocore run`.

It has what a real pipeline file has: a SparkSession import and builder, typing hints, a
module-level constant computed from literals, a loader used only by the script part, and a
``__main__`` block.
"""
from typing import Annotated

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

SESSION_GAP = 30 * 60  # seconds of inactivity that end a session
MIN_CLICKS = 2


def sessionize(events: Annotated[DataFrame, "user_id INT, ts TIMESTAMP, page STRING"]) -> DataFrame:
    """Split each user's clicks into sessions (a gap of more than 30 minutes starts a new one) and
    keep the sessions with at least two clicks: user_id, session (1, 2, ... per user), clicks,
    started_at. Sorted by user_id then session.
    """
    by_user = Window.partitionBy("user_id").orderBy("ts")
    gaps = events.withColumn(
        "gap", F.col("ts").cast("long") - F.lag(F.col("ts").cast("long")).over(by_user))
    starts = gaps.withColumn(
        "new_session", F.when(F.col("gap").isNull() | (F.col("gap") > SESSION_GAP), 1).otherwise(0))
    numbered = starts.withColumn(
        "session", F.sum("new_session").over(by_user.rowsBetween(Window.unboundedPreceding, 0)))
    sessions = numbered.groupBy("user_id", "session").agg(
        F.count("*").alias("clicks"), F.min("ts").alias("started_at"))
    return sessions.filter(F.col("clicks") >= MIN_CLICKS).orderBy("user_id", "session")


def load_events(spark: SparkSession, path: str) -> DataFrame:
    """Read the raw click log (used by the script below, not by the transformation)."""
    return spark.read.parquet(path).select("user_id", "ts", "page")


if __name__ == "__main__":
    import sys

    spark = SparkSession.builder.appName("sessions").getOrCreate()
    sessionize(load_events(spark, sys.argv[1])).write.mode("overwrite").parquet(sys.argv[2])
