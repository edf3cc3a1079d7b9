"""JSON rows <-> Arrow tables.

Parquet columns need one type, JSON rows don't have one (a `content` may be a string in one message and a list of
parts in the next). Columns that hold objects or lists, or mix types, are stored as JSON text and marked in the
field metadata, so any JSON row round-trips exactly; columns that came typed (Parquet, CSV) keep their types.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from serve.errors import InvalidRequestError

JSON_FIELD = {b"stackserve.json": b"1"}


def is_json_field(field: pa.Field) -> bool:
    return bool(field.metadata) and field.metadata.get(b"stackserve.json") == b"1"


def _json_array(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else json.dumps(v) for v in values], type=pa.string())


def _infer(values: list[Any]) -> pa.Array:
    if any(isinstance(v, dict | list) for v in values):
        return _json_array(values)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed scalars (1 and "a"), ints past int64
        return _json_array(values)


def rows_to_table(rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """Rows -> a table. Columns already in `schema` keep its types (a value that doesn't fit is a 400)."""
    names: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidRequestError(f"rows.{i} is not an object", param=f"rows.{i}")
        names.update(dict.fromkeys(row))
    arrays, fields = [], []
    for name in names:
        values = [row.get(name) for row in rows]
        known = schema.field(name) if schema is not None and name in schema.names else None
        if known is not None and is_json_field(known):
            arr, meta = _json_array(values), JSON_FIELD
        elif known is not None and not pa.types.is_null(known.type):
            try:
                arr, meta = pa.array(values, type=known.type), known.metadata
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
                raise InvalidRequestError(f"column '{name}' holds {known.type} values; the new rows don't fit: {e}",
                                          param="rows") from None
        else:
            arr = _infer(values)
            meta = JSON_FIELD if pa.types.is_string(arr.type) and _was_json(values) else None
        arrays.append(arr)
        fields.append(pa.field(name, arr.type, metadata=meta))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _was_json(values: list[Any]) -> bool:
    """True when the column was encoded as JSON text (some value was not a plain string)."""
    return any(v is not None and not isinstance(v, str) for v in values)


def table_to_rows(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    json_cols = [f.name for f in table.schema if is_json_field(f)]
    for row in rows:
        for name in json_cols:
            if row.get(name) is not None:
                row[name] = json.loads(row[name])
    return rows


def unify(schema: pa.Schema, table: pa.Table) -> None:
    """400 unless `table` can follow `schema` (new columns are fine; a column may not change its type)."""
    try:
        pa.unify_schemas([schema, table.schema], promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InvalidRequestError(f"the rows don't match the dataset's columns: {e}", param="rows") from None
