"""Delta trajectory store: the learner's durable memory.

Four Delta tables live under one store URI (their schemas and versioning: ``schemas``), on one
of two engines (``backends``). ``Store`` opens and checks them, appends, reads with simple
filters, and maintains them.

Why Delta: appends are atomic commits, so a writer killed mid-append (SIGKILL included) leaves
the table readable with every committed batch intact, and the next run resumes from the table.
Appends are idempotent by key (``episode_id`` ...) through a MERGE with insert-when-not-matched;
concurrent rollout processes that race on a commit retry with jittered exponential back-off.
Tables are created at the minimal protocol (reader 1, writer 2: no deletion vectors, no
``timestamp_ntz``; timestamps are UTC ``timestamp``) so Spark, Databricks and delta-rs all read them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cosmocore.memory.backends import Backend, DeltaRsBackend, SparkBackend
from cosmocore.memory.config import StoreConfig
from cosmocore.memory.schemas import (
    ADDED_COLUMNS,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    TABLES,
    StoreError,
    TableSpec,
    to_table,
)

#: Filters are (column, op, value) triples ANDed together; values become SQL literals.
Filter = tuple[str, str, Any]
_OPS = {"=", "==", "!=", "<", "<=", ">", ">=", "in", "not in"}


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


class Store:
    """The four CosmoCore Delta tables under one URI, on one backend.

    Open with ``Store.open(uri)``; a trainer calls ``append_episodes`` after each rollout
    (retries are safe: keys already present are skipped), reads batches back with
    ``read_episodes``, and checkpoints the replay index with ``save_buffer_state``.
    """

    def __init__(self, uri: str, backend: Backend, cfg: StoreConfig) -> None:
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
            be: Backend = DeltaRsBackend(root, storage_options, cfg)
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
