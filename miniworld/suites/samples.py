"""Sample data a user points ``cosmocore tasks import --sample ARG=FILE`` at: its schema and rows.

Read with pyarrow in the CLI's process. That is safe where running the user's *code* is not:
a CSV, JSON or Parquet file is data, and it is the user's own. pyarrow (not pandas) infers the
types, because it keeps integer columns with nulls as integers and recognises ISO dates.
"""
from __future__ import annotations

from pathlib import Path

MAX_ROWS = 50  # kept verbatim in the typical dataset; more would only slow every episode


def read_sample(path: Path) -> tuple[str, list[tuple]]:
    """(DDL schema, first rows) of a .csv, .json/.jsonl or .parquet file; ValueError says why not."""
    table = _read(Path(path))
    if table.num_columns == 0:
        raise ValueError("the file has no columns")
    columns = [f"{_quote(f.name)} {_ddl_type(f.type, f.name)}" for f in table.schema]
    head = table.slice(0, MAX_ROWS)
    rows = [tuple(r[name] for name in table.column_names) for r in head.to_pylist()]
    return ", ".join(columns), rows


def _read(path: Path):
    import pyarrow as pa

    if not path.is_file():
        raise ValueError("no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            from pyarrow import csv

            return csv.read_csv(path, convert_options=csv.ConvertOptions(strings_can_be_null=True))
        if suffix in (".json", ".jsonl", ".ndjson"):
            from pyarrow import json

            try:
                return json.read_json(path)  # newline-delimited records
            except pa.ArrowInvalid:
                import pandas as pd

                return pa.Table.from_pandas(pd.read_json(path), preserve_index=False)  # one JSON array
        if suffix == ".parquet":
            from pyarrow import parquet

            return parquet.read_table(path)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise ValueError(f"cannot read it: {str(exc).splitlines()[0]}") from None
    raise ValueError("unknown sample format (use .csv, .json, .jsonl or .parquet)")


def _quote(name: str) -> str:
    return name if name.isidentifier() else f"`{name}`"


def _ddl_type(kind, column: str) -> str:
    """Spark DDL for an Arrow type (the ones a sample file realistically holds)."""
    import pyarrow.types as t

    if t.is_boolean(kind):
        return "BOOLEAN"
    if t.is_int8(kind) or t.is_int16(kind) or t.is_int32(kind) or t.is_uint8(kind) or t.is_uint16(kind):
        return "INT"
    if t.is_integer(kind):
        return "BIGINT"
    if t.is_floating(kind):
        return "DOUBLE"
    if t.is_string(kind) or t.is_large_string(kind) or t.is_null(kind):
        return "STRING"
    if t.is_date(kind):
        return "DATE"
    if t.is_timestamp(kind):
        return "TIMESTAMP"
    if t.is_list(kind) or t.is_large_list(kind):
        return f"ARRAY<{_ddl_type(kind.value_type, column)}>"
    raise ValueError(f"column {column!r} has Arrow type {kind}, which Mini-World cannot use as input")
