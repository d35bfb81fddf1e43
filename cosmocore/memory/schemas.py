"""The four Delta tables of a CosmoCore store: their schemas, version stamp and row conformance.

``episodes`` (one row per attempt/turn), ``evaluations`` (held-out metrics), ``labels`` (human
"scold" labels) and ``buffer_state`` (the replay index checkpoint) are declared once here, so the
store, its backends and the replay buffer's checkpoint agree on one definition. Each table is
stamped with ``SCHEMA_VERSION`` as a table property, so a store written by a newer release is
refused with a clear message (``StoreError``) instead of being misread. Timestamps are UTC
``timestamp``, not ``timestamp_ntz``, to stay at the minimal Delta protocol every engine reads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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

#: Columns added after schema version 1 was first written: an older table gains them (null in
#: its old rows) when opened, a metadata-only commit; every other missing column is refused.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"evaluations": ("sample", "group")}


class StoreError(ValueError):
    """The URI is not a usable CosmoCore store (missing, foreign, or newer schema)."""


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

