"""Load a dataset source URI into an Arrow table: Parquet, JSONL (or a JSON array) and CSV.

URIs: a local path or file://, data: (base64 or percent-encoded), http(s)://, huggingface://datasets/<repo>
(huggingface.py), and object stores that pyarrow.fs knows (s3://, gs://, hdfs://, ...). The format comes from the
file extension or the data: media type.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.parse
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.fs
import pyarrow.parquet as pq

from deployments.datasets.rows import rows_to_table
from serve.config import HuggingFaceSourceConfig
from serve.errors import InvalidRequestError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".csv": "csv", ".tsv": "tsv"}


def _bad(msg: str) -> InvalidRequestError:
    return InvalidRequestError(msg, param="source.uri", code="invalid_source")


def format_of(name: str) -> str:
    fmt = FORMATS.get(Path(urllib.parse.urlparse(name).path or name).suffix.lower())
    if fmt is None:
        raise _bad(f"cannot tell the format of {name!r}: use a .parquet, .jsonl, .json or .csv file")
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
        raise _bad(f"cannot read the source as {fmt}: {e}") from None


def _json_rows(text: str) -> list[dict]:
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            rows = json.loads(stripped)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise _bad(f"the source is not valid JSON lines: {e}") from None
    if not all(isinstance(r, dict) for r in rows):
        raise _bad("every JSON row must be an object")
    return rows


def _data_uri(uri: str) -> tuple[bytes, str]:
    head, sep, payload = uri[5:].partition(",")
    if not sep:
        raise _bad("a data: URI needs a ',' before its payload")
    parts = head.split(";")
    mime = parts[0].lower()
    try:
        data = base64.b64decode(payload, validate=True) if "base64" in parts[1:] else \
            urllib.parse.unquote_to_bytes(payload)
    except ValueError as e:
        raise _bad(f"the data: URI payload is not valid base64: {e}") from None
    for key, fmt in (("parquet", "parquet"), ("csv", "csv"), ("tab-separated", "tsv"), ("json", "jsonl")):
        if key in mime:
            return data, fmt
    raise _bad(f"data: URI media type {mime!r} is not supported (text/csv, application/jsonl, application/parquet)")


def load_uri(uri: str, allow_local_files: bool = True, timeout_s: float = 60,
             huggingface: HuggingFaceSourceConfig | None = None) -> pa.Table:
    """The table behind `uri`, read now (the dataset keeps its own copy: later changes to the source don't show).
    `huggingface`: how to read huggingface:// sources (None: refused)."""
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme == "data":
        return parse_bytes(*_data_uri(uri))
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri, timeout=timeout_s) as resp:  # noqa: S310 (scheme checked)
                return parse_bytes(resp.read(), format_of(uri))
        except OSError as e:
            raise _bad(f"cannot fetch {uri}: {e}") from None
    if scheme in ("", "file"):
        if not allow_local_files:
            raise _bad("local file sources are disabled on this server (datasetio.allow_local_files)")
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path) if scheme == "file" else uri).expanduser()
        if not path.is_file():
            raise _bad(f"no such file: {path}")
        return parse_bytes(path.read_bytes(), format_of(path.name))
    if scheme == "huggingface":
        from deployments.datasets.huggingface import load_hf

        return load_hf(uri, huggingface or HuggingFaceSourceConfig(enabled=False))
    if scheme in ("hf", "lsfs"):
        raise _bad(f"{scheme}:// sources are not supported here; use huggingface://datasets/<owner>/<name>?split=..., "
                   "a file, data: or http(s) URI")
    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
        with fs.open_input_file(path) as f:
            return parse_bytes(f.read(), format_of(path))
    except (pa.ArrowException, OSError) as e:
        raise _bad(f"cannot read {uri}: {e}") from None
