"""Load a dataset source URI into an Arrow table: Parquet, JSONL (or a JSON array) and CSV.

URIs: a local path or file://, data: (base64 or percent-encoded), http(s)://, huggingface://datasets/<repo>
(huggingface.py), and object stores that pyarrow.fs knows (s3://, gs://, hdfs://, ...). The format comes from the
file extension or the data: media type.
"""

from __future__ import annotations

import base64
import urllib.parse
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.fs

from deployments.datasets.formats import bad_source as _bad
from deployments.datasets.formats import format_of, parse_bytes
from serve.config import HuggingFaceSourceConfig


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
