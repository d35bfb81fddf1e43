"""Late shipments with their carrier: schemas given in the docstring, a window dedup, a helper.

Two public functions, so the import needs ``--function late_shipments``.
"""
from pyspark.sql import Window
from pyspark.sql import functions as F


def late_shipments(shipments, carriers):
    """The latest status of every shipment that was delivered late, with its carrier's name.

    Inputs:
        shipments: shipment_id INT, carrier_id INT, status STRING, updated_at TIMESTAMP, promised_date DATE, delivered_date DATE
        carriers: carrier_id INT, carrier_name STRING

    Keep each shipment's most recent row (by updated_at), then those delivered after the promised
    date; days_late is the difference in days. Shipments of unknown carriers are kept with a null
    carrier_name. Sorted by days_late, largest first, then shipment_id.

    >>> carriers = spark.createDataFrame([(1, "DHL"), (2, "UPS"), (3, "La Poste")], "carrier_id INT, carrier_name STRING")
    """
    latest_first = Window.partitionBy("shipment_id").orderBy(F.col("updated_at").desc())
    latest = (shipments.withColumn("rn", F.row_number().over(latest_first))
              .filter(F.col("rn") == 1)
              .drop("rn"))
    late = latest.withColumn("days_late", F.datediff("delivered_date", "promised_date")).filter(F.col("days_late") > 0)
    return (late.join(carriers, on="carrier_id", how="left")
            .select("shipment_id", "carrier_name", "status", "days_late")
            .orderBy(F.col("days_late").desc(), "shipment_id"))


def weekly_report(shipments, carriers):
    """Another pipeline in the same file (not imported here)."""
    return late_shipments(shipments, carriers).groupBy("carrier_name").count()
