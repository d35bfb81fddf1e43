"""Delta trajectory store: the learner's durable memory.

Four Delta tables live under one store URI: ``episodes`` (one row per attempt/turn),
``evaluations`` (held-out metrics), ``labels`` (human "scold" labels) and ``buffer_state``
(the replay index checkpoint). Schemas are declared once below and stamped with
``SCHEMA_VERSION`` as a table property, so a store written by a newer release is refused
with a clear message instead of being misread.

Why Delta: appends are atomic commits, so a writer killed mid-append (SIGKILL included) leaves
the table readable with every committed batch intact, and the next run resumes from the table.
Appends are idempotent by key (``episode_id`` ...) through a MERGE with insert-when-not-matched;
concurrent rollout processes that race on a commit retry with jittered exponential back-off.
Tables are created at the minimal protocol (reader 1, writer 2: no deletion vectors, no
``timestamp_ntz``; timestamps are UTC ``timestamp``) so Spark, Databricks and delta-rs all read them.

Two backends give the same API and tables: ``deltalake`` (delta-rs, embedded, the default; any
URI delta-rs understands, with ``storage_options`` for object stores) and ``spark`` (Spark's
Delta writer on the active SparkSession, as on Databricks).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from cosmocore.memory.config import StoreConfig
from miniworld.checks import OUTCOMES  # one list of outcome names for the product

SCHEMA_VERSION = 1
SCHEMA_VERSION_KEY = "cosmocore.schemaVersion"
BINS: tuple[str, ...] = ("dream", "prune", "main")

_TS = pa.timestamp("us", tz="UTC")  # not timestamp_ntz: that needs a newer Delta protocol


def _req(name: str, typ: pa.DataType) -> pa.Field:
    return pa.field(name, typ, nullable=False)


EPISODES_SCHEMA = pa.schema(
    [
        _req("episode_id", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("arm", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("cycle", pa.int64()),
        pa.field("task_id", pa.string()),
        pa.field("family", pa.string()),
        pa.field("bug_class", pa.string()),
        pa.field("turn", pa.int32()),
        pa.field("prompt", pa.string()),
        pa.field("completion", pa.string()),
        pa.field("prompt_ids", pa.list_(pa.int32())),
        pa.field("completion_ids", pa.list_(pa.int32())),
        pa.field("behaviour_logprobs", pa.list_(pa.float32())),
        pa.field("entropy", pa.float64()),
        pa.field("outcome", pa.string()),
        pa.field("checks_passed", pa.int32()),
        pa.field("checks_total", pa.int32()),
        pa.field("reward", pa.float64()),
        pa.field("valence", pa.float64()),
        pa.field("arousal", pa.float64()),
        pa.field("td_error", pa.float64()),
        pa.field("priority", pa.float64()),
        pa.field("bin", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("created_at", _TS),
    ]
)

EVALUATIONS_SCHEMA = pa.schema(
    [
        _req("eval_id", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("arm", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("cycle", pa.int64()),
        pa.field("split", pa.string()),  # practice | dev | test (older stores: eval)
        pa.field("task_id", pa.string()),
        pa.field("family", pa.string()),
        pa.field("bug_class", pa.string()),
        pa.field("turn", pa.int32()),
        pa.field("sample", pa.int32()),  # 0: the greedy reply (k sampled replies: 0..k-1)
        pa.field("group", pa.string()),  # held-out rows: the bug class was practised by the run, or not
        pa.field("outcome", pa.string()),
        pa.field("checks_passed", pa.int32()),
        pa.field("checks_total", pa.int32()),
        pa.field("reward", pa.float64()),
        pa.field("entropy", pa.float64()),
        pa.field("model_version", pa.string()),
        pa.field("created_at", _TS),
    ]
)

#: Human labels. ``kind`` is "scold" (valence -1 unless given), "praise" (+1) or "valence".
LABELS_SCHEMA = pa.schema(
    [
        _req("label_id", pa.string()),
        _req("episode_id", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("valence", pa.float64()),
        pa.field("labeller", pa.string()),
        pa.field("note", pa.string()),
        pa.field("created_at", _TS),
    ]
)

#: Replay-index checkpoint: one row per episode the buffer has ever seen (status live, pruned or
#: evicted, so a rebuild neither resurrects a removed entry nor loses a new one) plus one
#: ``status == "meta"`` row whose ``meta`` column holds the buffer's scalar state as JSON.
BUFFER_STATE_SCHEMA = pa.schema(
    [
        _req("episode_id", pa.string()),
        _req("status", pa.string()),
        pa.field("seq", pa.int64()),
        pa.field("priority", pa.float64()),
        pa.field("td_error", pa.float64()),
        pa.field("valence", pa.float64()),
        pa.field("arousal", pa.float64()),
        pa.field("entropy", pa.float64()),
        pa.field("bin", pa.string()),
        pa.field("meta", pa.string()),
        pa.field("checkpoint_at", _TS),
    ]
)


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    key: str | None  # idempotency key; None: the table is overwritten as a whole


TABLES: dict[str, TableSpec] = {
    "episodes": TableSpec("episodes", EPISODES_SCHEMA, "episode_id"),
    "evaluations": TableSpec("evaluations", EVALUATIONS_SCHEMA, "eval_id"),
    "labels": TableSpec("labels", LABELS_SCHEMA, "label_id"),
    "buffer_state": TableSpec("buffer_state", BUFFER_STATE_SCHEMA, None),
}

#: Filters are (column, op, value) triples ANDed together; values become SQL literals.
Filter = tuple[str, str, Any]
_OPS = {"=", "==", "!=", "<", "<=", ">", ">=", "in", "not in"}


#: Columns added after schema version 1 was first written: an older table gains them (null in
#: its old rows) when opened, a metadata-only commit; every other missing column is refused.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"evaluations": ("sample", "group")}


class StoreError(ValueError):
    """The URI is not a usable CosmoCore store (missing, foreign, or newer schema)."""


class _Backend(Protocol):
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


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    raise ValueError(f"unsupported filter value {value!r}")


def _where(filters: Sequence[Filter] | None, schema: pa.Schema) -> str | None:
    """AND of (column, op, value) triples as SQL; columns are checked against the schema."""
    if not filters:
        return None
    parts = []
    for col, op, value in filters:
        if col not in schema.names:
            raise ValueError(f"filter on unknown column {col!r}")
        op = op.lower()
        if op not in _OPS:
            raise ValueError(f"unsupported filter operator {op!r}")
        if op in ("in", "not in"):
            values = list(value)
            if not values:
                parts.append("FALSE" if op == "in" else "TRUE")
                continue
            parts.append(f'"{col}" {op.upper()} ({", ".join(_literal(v) for v in values)})')
        else:
            parts.append(f'"{col}" {"=" if op == "==" else op} {_literal(value)}')
    return " AND ".join(parts)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def to_table(rows: Iterable[dict[str, Any]] | pa.Table, spec: TableSpec) -> pa.Table:
    """Rows (dicts or an Arrow table) -> an Arrow table of exactly ``spec.schema``.

    Missing nullable columns become nulls, ``created_at`` defaults to now (UTC), unknown columns
    and unknown outcome/bin names are refused (a typo would otherwise vanish silently), and rows
    repeating a key within the batch keep their first occurrence.
    """
    schema = spec.schema
    if isinstance(rows, pa.Table):
        extra = set(rows.column_names) - set(schema.names)
        if extra:
            raise ValueError(f"{spec.name}: unknown columns {sorted(extra)}")
        cols = []
        for f in schema:
            if f.name in rows.column_names:
                cols.append(rows.column(f.name).cast(f.type))
            else:
                cols.append(pa.nulls(rows.num_rows, f.type))
        table = pa.Table.from_arrays(cols, names=schema.names)
    else:
        rows = list(rows)
        extra = {k for r in rows for k in r} - set(schema.names)
        if extra:
            raise ValueError(f"{spec.name}: unknown columns {sorted(extra)}")
        table = pa.Table.from_pylist(rows, schema=schema)
    if "created_at" in schema.names:
        ts = table.column("created_at")
        if ts.null_count:
            table = table.set_column(
                schema.get_field_index("created_at"), "created_at", pc.fill_null(ts, pa.scalar(_now(), _TS))
            )
    for f in schema:
        if not f.nullable and table.column(f.name).null_count:
            raise ValueError(f"{spec.name}: column {f.name!r} must not be null")
    for col, allowed in (("outcome", OUTCOMES), ("bin", BINS)):
        if col in schema.names and table.num_rows:
            present = set(pc.unique(table.column(col).drop_null()).to_pylist())
            bad = present - set(allowed)
            if bad:
                raise ValueError(f"{spec.name}: unknown {col} values {sorted(bad)}; expected one of {allowed}")
    if spec.key is not None and table.num_rows:
        keys = table.column(spec.key)
        if pc.count_distinct(keys).as_py() != table.num_rows:
            first = pc.index_in(pc.unique(keys), keys)  # position of each key's first occurrence
            table = table.take(pc.array_take(first, pc.sort_indices(first)))
    # Non-nullable fields must be declared as such on the source of a MERGE as well.
    return table.cast(schema)


class Store:
    """The four CosmoCore Delta tables under one URI, on one backend.

    Open with ``Store.open(uri)``; a trainer calls ``append_episodes`` after each rollout
    (retries are safe: keys already present are skipped), reads batches back with
    ``read_episodes``, and checkpoints the replay index with ``save_buffer_state``.
    """

    def __init__(self, uri: str, backend: _Backend, cfg: StoreConfig) -> None:
        self.uri = uri
        self.backend = backend
        self.cfg = cfg

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        uri: str | os.PathLike[str],
        storage_options: dict[str, str] | None = None,
        backend: str = "deltalake",
        create: bool = True,
        config: StoreConfig | None = None,
        spark: Any = None,
    ) -> Store:
        """Open (and with ``create``, initialise) the store at ``uri``.

        Raises ``StoreError`` naming the URI when it is not a CosmoCore store (and ``create`` is
        false), holds a table with a foreign schema, or was written by a newer schema version.
        """
        cfg = config or StoreConfig()
        root = str(uri)
        if "://" not in root:
            if os.path.isfile(root):
                raise StoreError(f"{root}: is a file, not a CosmoCore store directory")
            root = os.path.abspath(root)
        if backend == "deltalake":
            be: _Backend = DeltaRsBackend(root, storage_options, cfg)
        elif backend == "spark":
            be = SparkBackend(root, cfg, spark)
        else:
            raise StoreError(f"{root}: unknown store backend {backend!r} (expected 'deltalake' or 'spark')")
        store = cls(root, be, cfg)
        store._check_or_create(create)
        return store

    def _check_or_create(self, create: bool) -> None:
        try:
            if "://" not in self.uri and os.path.isdir(os.path.join(self.uri, "_delta_log")):
                raise StoreError(f"{self.uri}: is a single Delta table, not a CosmoCore store (pass its parent?)")
            present = {name: self.backend.exists(name) for name in TABLES}
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - unreachable bucket, bad scheme ...
            raise StoreError(f"{self.uri}: cannot be read as a store ({type(exc).__name__}: {exc})") from exc
        if not present["episodes"] and not create:
            raise StoreError(f"{self.uri}: not a CosmoCore store (no Delta table 'episodes')")
        if not any(present.values()) and "://" not in self.uri and os.path.isdir(self.uri):
            # Creating tables among someone else's files mixes two things a later cleanup cannot
            # tell apart; an empty (or new) directory is what a store starts from.
            # (our own table names are not "other": a concurrent opener may be creating them)
            other = sorted(n for n in os.listdir(self.uri) if not n.startswith(".") and n not in TABLES)
            if other:
                raise StoreError(f"{self.uri}: not a CosmoCore store and not empty (holds "
                                 f"{', '.join(other[:3])}{', ...' if len(other) > 3 else ''}); "
                                 "give a new or empty directory")
        for name, spec in TABLES.items():
            if present[name]:
                self._check_table(spec)
            elif create:
                self.backend.create(name, spec.schema, {SCHEMA_VERSION_KEY: str(SCHEMA_VERSION)})

    def _check_table(self, spec: TableSpec) -> None:
        where = f"{self.uri}: table '{spec.name}'"
        raw = self.backend.properties(spec.name).get(SCHEMA_VERSION_KEY)
        if raw is None:
            raise StoreError(f"{where} is not a CosmoCore table (no {SCHEMA_VERSION_KEY} property)")
        try:
            version = int(raw)
        except ValueError:
            raise StoreError(f"{where} has an unreadable schema version {raw!r}") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{where} was written by schema version {version}; this release reads up to "
                f"{SCHEMA_VERSION}: upgrade cosmocore"
            )
        actual = self.backend.arrow_schema(spec.name)
        added = [f for f in spec.schema if f.name not in actual.names and f.name in ADDED_COLUMNS.get(spec.name, ())]
        if added:
            self.backend.add_columns(spec.name, added)
            actual = self.backend.arrow_schema(spec.name)
        for f in spec.schema:
            if f.name not in actual.names:
                raise StoreError(f"{where} has a foreign schema: column {f.name!r} is missing")
            got = actual.field(f.name).type
            if not _compatible(got, f.type):
                raise StoreError(f"{where} has a foreign schema: column {f.name!r} is {got}, expected {f.type}")

    # -- writing -------------------------------------------------------------------------------

    def _append(self, name: str, rows: Iterable[dict[str, Any]] | pa.Table) -> int:
        spec = TABLES[name]
        table = to_table(rows, spec)
        if table.num_rows == 0:
            return 0
        assert spec.key is not None
        return self.backend.insert_new(name, table, spec.key)

    def append_episodes(self, rows: Iterable[dict[str, Any]] | pa.Table) -> int:
        """Insert episodes whose ``episode_id`` is new; returns how many were inserted."""
        return self._append("episodes", rows)

    def append_evaluations(self, rows: Iterable[dict[str, Any]] | pa.Table) -> int:
        """Insert evaluation rows whose ``eval_id`` is new; returns how many were inserted."""
        return self._append("evaluations", rows)

    def append_labels(self, rows: Iterable[dict[str, Any]] | pa.Table) -> int:
        """Insert human labels whose ``label_id`` is new; a scold without valence means -1."""
        table = to_table(rows, TABLES["labels"])
        if table.num_rows:
            kind = table.column("kind")
            default = pc.if_else(pc.equal(kind, "praise"), 1.0, -1.0)
            filled = pc.coalesce(table.column("valence"), default)
            table = table.set_column(table.schema.get_field_index("valence"), "valence", filled)
        return self._append("labels", table)

    def save_buffer_state(self, table: pa.Table) -> int:
        """Replace the replay-index checkpoint atomically; returns the new table version."""
        self.backend.overwrite("buffer_state", to_table(table, TABLES["buffer_state"]))
        return self.backend.version("buffer_state")

    # -- reading -------------------------------------------------------------------------------

    def _read(
        self, name: str, filters: Sequence[Filter] | None, columns: Sequence[str] | None
    ) -> pa.Table:
        schema = TABLES[name].schema
        cols = list(columns) if columns else None
        for c in cols or ():
            if c not in schema.names:
                raise ValueError(f"{name}: unknown column {c!r}")
        out = self.backend.read(name, cols, _where(filters, schema))
        target = pa.schema([schema.field(c) for c in (cols or schema.names)])
        return out.select(target.names).cast(target)

    def read_episodes(
        self,
        filters: Sequence[Filter] | None = None,
        columns: Sequence[str] | None = None,
        episode_ids: Sequence[str] | None = None,
    ) -> pa.Table:
        """Episodes matching all ``filters`` ((column, op, value); ops = != < <= > >= in, not in)."""
        flt = list(filters or [])
        if episode_ids is not None:
            flt.append(("episode_id", "in", list(episode_ids)))
        return self._read("episodes", flt, columns)

    def read_evaluations(self, filters: Sequence[Filter] | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        return self._read("evaluations", filters, columns)

    def discard_after(self, run_id: str, cycle: int) -> dict[str, int]:
        """Delete a run's episodes and evaluations of cycles after ``cycle`` (its checkpoint's).

        A resumed run redoes those cycles with the same episode ids; an idempotent append would
        keep the killed run's rows, which match the redo only if generation is bit-for-bit
        deterministic (a timeout under load or a GPU kernel is not): drop them and redo whole."""
        where = _where([("run_id", "=", run_id), ("cycle", ">", int(cycle))], TABLES["episodes"].schema)
        return {name: self.backend.delete(name, where) for name in ("episodes", "evaluations")}

    def read_labels(self, filters: Sequence[Filter] | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        return self._read("labels", filters, columns)

    def load_buffer_state(self, version: int | None = None) -> pa.Table | None:
        """The latest replay-index checkpoint (or the one at table ``version``, the one a trainer
        checkpoint names), or None when none was saved."""
        if version is None:
            table = self._read("buffer_state", None, None)
        else:
            schema = TABLES["buffer_state"].schema
            table = self.backend.read_version("buffer_state", version).select(schema.names).cast(schema)
        return table if table.num_rows else None

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {name: self.backend.read(name, [TABLES[name].schema.names[0]], None).num_rows for name in TABLES}

    def versions(self) -> dict[str, int]:
        """Delta version of each table (time travel / audit)."""
        return {name: self.backend.version(name) for name in TABLES}

    # -- maintenance ---------------------------------------------------------------------------

    def optimize(self) -> dict[str, dict[str, Any]]:
        """Compact small files (one per append) in every table."""
        return {name: self.backend.optimize(name) for name in TABLES}

    def vacuum(self, retention_hours: int | None = None) -> dict[str, int]:
        """Delete files no version younger than the retention still references."""
        hours = self.cfg.vacuum_retention_hours if retention_hours is None else retention_hours
        return {name: self.backend.vacuum(name, hours) for name in TABLES}


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    """Same logical type, tolerating the string/string_view and large-list spellings engines use."""
    def norm(t: pa.DataType) -> str:
        s = str(t).replace("<element: ", "<").replace("<item: ", "<")  # list child names differ
        return s.replace("string_view", "string").replace("large_string", "string").replace("large_list", "list")

    return norm(got) == norm(want)
