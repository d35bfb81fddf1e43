"""The two engines behind a CosmoCore store, one interface: delta-rs and Spark's Delta writer.

``Store`` speaks to its tables only through ``Backend``, so the same tables and API work with
``deltalake`` (delta-rs, embedded, the default; any URI delta-rs understands, with
``storage_options`` for object stores) and with ``spark`` (Spark's Delta writer on the active
SparkSession, as on Databricks). Appends are atomic commits; idempotent inserts are a MERGE with
insert-when-not-matched, and a lost commit race is retried with jittered exponential back-off.
Spark creates tables at the minimal protocol (reader 1, writer 2: no deletion vectors) so
Spark, Databricks and delta-rs all read them. Engine imports are deferred to the calls that use
them, so neither engine is needed to import the store.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import pyarrow as pa

from cosmocore.memory.config import StoreConfig
from cosmocore.memory.schemas import StoreError


class Backend(Protocol):
    """What ``Store`` needs of an engine: whole-table operations, tables named under one root."""

    def uri(self, name: str) -> str: ...
    def exists(self, name: str) -> bool: ...
    def create(self, name: str, schema: pa.Schema, properties: dict[str, str]) -> None: ...
    def properties(self, name: str) -> dict[str, str]: ...
    def arrow_schema(self, name: str) -> pa.Schema: ...
    def add_columns(self, name: str, fields: list[pa.Field]) -> None: ...
    def insert_new(self, name: str, table: pa.Table, key: str) -> int: ...
    def overwrite(self, name: str, table: pa.Table) -> None: ...
    def read(self, name: str, columns: list[str] | None, where: str | None) -> pa.Table: ...
    def read_version(self, name: str, version: int) -> pa.Table: ...
    def version(self, name: str) -> int: ...
    def optimize(self, name: str) -> dict[str, Any]: ...
    def vacuum(self, name: str, retention_hours: int) -> int: ...
    def delete(self, name: str, where: str) -> int: ...


def _join(root: str, name: str) -> str:
    return root.rstrip("/") + "/" + name


def _retry(fn: Callable[[], Any], is_conflict: Callable[[BaseException], bool], cfg: StoreConfig) -> Any:
    """Run ``fn``; on a lost commit race wait (exponential back-off, full jitter) and rerun."""
    delay = cfg.backoff_s
    for attempt in range(cfg.commit_retries + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - filtered by is_conflict
            if attempt == cfg.commit_retries or not is_conflict(exc):
                raise
            time.sleep(random.uniform(0, delay))
            delay = min(delay * 2, cfg.backoff_max_s)
    raise AssertionError("unreachable")


class DeltaRsBackend:
    """Delta through delta-rs (``deltalake``): embedded, no JVM, object stores via storage_options."""

    def __init__(self, root: str, storage_options: dict[str, str] | None, cfg: StoreConfig) -> None:
        self.root = root
        self.storage_options = storage_options
        self.cfg = cfg

    def uri(self, name: str) -> str:
        return _join(self.root, name)

    def _table(self, name: str) -> Any:
        from deltalake import DeltaTable

        return DeltaTable(self.uri(name), storage_options=self.storage_options)

    def exists(self, name: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.uri(name), storage_options=self.storage_options)

    def create(self, name: str, schema: pa.Schema, properties: dict[str, str]) -> None:
        from deltalake import DeltaTable

        try:
            DeltaTable.create(
                self.uri(name), schema, mode="ignore", name=name, configuration=properties,
                storage_options=self.storage_options, raise_if_key_not_exists=False,
            )
        except Exception:
            # Two processes opening a fresh store race to commit version 0: the loser finds it made.
            if not self.exists(name):
                raise

    def properties(self, name: str) -> dict[str, str]:
        return dict(self._table(name).metadata().configuration)

    def arrow_schema(self, name: str) -> pa.Schema:
        return pa.schema(self._table(name).schema())

    def add_columns(self, name: str, fields: list[pa.Field]) -> None:
        from deltalake.schema import Field, PrimitiveType

        types = {pa.int32(): "integer", pa.int64(): "long", pa.string(): "string", pa.float64(): "double"}
        self._table(name).alter.add_columns([Field(f.name, PrimitiveType(types[f.type])) for f in fields])

    def insert_new(self, name: str, table: pa.Table, key: str) -> int:
        from deltalake.exceptions import CommitFailedError

        def _merge() -> int:
            res = (
                self._table(name)
                .merge(table, f"t.{key} = s.{key}", source_alias="s", target_alias="t")
                .when_not_matched_insert_all()
                .execute()
            )
            return int(res["num_target_rows_inserted"])

        return _retry(_merge, lambda e: isinstance(e, CommitFailedError), self.cfg)

    def overwrite(self, name: str, table: pa.Table) -> None:
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError

        _retry(
            lambda: write_deltalake(self.uri(name), table, mode="overwrite", storage_options=self.storage_options),
            lambda e: isinstance(e, CommitFailedError),
            self.cfg,
        )

    def read(self, name: str, columns: list[str] | None, where: str | None) -> pa.Table:
        dt_ = self._table(name)
        if where is None:
            return dt_.to_pyarrow_table(columns=columns)
        # QueryBuilder, not to_pyarrow_table(filters=): pyarrow's dataset filter on a string
        # column fails against delta-rs's string_view file statistics (checked with deltalake 1.6).
        from deltalake import QueryBuilder

        cols = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        reader = QueryBuilder().register("t", dt_).execute(f"SELECT {cols} FROM t WHERE {where}")
        return pa.table(reader)

    def read_version(self, name: str, version: int) -> pa.Table:
        from deltalake import DeltaTable

        return DeltaTable(self.uri(name), version=version, storage_options=self.storage_options).to_pyarrow_table()

    def version(self, name: str) -> int:
        return int(self._table(name).version())

    def optimize(self, name: str) -> dict[str, Any]:
        return dict(self._table(name).optimize.compact())

    def vacuum(self, name: str, retention_hours: int) -> int:
        removed = self._table(name).vacuum(
            retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
        )
        return len(removed)

    def delete(self, name: str, where: str) -> int:
        from deltalake.exceptions import CommitFailedError

        return _retry(lambda: int(self._table(name).delete(where)["num_deleted_rows"]),
                      lambda e: isinstance(e, CommitFailedError), self.cfg)


class SparkBackend:
    """Delta through Spark's own writer on the active session (Databricks, or Spark with Delta jars)."""

    def __init__(self, root: str, cfg: StoreConfig, spark: Any = None) -> None:
        from pyspark.sql import SparkSession

        self.spark = spark or SparkSession.getActiveSession()
        if self.spark is None:
            raise StoreError(f"{root}: backend 'spark' needs an active SparkSession with Delta Lake")
        self.root = root
        self.cfg = cfg

    def uri(self, name: str) -> str:
        return _join(self.root, name)

    def _ref(self, name: str) -> str:
        return "delta.`" + self.uri(name).replace("`", "``") + "`"

    def exists(self, name: str) -> bool:
        try:
            self.spark.sql(f"DESCRIBE DETAIL {self._ref(name)}").collect()
            return True
        except Exception:  # noqa: BLE001 - AnalysisException class differs classic vs Connect
            return False

    def create(self, name: str, schema: pa.Schema, properties: dict[str, str]) -> None:
        from pyspark.sql.pandas.types import from_arrow_schema

        ddl = from_arrow_schema(schema).toDDL()
        props = {**properties, "delta.enableDeletionVectors": "false",
                 "delta.minReaderVersion": "1", "delta.minWriterVersion": "2"}
        tbl = ", ".join(f"'{k}' = '{v}'" for k, v in props.items())
        self.spark.sql(f"CREATE TABLE IF NOT EXISTS {self._ref(name)} ({ddl}) USING DELTA TBLPROPERTIES ({tbl})")

    def properties(self, name: str) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.spark.sql(f"SHOW TBLPROPERTIES {self._ref(name)}").collect()}

    def arrow_schema(self, name: str) -> pa.Schema:
        from pyspark.sql.pandas.types import to_arrow_schema

        return to_arrow_schema(self.spark.read.format("delta").load(self.uri(name)).schema)

    def add_columns(self, name: str, fields: list[pa.Field]) -> None:
        from pyspark.sql.pandas.types import from_arrow_schema

        ddl = from_arrow_schema(pa.schema(fields)).toDDL()
        self.spark.sql(f"ALTER TABLE {self._ref(name)} ADD COLUMNS ({ddl})")

    def insert_new(self, name: str, table: pa.Table, key: str) -> int:
        view = f"cosmocore_src_{uuid.uuid4().hex}"
        self.spark.createDataFrame(table).createOrReplaceTempView(view)
        sql = (f"MERGE INTO {self._ref(name)} t USING {view} s ON t.{key} = s.{key} "
               "WHEN NOT MATCHED THEN INSERT *")
        try:
            rows = _retry(lambda: self.spark.sql(sql).collect(),
                          lambda e: "Concurrent" in type(e).__name__ or "Concurrent" in str(e)[:200], self.cfg)
        finally:
            self.spark.catalog.dropTempView(view)
        return int(rows[0]["num_inserted_rows"]) if rows else 0

    def overwrite(self, name: str, table: pa.Table) -> None:
        self.spark.createDataFrame(table).write.format("delta").mode("overwrite").save(self.uri(name))

    def read(self, name: str, columns: list[str] | None, where: str | None) -> pa.Table:
        df = self.spark.read.format("delta").load(self.uri(name))
        if where is not None:
            df = df.where(where)
        if columns:
            df = df.select(*columns)
        return df.toArrow()

    def read_version(self, name: str, version: int) -> pa.Table:
        return self.spark.read.format("delta").option("versionAsOf", version).load(self.uri(name)).toArrow()

    def version(self, name: str) -> int:
        return int(self.spark.sql(f"DESCRIBE HISTORY {self._ref(name)} LIMIT 1").collect()[0]["version"])

    def optimize(self, name: str) -> dict[str, Any]:
        self.spark.sql(f"OPTIMIZE {self._ref(name)}").collect()
        return {}

    def vacuum(self, name: str, retention_hours: int) -> int:
        return len(self.spark.sql(f"VACUUM {self._ref(name)} RETAIN {retention_hours} HOURS").collect())

    def delete(self, name: str, where: str) -> int:
        rows = self.spark.sql(f"DELETE FROM {self._ref(name)} WHERE {where}").collect()
        return int(rows[0][0]) if rows else 0
