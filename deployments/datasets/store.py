"""The dataset service: Llama Stack datasets as Parquet parts in the blob store, their registry in SQL.

A dataset is a blob prefix (`datasets/<storage>/`) of immutable Parquet parts: registration writes part 0 from the
source, every append writes one more part atomically (whole or not at all, see BlobStore.put), so an append is
durable when it returns and a reader never sees half of one. Parts sort by name (nanosecond time first), which is
row order. With the default blob store the parts lie where they always did, under <data_dir>/datasets/.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from deployments.datasets.rows import rows_to_table, table_to_rows, unify
from deployments.datasets.sources import load_uri
from deployments.datasets.tables import datasets
from serve.config import HuggingFaceSourceConfig
from serve.errors import ConflictError, InvalidRequestError, NotFoundError
from serve.ids import new_id
from serve.protocol.datasets import AppendRowsRequest, RegisterDatasetRequest
from serve.storage import BlobStore, Database
from serve.storage.sql import owned, owner

# The DatasetIO providers as GET /v1/providers lists them (Llama Stack's ids). Every dataset is stored here as
# Parquet parts; its provider says where it came from, as Llama Stack infers it from the source: a huggingface://
# URI is the `huggingface` provider's, anything else `localfs`'s. Nothing stores the id, so no row needs migrating
# (datasets registered when this provider was called `parquet` now show `localfs`).
LOCALFS = "localfs"
HUGGINGFACE = "huggingface"


def provider_of(source: dict[str, Any]) -> str:
    uri = source.get("uri") if source.get("type") == "uri" else None
    return HUGGINGFACE if isinstance(uri, str) and uri.lower().startswith("huggingface://") else LOCALFS


def dataset_object(row: Any) -> dict[str, Any]:
    return {"identifier": row.id, "provider_resource_id": row.id, "provider_id": provider_of(row.source),
            "type": "dataset", "purpose": row.purpose, "source": row.source, "metadata": row.metadata or {}}


class DatasetService:
    def __init__(self, db: Database, blobs: BlobStore, allow_local_files: bool = True,
                 huggingface: HuggingFaceSourceConfig | None = None):
        self.db = db
        self.blobs = blobs
        self.allow_local_files = allow_local_files
        self.huggingface = huggingface  # how huggingface:// sources are read (None: refused)
        self._part_meta: dict[str, pq.FileMetaData] = {}  # parts never change: their footers are cached

    # ---- registry ----------------------------------------------------------------------------------------------

    def _row(self, dataset_id: str) -> Any:
        return self.db.row_or_raise(datasets, dataset_id,
            NotFoundError(f"Dataset '{dataset_id}' not found", param="dataset_id", code="dataset_not_found"))

    def register(self, req: RegisterDatasetRequest) -> dict[str, Any]:
        dataset_id = req.dataset_id or new_id("dataset", "-")
        if req.source.type == "uri":
            table = load_uri(req.source.uri, self.allow_local_files, huggingface=self.huggingface)
        else:
            table = rows_to_table(req.source.rows)
        storage = uuid.uuid4().hex
        self._write_part(storage, table)  # data first: a registered dataset never lacks its rows
        try:
            with self.db.begin() as c:
                c.execute(datasets.insert().values(id=dataset_id, owner=owner(), purpose=req.purpose,
                                                   source=req.source.model_dump(), metadata=req.metadata or {},
                                                   storage=storage, created_at=int(time.time())))
        except IntegrityError:
            self.blobs.delete_prefix(_prefix(storage))
            raise ConflictError(f"Dataset '{dataset_id}' already exists", param="dataset_id",
                                code="dataset_exists") from None
        return self.get(dataset_id)

    def get(self, dataset_id: str) -> dict[str, Any]:
        return dataset_object(self._row(dataset_id))

    def list(self) -> list[dict[str, Any]]:
        with self.db.connect() as c:
            rows = c.execute(sa.select(datasets).where(owned(datasets)).order_by(datasets.c.seq))
            return [dataset_object(r) for r in rows]

    def unregister(self, dataset_id: str) -> None:
        row = self._row(dataset_id)
        with self.db.begin() as c:
            c.execute(datasets.delete().where(datasets.c.id == dataset_id))
        self.blobs.delete_prefix(_prefix(row.storage))

    def check_storage(self) -> None:
        """Raises unless the database answers and the blob store can be written (health)."""
        self.db.ping()
        self.blobs.ping("datasets")

    # ---- rows --------------------------------------------------------------------------------------------------

    def _parts(self, storage: str) -> list[str]:
        prefix = _prefix(storage)
        return [k for k in self.blobs.list(prefix) if k[len(prefix):].startswith("part-") and k.endswith(".parquet")]

    def _write_part(self, storage: str, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.blobs.put(f"{_prefix(storage)}part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet",
                       sink.getvalue().to_pybytes())

    def _read(self, part: str) -> pa.BufferReader:
        return pa.BufferReader(self.blobs.get(part))

    def _meta(self, part: str) -> pq.FileMetaData:
        if part not in self._part_meta:
            self._part_meta[part] = pq.read_metadata(self._read(part))
        return self._part_meta[part]

    def _num_rows(self, part: str) -> int:
        return self._meta(part).num_rows

    def _schema(self, storage: str) -> pa.Schema:
        schemas = [self._meta(p).schema.to_arrow_schema() for p in self._parts(storage)]
        return pa.unify_schemas(schemas, promote_options="default")

    def iterrows(self, dataset_id: str, start_index: int | None, limit: int | None) -> dict[str, Any]:
        """One page of rows: `limit` None or -1 means all the rest. Llama Stack 0.2's PaginatedResponse shape."""
        storage = self._row(dataset_id).storage
        parts = self._parts(storage)
        total = sum(self._num_rows(p) for p in parts)
        start = start_index or 0
        if start < 0 or start > total:
            raise InvalidRequestError(f"start_index {start} is out of range: the dataset has {total} rows",
                                      param="start_index")
        if limit is not None and limit < -1:
            raise InvalidRequestError("limit must be a positive number of rows, or -1 for all", param="limit")
        end = total if limit is None or limit == -1 else min(total, start + limit)
        tables, offset = [], 0
        for part in parts:
            n = self._num_rows(part)
            lo, hi = max(start - offset, 0), min(end - offset, n)
            if lo < hi:
                tables.append(pq.read_table(self._read(part)).slice(lo, hi - lo))
            offset += n
        schema = self._schema(storage)
        rows = table_to_rows(pa.concat_tables([t.cast(_widen(t.schema, schema)) for t in tables],
                                              promote_options="default")) if tables else []
        return {"data": rows, "has_more": end < total, "next_start_index": end if end < total else None}

    def append_rows(self, dataset_id: str, req: AppendRowsRequest) -> None:
        storage = self._row(dataset_id).storage
        schema = self._schema(storage)
        table = rows_to_table(req.rows, schema)
        unify(schema, table)
        self._write_part(storage, table)


def _prefix(storage: str) -> str:
    return f"datasets/{storage}/"


def _widen(schema: pa.Schema, full: pa.Schema) -> pa.Schema:
    """`schema` with each column typed as in the dataset's unified schema (a column all-null in one part)."""
    return pa.schema([full.field(f.name) if f.name in full.names else f for f in schema])
