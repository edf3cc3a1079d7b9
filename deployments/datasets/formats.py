"""Dataset file formats: which one a name has (its extension) and how its bytes become an Arrow table (Parquet,
JSONL or a JSON array, CSV/TSV). Shared by every source kind (sources.py, huggingface.py)."""

from __future__ import annotations

import io
import json
import urllib.parse
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq

from deployments.datasets.rows import rows_to_table
from serve.errors import InvalidRequestError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".csv": "csv", ".tsv": "tsv"}


def bad_source(msg: str) -> InvalidRequestError:
    return InvalidRequestError(msg, param="source.uri", code="invalid_source")


def format_of(name: str) -> str:
    fmt = FORMATS.get(Path(urllib.parse.urlparse(name).path or name).suffix.lower())
    if fmt is None:
        raise bad_source(f"cannot tell the format of {name!r}: use a .parquet, .jsonl, .json or .csv file")
    return fmt


def parse_bytes(data: bytes, fmt: str) -> pa.Table:
    try:
        if fmt == "parquet":
            return pq.read_table(io.BytesIO(data))
        if fmt in ("csv", "tsv"):
            opts = pyarrow.csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
            return pyarrow.csv.read_csv(io.BytesIO(data), parse_options=opts)
        return rows_to_table(_json_rows(data.decode("utf-8")))
    except (pa.ArrowException, UnicodeDecodeError, OSError) as e:
        raise bad_source(f"cannot read the source as {fmt}: {e}") from None


def _json_rows(text: str) -> list[dict]:
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            rows = json.loads(stripped)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise bad_source(f"the source is not valid JSON lines: {e}") from None
    if not all(isinstance(r, dict) for r in rows):
        raise bad_source("every JSON row must be an object")
    return rows
