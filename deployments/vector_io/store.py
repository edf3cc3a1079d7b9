"""The vector-store service: OpenAI vector stores (files attached, chunked, embedded, indexed, searched).

Plain Python over the storage layer; embeddings come through an injected async `embed(model_id, texts)`.
Blocking work (SQL, extraction, chunking, FAISS) runs in worker threads so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from deployments.vector_io.ann_builder import AnnBuilder
from deployments.vector_io.bm25 import DEFAULT_LANGUAGE, check_language
from deployments.vector_io.chunking import chunk_text, resolve_chunking
from deployments.vector_io.extract import UnsupportedFileError, extract_text
from deployments.vector_io.files import FileService
from deployments.vector_io.filters import matches, normalize_filter, validate_filter
from deployments.vector_io.index import VectorStoreIndex, reciprocal_rank_fusion
from deployments.vector_io.llama_stack import given_embedding, openai_attributes, search_attributes
from deployments.vector_io.tables import chunks, file_batches, vector_store_files, vector_stores
from serve.errors import InvalidRequestError, NotFoundError, to_api_error
from serve.ids import new_id
from serve.pagination import paginate
from serve.protocol.vector_io import (
    AttachFileRequest,
    CreateVectorStoreRequest,
    FileBatchRequest,
    SearchRequest,
    UpdateVectorStoreRequest,
)
from serve.storage import Database
from serve.storage.leases import renew_while_held, sweep_forever
from serve.storage.sql import owned, owner
from serve.telemetry.metrics import observe_search
from serve.telemetry.tracing import traced

logger = logging.getLogger("stackserve.vector_io")

Embed = Callable[[str, list[str]], Awaitable[np.ndarray]]
TOUCH_EVERY_S = 60.0  # searches write a store's last_active_at at most this often per replica


@dataclass
class EmbeddingModelInfo:
    model_id: str
    dimension: int
    max_tokens: int
    tokenizer: Any


def _now() -> int:
    return int(time.time())


def _no_store(store_id: str) -> NotFoundError:
    return NotFoundError(f"No vector store with id '{store_id}' found", param="vector_store_id",
                         code="vector_store_not_found")


class VectorStoreService:
    def __init__(self, db: Database, files: FileService, embed: Embed, models: dict[str, EmbeddingModelInfo],
                 default_model: str, index_config: dict[str, Any], max_concurrent_ingests: int = 8,
                 runner: str | None = None, lease_s: float = 30.0, attach_wait_s: float = 0.0,
                 touch_every_s: float = TOUCH_EVERY_S, embed_queries: Embed | None = None,
                 builder: AnnBuilder | None = None):
        """`embed` embeds chunks (the deployment batches them across files), `embed_queries` search queries (batched
        across concurrent searches; default `embed`); `builder` builds approximate indexes in the background and
        keeps their snapshots (None: stores are searched exactly)."""
        self.db = db
        self.embed_queries = embed_queries or embed
        self.builder = builder
        self.touch_every_s = touch_every_s
        self.attach_wait_s = attach_wait_s
        self.runner = runner or f"vector-io-{uuid.uuid4().hex[:12]}"
        self.lease_s = lease_s
        self.files = files
        self.embed = embed
        self.models = models
        self.default_model = default_model
        self.index_config = index_config
        self.indexes: dict[str, VectorStoreIndex] = {}
        self._touched: dict[str, float] = {}  # store id -> time.monotonic() of this replica's last search touch
        self._ingest_slots = asyncio.Semaphore(max_concurrent_ingests)
        self._tasks: set[asyncio.Task] = set()

    # ---- SQL helpers (blocking) -----------------------------------------------------------------------------

    def _store_row(self, store_id: str) -> Any:
        return self.db.row_or_raise(vector_stores, store_id, _no_store(store_id))

    def _file_row(self, store_id: str, file_id: str) -> Any:
        self._store_row(store_id)  # the caller's store (others' are 404)
        with self.db.connect() as c:
            row = c.execute(sa.select(vector_store_files).where(
                vector_store_files.c.vector_store_id == store_id, vector_store_files.c.file_id == file_id)).first()
        if row is None:
            raise NotFoundError(f"File '{file_id}' is not in vector store '{store_id}'", param="file_id",
                                code="file_not_found")
        return row

    def _store_object(self, row: Any) -> dict[str, Any]:
        with self.db.connect() as c:
            counts = dict(c.execute(sa.select(vector_store_files.c.status, sa.func.count())
                                    .where(vector_store_files.c.vector_store_id == row.id)
                                    .group_by(vector_store_files.c.status)).all())
            usage = c.execute(sa.select(sa.func.coalesce(sa.func.sum(vector_store_files.c.usage_bytes), 0))
                              .where(vector_store_files.c.vector_store_id == row.id)).scalar()
        fc = {k: counts.get(k, 0) for k in ("in_progress", "completed", "failed", "cancelled")}
        fc["total"] = sum(fc.values())
        return {"id": row.id, "object": "vector_store", "created_at": row.created_at, "name": row.name,
                "usage_bytes": int(usage), "file_counts": fc,
                "status": "in_progress" if fc["in_progress"] else "completed",
                "expires_after": row.expires_after, "expires_at": None, "last_active_at": row.last_active_at,
                "metadata": row.metadata or {},
                # Llama Stack extensions
                "embedding_model": row.embedding_model, "embedding_dimension": row.embedding_dimension,
                "provider_id": row.provider_id}

    @staticmethod
    def _file_object(row: Any) -> dict[str, Any]:
        return {"id": row.file_id, "object": "vector_store.file", "usage_bytes": row.usage_bytes,
                "created_at": row.created_at, "vector_store_id": row.vector_store_id, "status": row.status,
                "last_error": row.last_error, "chunking_strategy": row.chunking, "attributes": row.attributes or {}}

    def _bump(self, conn, store_id: str, column: str | None) -> bool:
        """Increment a version counter (None: none, only take the lock; False if the store is gone). Writers of a
        store's files and chunks call this first in their transaction: the row lock it takes serialises them per
        store on PostgreSQL as on sqlite, so chunk `seq`s commit in increasing order (index sync reads
        `seq > last_seq` and would skip a chunk committed after a higher one) and concurrent attaches of one file
        replace each other cleanly."""
        values: dict[str, Any] = {"last_active_at": _now()}
        if column is not None:
            values[column] = getattr(vector_stores.c, column) + 1
        return conn.execute(vector_stores.update().where(vector_stores.c.id == store_id).values(values)).rowcount > 0

    # ---- stores -----------------------------------------------------------------------------------------------

    def _model(self, model_id: str | None) -> EmbeddingModelInfo:
        mid = model_id or self.default_model
        if mid not in self.models:
            raise InvalidRequestError(f"unknown embedding model '{mid}' (served: {', '.join(self.models)})",
                                      param="embedding_model")
        return self.models[mid]

    async def create_store(self, req: CreateVectorStoreRequest, store_id: str | None = None) -> dict[str, Any]:
        model = self._model(req.embedding_model)
        if req.embedding_dimension is not None and req.embedding_dimension != model.dimension:
            raise InvalidRequestError(f"{model.model_id} produces {model.dimension}-dimensional vectors",
                                      param="embedding_dimension")
        for fid in req.file_ids:
            await asyncio.to_thread(self.files.get, fid)  # 404 before anything is created
        chunking = resolve_chunking(req.chunking_strategy, model.max_tokens)
        index_cfg = {**self.index_config, **(req.index or {})}
        if index_cfg.get("type") not in ("flat", "ivf", "hnsw"):
            raise InvalidRequestError("index.type must be flat, ivf or hnsw", param="index.type")
        try:
            check_language(index_cfg.get("keyword_language", DEFAULT_LANGUAGE))
        except ValueError as e:
            raise InvalidRequestError(str(e), param="index.keyword_language") from None
        sid = store_id or new_id("vs")

        def insert() -> None:
            try:
                with self.db.begin() as c:
                    c.execute(vector_stores.insert().values(
                        id=sid, owner=owner(), name=req.name, created_at=_now(), last_active_at=_now(),
                        metadata=req.metadata or {}, expires_after=req.expires_after, embedding_model=model.model_id,
                        embedding_dimension=model.dimension, chunking=chunking, index_config=index_cfg,
                        provider_id=req.provider_id or "faiss", add_version=0, del_version=0))
            except sa.exc.IntegrityError:
                from serve.errors import ConflictError

                raise ConflictError(f"vector store '{sid}' already exists", param="vector_store_id") from None

        await asyncio.to_thread(insert)
        await self._await_ingestions([await self._attach(sid, AttachFileRequest(
            file_id=fid, chunking_strategy=req.chunking_strategy)) for fid in req.file_ids])
        return await self.get_store(sid)

    async def get_store(self, store_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self._store_object(self._store_row(store_id)))

    async def list_stores(self, after: str | None, before: str | None, limit: int, order: str) -> dict[str, Any]:
        def run() -> list[dict]:
            with self.db.connect() as c:
                rows = list(c.execute(sa.select(vector_stores).where(owned(vector_stores))
                                      .order_by(vector_stores.c.seq)))
            return [self._store_object(r) for r in rows]

        return paginate(await asyncio.to_thread(run), after=after, before=before, limit=limit, order=order)

    async def update_store(self, store_id: str, req: UpdateVectorStoreRequest) -> dict[str, Any]:
        def run() -> None:
            self._store_row(store_id)
            values: dict[str, Any] = {"last_active_at": _now()}
            for field in ("name", "metadata", "expires_after"):
                if field in req.model_fields_set:
                    values[field] = getattr(req, field)
            with self.db.begin() as c:
                c.execute(vector_stores.update().where(vector_stores.c.id == store_id).values(values))

        await asyncio.to_thread(run)
        return await self.get_store(store_id)

    async def delete_store(self, store_id: str) -> dict[str, Any]:
        def run() -> None:
            self._store_row(store_id)
            with self.db.begin() as c:
                c.execute(chunks.delete().where(chunks.c.vector_store_id == store_id))
                c.execute(vector_store_files.delete().where(vector_store_files.c.vector_store_id == store_id))
                c.execute(file_batches.delete().where(file_batches.c.vector_store_id == store_id))
                c.execute(vector_stores.delete().where(vector_stores.c.id == store_id))

        await asyncio.to_thread(run)
        self.indexes.pop(store_id, None)
        if self.builder is not None:
            await asyncio.to_thread(self.builder.drop, store_id)
        return {"id": store_id, "object": "vector_store.deleted", "deleted": True}

    # ---- files in stores ------------------------------------------------------------------------------------

    async def attach_file(self, store_id: str, req: AttachFileRequest) -> dict[str, Any]:
        """Attach a file and answer with its state once ingested, or in_progress after attach_wait_s."""
        await self._await_ingestions([await self._attach(store_id, req)])
        return await self.get_file(store_id, req.file_id)

    async def _await_ingestions(self, tasks: list[asyncio.Task | None]) -> None:
        """Wait up to attach_wait_s (in all) for these ingestions; past it they go on in the background, leases and
        all. Each ends by writing its file's final status, which the caller reads next."""
        pending = [t for t in tasks if t is not None and not t.done()]
        if pending and self.attach_wait_s > 0:
            await asyncio.wait(pending, timeout=self.attach_wait_s)

    async def _attach(self, store_id: str, req: AttachFileRequest, batch_id: str | None = None) -> asyncio.Task | None:
        """Store the attachment (replacing an earlier one of the file) and start its ingestion: the ingestion's task."""
        store = await asyncio.to_thread(self._store_row, store_id)
        await asyncio.to_thread(self.files.get, req.file_id)
        model = self._model(store.embedding_model)
        chunking = (resolve_chunking(req.chunking_strategy, model.max_tokens) if req.chunking_strategy
                    else store.chunking)

        def insert() -> int:
            with self.db.begin() as c:
                if not self._bump(c, store_id, None):  # the store's row lock (see _bump)
                    raise _no_store(store_id)
                c.execute(vector_store_files.delete().where(vector_store_files.c.vector_store_id == store_id,
                                                            vector_store_files.c.file_id == req.file_id))
                if c.execute(chunks.delete().where(chunks.c.vector_store_id == store_id,
                                                   chunks.c.file_id == req.file_id)).rowcount:
                    # re-attaching replaced the file's old chunks: indexes rebuild. A first attach deletes
                    # nothing and leaves them (and their approximate index) as they are.
                    self._bump(c, store_id, "del_version")
                return c.execute(vector_store_files.insert().values(
                    vector_store_id=store_id, file_id=req.file_id, created_at=_now(), status="in_progress",
                    last_error=None, attributes=req.attributes or {}, chunking=chunking, usage_bytes=0,
                    batch_id=batch_id, runner=self.runner, lease_until=time.time() + self.lease_s,
                )).inserted_primary_key[0]

        attachment = await asyncio.to_thread(insert)
        return self._start_ingest(store_id, req.file_id, chunking, model, attachment)

    def _start_ingest(self, store_id: str, file_id: str, chunking: dict, model: EmbeddingModelInfo,
                      attachment: int) -> asyncio.Task:
        task = asyncio.create_task(self._ingest(store_id, file_id, chunking, model, attachment))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- ingestion leases: a replica that dies mid-ingestion leaves in_progress rows; others take them over ------

    def _renew(self, attachment: int) -> bool:
        with self.db.begin() as c:
            return c.execute(vector_store_files.update().where(
                vector_store_files.c.seq == attachment, vector_store_files.c.runner == self.runner,
                vector_store_files.c.status == "in_progress").values(
                lease_until=time.time() + self.lease_s)).rowcount == 1

    def _claim_orphans(self) -> list[Any]:
        """Take over the in_progress files whose lease ran out: each is claimed by one replica (a conditional
        UPDATE), and its new runner is the only one whose chunks will be kept."""
        now, claimed = time.time(), []
        with self.db.connect() as c:
            rows = list(c.execute(sa.select(vector_store_files, vector_stores.c.embedding_model).join(
                vector_stores, vector_stores.c.id == vector_store_files.c.vector_store_id).where(
                vector_store_files.c.status == "in_progress", vector_store_files.c.lease_until < now)))
        for row in rows:
            with self.db.begin() as c:
                if c.execute(vector_store_files.update().where(
                        vector_store_files.c.seq == row.seq, vector_store_files.c.status == "in_progress",
                        vector_store_files.c.lease_until < now).values(
                        runner=self.runner, lease_until=time.time() + self.lease_s)).rowcount == 1:
                    claimed.append(row)
        return claimed

    async def resume_orphans(self) -> int:
        """Ingest again every file a dead replica left in progress; the number taken over."""
        rows = await asyncio.to_thread(self._claim_orphans)
        for row in rows:
            logger.warning("resuming the ingestion of %s into %s (its replica stopped)", row.file_id,
                           row.vector_store_id)
            self._start_ingest(row.vector_store_id, row.file_id, row.chunking, self._model(row.embedding_model),
                               row.seq)
        return len(rows)

    async def watch_orphans(self) -> None:
        """Forever (in each replica): take over ingestions whose replica died."""
        await sweep_forever(self.resume_orphans, self.lease_s / 3, "resuming orphaned ingestions")

    async def _ingest(self, store_id: str, file_id: str, chunking: dict, model: EmbeddingModelInfo,
                      attachment: int) -> None:
        """extract -> chunk -> embed -> insert; the file's row ends completed or failed with last_error.
        `attachment` is the seq of the file's row this ingestion is for: if the file was attached again (on any
        replica), removed or cancelled meanwhile, its chunks are dropped instead of doubling the new ones."""
        async with self._ingest_slots:
            error = None
            lease = asyncio.create_task(renew_while_held(lambda: self._renew(attachment), self.lease_s))
            try:
                filename, data = await asyncio.to_thread(self.files.content, file_id)
                text = await asyncio.to_thread(extract_text, filename, data)
                spec = chunking["static"]
                pieces = await asyncio.to_thread(chunk_text, text, model.tokenizer, spec["max_chunk_size_tokens"],
                                                 spec["chunk_overlap_tokens"])
                if not pieces:
                    raise UnsupportedFileError("no text could be extracted from the file")
                vectors = await self._embed_all(model.model_id, pieces)
                await asyncio.to_thread(self._insert_chunks, store_id, file_id, pieces, vectors,
                                        [{"file_id": file_id, "filename": filename}] * len(pieces), attachment)
            except UnsupportedFileError as e:
                error = {"code": "unsupported_file", "message": str(e)}
            except NotFoundError as e:
                error = {"code": "invalid_file", "message": e.message}
            except Exception as e:  # the file fails, the service goes on
                logger.warning("ingesting %s into %s failed", file_id, store_id)
                error = {"code": "server_error", "message": to_api_error(e).message}  # logs the traceback
            finally:
                lease.cancel()
            await asyncio.to_thread(self._finish_file, store_id, file_id, error, attachment)

    async def _embed_all(self, model_id: str, texts: list[str]) -> np.ndarray:
        return np.asarray(await self.embed(model_id, texts), dtype=np.float32)

    def _insert_chunks(self, store_id: str, file_id: str, texts: list[str], vectors: np.ndarray,
                       metas: list[dict], attachment: int | None = None, chunk_ids: list[str | None] | None = None,
                       chunk_metas: list[dict | None] | None = None) -> None:
        chunk_ids = chunk_ids or [None] * len(texts)
        chunk_metas = chunk_metas or [None] * len(texts)
        rows = [{"vector_store_id": store_id, "file_id": file_id, "chunk_index": i, "text": t,
                 "embedding": np.asarray(v, dtype=np.float32).tobytes(), "metadata": m, "chunk_id": cid,
                 "chunk_metadata": cm}
                for i, (t, v, m, cid, cm) in enumerate(zip(texts, vectors, metas, chunk_ids, chunk_metas,
                                                           strict=True))]
        with self.db.begin() as c:
            if not self._bump(c, store_id, "add_version"):
                return  # the store was deleted while this file was being processed
            current = sa.select(vector_store_files.c.seq).where(vector_store_files.c.seq == attachment,
                                                                vector_store_files.c.status == "in_progress",
                                                                vector_store_files.c.runner == self.runner)
            if attachment is not None and c.execute(current).first() is None:
                return  # superseded (checked under the store's row lock, so no attach can slip in between)
            c.execute(chunks.insert(), rows)

    def _finish_file(self, store_id: str, file_id: str, error: dict | None, attachment: int) -> None:
        with self.db.begin() as c:
            usage = c.execute(sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(chunks.c.text)), 0))
                              .where(chunks.c.vector_store_id == store_id, chunks.c.file_id == file_id)).scalar()
            c.execute(vector_store_files.update().where(
                vector_store_files.c.seq == attachment, vector_store_files.c.status == "in_progress",
                vector_store_files.c.runner == self.runner).values(
                status="failed" if error else "completed", last_error=error, usage_bytes=int(usage or 0)))

    async def get_file(self, store_id: str, file_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self._file_object(self._file_row(store_id, file_id)))

    async def list_files(self, store_id: str, status: str | None, after: str | None, before: str | None,
                         limit: int, order: str, batch_id: str | None = None) -> dict[str, Any]:
        if status is not None and status not in ("in_progress", "completed", "failed", "cancelled"):
            raise InvalidRequestError("filter must be in_progress, completed, failed or cancelled", param="filter")

        def run() -> list[dict]:
            self._store_row(store_id)
            q = (sa.select(vector_store_files).where(vector_store_files.c.vector_store_id == store_id)
                 .order_by(vector_store_files.c.seq))
            if status:
                q = q.where(vector_store_files.c.status == status)
            if batch_id:
                q = q.where(vector_store_files.c.batch_id == batch_id)
            with self.db.connect() as c:
                return [self._file_object(r) for r in c.execute(q)]

        return paginate(await asyncio.to_thread(run), after=after, before=before, limit=limit, order=order)

    async def update_file(self, store_id: str, file_id: str, attributes: dict[str, Any]) -> dict[str, Any]:
        def run() -> None:
            self._file_row(store_id, file_id)
            with self.db.begin() as c:
                c.execute(vector_store_files.update().where(
                    vector_store_files.c.vector_store_id == store_id, vector_store_files.c.file_id == file_id)
                    .values(attributes=attributes))

        await asyncio.to_thread(run)
        return await self.get_file(store_id, file_id)

    async def delete_file(self, store_id: str, file_id: str) -> dict[str, Any]:
        def run() -> None:
            self._file_row(store_id, file_id)
            with self.db.begin() as c:
                self._bump(c, store_id, "del_version")
                c.execute(chunks.delete().where(chunks.c.vector_store_id == store_id, chunks.c.file_id == file_id))
                c.execute(vector_store_files.delete().where(vector_store_files.c.vector_store_id == store_id,
                                                            vector_store_files.c.file_id == file_id))

        await asyncio.to_thread(run)
        return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}

    async def forget_file_everywhere(self, file_id: str) -> None:
        """A deleted file leaves every store it was attached to (its vectors leave the indexes)."""
        def stores() -> list[str]:
            with self.db.connect() as c:
                return [r[0] for r in c.execute(sa.select(vector_store_files.c.vector_store_id)
                                                .where(vector_store_files.c.file_id == file_id))]

        for sid in await asyncio.to_thread(stores):
            await self.delete_file(sid, file_id)

    async def file_content(self, store_id: str, file_id: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            row = self._file_row(store_id, file_id)
            with self.db.connect() as c:
                texts = [r[0] for r in c.execute(sa.select(chunks.c.text).where(
                    chunks.c.vector_store_id == store_id, chunks.c.file_id == file_id).order_by(chunks.c.chunk_index))]
            try:
                filename = self.files.get(file_id)["filename"]
            except NotFoundError:
                filename = None
            items = [{"type": "text", "text": t} for t in texts]
            # the OpenAI page shape (data/has_more) plus Llama Stack 0.2's (file_id/filename/attributes/content)
            return {"object": "vector_store.file_content.page", "data": items, "has_more": False, "next_page": None,
                    "file_id": file_id, "filename": filename, "attributes": row.attributes or {}, "content": items}

        return await asyncio.to_thread(run)

    # ---- file batches -----------------------------------------------------------------------------------------

    def _batch_object(self, row: Any) -> dict[str, Any]:
        with self.db.connect() as c:
            counts = dict(c.execute(sa.select(vector_store_files.c.status, sa.func.count())
                                    .where(vector_store_files.c.batch_id == row.id)
                                    .group_by(vector_store_files.c.status)).all())
        fc = {k: counts.get(k, 0) for k in ("in_progress", "completed", "failed", "cancelled")}
        fc["total"] = sum(fc.values())
        status = "cancelled" if row.cancelled else ("in_progress" if fc["in_progress"] else "completed")
        return {"id": row.id, "object": "vector_store.files_batch", "created_at": row.created_at,
                "vector_store_id": row.vector_store_id, "status": status, "file_counts": fc}

    def _batch_row(self, store_id: str, batch_id: str) -> Any:
        self._store_row(store_id)
        with self.db.connect() as c:
            row = c.execute(sa.select(file_batches).where(file_batches.c.id == batch_id,
                                                          file_batches.c.vector_store_id == store_id)).first()
        if row is None:
            raise NotFoundError(f"No file batch '{batch_id}' in vector store '{store_id}'", param="batch_id")
        return row

    async def create_batch(self, store_id: str, req: FileBatchRequest) -> dict[str, Any]:
        await asyncio.to_thread(self._store_row, store_id)
        for fid in req.file_ids:
            await asyncio.to_thread(self.files.get, fid)
        bid = new_id("vsfb")

        def insert() -> None:
            with self.db.begin() as c:
                c.execute(file_batches.insert().values(id=bid, vector_store_id=store_id, created_at=_now(),
                                                       cancelled=False))

        await asyncio.to_thread(insert)
        await self._await_ingestions([await self._attach(store_id, AttachFileRequest(
            file_id=fid, attributes=req.attributes, chunking_strategy=req.chunking_strategy), bid)
            for fid in req.file_ids])
        return await self.get_batch(store_id, bid)

    async def get_batch(self, store_id: str, batch_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self._batch_object(self._batch_row(store_id, batch_id)))

    async def cancel_batch(self, store_id: str, batch_id: str) -> dict[str, Any]:
        def run() -> None:
            self._batch_row(store_id, batch_id)
            with self.db.begin() as c:
                c.execute(file_batches.update().where(file_batches.c.id == batch_id).values(cancelled=True))
                c.execute(vector_store_files.update().where(vector_store_files.c.batch_id == batch_id,
                                                            vector_store_files.c.status == "in_progress")
                          .values(status="cancelled"))

        await asyncio.to_thread(run)
        return await self.get_batch(store_id, batch_id)

    # ---- search -----------------------------------------------------------------------------------------------

    async def _index(self, store: Any) -> VectorStoreIndex:
        index = self.indexes.get(store.id)
        if index is None or index.dim != store.embedding_dimension:
            index = self.indexes[store.id] = VectorStoreIndex(store.id, store.embedding_dimension, store.index_config,
                                                              self.builder)
        await asyncio.to_thread(index.sync, self.db, store.add_version, store.del_version)
        return index

    def _attributes(self, store_id: str) -> dict[str, dict[str, Any]]:
        with self.db.connect() as c:
            return {r.file_id: r.attributes or {} for r in c.execute(
                sa.select(vector_store_files.c.file_id, vector_store_files.c.attributes)
                .where(vector_store_files.c.vector_store_id == store_id))}

    def _inserted_matching(self, store_id: str, f: dict) -> set[int]:
        """The inserted chunks (of no attached file) whose metadata, seen as search attributes, pass the filter."""
        attached = sa.select(vector_store_files.c.file_id).where(vector_store_files.c.vector_store_id == store_id)
        q = sa.select(chunks.c.seq, chunks.c.metadata).where(chunks.c.vector_store_id == store_id,
                                                             chunks.c.file_id.not_in(attached))
        with self.db.connect() as c:
            return {r.seq for r in c.execute(q) if matches(f, openai_attributes(r.metadata or {}))}

    @traced("vector_io.search", record=("store_id", "mode", "k"), latency=observe_search,
            observe=lambda span, found: span.set_attribute("stackserve.hits", len(found)))
    async def ranked_chunks(self, store_id: str, queries: list[str], k: int, mode: str,
                            filters: dict | None) -> list[tuple[Any, float, dict | None]]:
        """[(chunk row, score, file attributes)] best first, for the OpenAI and Llama Stack search shapes. The
        attributes are None for a chunk inserted through vector-io (its metadata are its attributes); filters
        apply to file attributes and to inserted chunks' metadata alike."""
        if filters is not None:
            filters = normalize_filter(filters)
            validate_filter(filters)
        store = await asyncio.to_thread(self._store_row, store_id)
        index = await self._index(store)
        files = seqs = None
        if filters is not None:
            attrs = await asyncio.to_thread(self._attributes, store_id)
            files = {f for f, a in attrs.items() if matches(filters, a)}
            seqs = await asyncio.to_thread(self._inserted_matching, store_id, filters)
        deep = k * 3 if mode == "hybrid" else k
        vector, keyword = [], []
        if mode in ("vector", "hybrid"):
            qv = await self.embed_queries(store.embedding_model, queries)
            vector = await asyncio.to_thread(index.vector_search, np.asarray(qv), deep, files, seqs)
        if mode in ("keyword", "hybrid"):
            keyword = await asyncio.to_thread(index.keyword_search, " ".join(queries), deep, files, seqs)
        ranked = reciprocal_rank_fusion(vector, keyword) if mode == "hybrid" else (vector or keyword)
        ranked = ranked[:k]  # keyword scores (bm25.py) and hybrid's fused ones are in (0, 1]

        rows = await asyncio.to_thread(self._hit_rows, store_id, [cid for cid, _ in ranked])
        await self._touch(store_id)
        return [(row, score, (row.file_attributes or {}) if row.attached is not None else None)
                for cid, score in ranked if (row := rows.get(cid)) is not None]

    def _hit_rows(self, store_id: str, seqs: list[int]) -> dict[int, Any]:
        """The hit chunks (without their stored embeddings) with their file's attributes, in one query (an inserted
        chunk has no file row)."""
        attached = vector_store_files.c
        columns = [c for c in chunks.c if c.name != "embedding"]
        q = (sa.select(*columns, attached.attributes.label("file_attributes"), attached.file_id.label("attached"))
             .select_from(chunks.outerjoin(vector_store_files, sa.and_(
                 attached.vector_store_id == store_id, attached.file_id == chunks.c.file_id)))
             .where(chunks.c.seq.in_(seqs)))
        with self.db.connect() as c:
            return {r.seq: r for r in c.execute(q)}

    async def _touch(self, store_id: str) -> None:
        """Searches keep `last_active_at` fresh with at most one SQL write per store per `touch_every_s` on a
        replica (it anchors day-long expiry; writes, uploads and attaches still set it at once)."""
        now = time.monotonic()
        last = self._touched.get(store_id)
        if last is not None and now - last < self.touch_every_s:
            return
        self._touched[store_id] = now

        def write() -> None:
            with self.db.begin() as c:
                c.execute(vector_stores.update().where(vector_stores.c.id == store_id).values(last_active_at=_now()))

        await asyncio.to_thread(write)

    async def search(self, store_id: str, req: SearchRequest) -> dict[str, Any]:
        queries = [req.query] if isinstance(req.query, str) else [q for q in req.query if q.strip()]
        threshold = req.ranking_options.score_threshold if req.ranking_options else 0.0
        found = await self.ranked_chunks(store_id, queries, req.max_num_results, req.search_mode, req.filters)
        # cosine similarity can be negative for unrelated text; OpenAI scores are in [0, 1]
        data = [{"file_id": row.file_id, "filename": str((row.metadata or {}).get("filename") or ""),
                 "score": min(max(float(score), 0.0), 1.0), "attributes": search_attributes(row, attrs),
                 "content": [{"type": "text", "text": row.text}]}
                for row, score, attrs in found if threshold <= 0 or score >= threshold]
        return {"object": "vector_store.search_results.page", "search_query": queries, "data": data,
                "has_more": False, "next_page": None}

    # ---- Llama Stack vector-io chunks -------------------------------------------------------------------------

    async def insert_chunks(self, store_id: str, texts: list[str], metas: list[dict],
                            vectors: list[list[float] | None], chunk_ids: list[str | None] | None = None,
                            chunk_metas: list[dict | None] | None = None, documents: list[str] | None = None) -> None:
        """Llama Stack chunks: given embeddings are used as they are (scaled to unit length, as the index ranks by
        cosine), the others computed. Chunks are stored per document (`documents`, default metadata.document_id),
        as a file's are; nothing is stored when any given embedding is invalid."""
        store = await asyncio.to_thread(self._store_row, store_id)
        out = np.zeros((len(texts), store.embedding_dimension), dtype=np.float32)
        for i, v in enumerate(vectors):
            if v is not None:
                out[i] = given_embedding(v, store.embedding_dimension, f"chunks.{i}.embedding")
        missing = [i for i, v in enumerate(vectors) if v is None]
        if missing:
            out[missing] = await self._embed_all(store.embedding_model, [texts[i] for i in missing])
        documents = documents or [str(m.get("document_id", "")) for m in metas]
        chunk_ids = chunk_ids or [None] * len(texts)
        chunk_metas = chunk_metas or [None] * len(texts)
        by_doc: dict[str, list[int]] = {}
        for i, doc in enumerate(documents):
            by_doc.setdefault(doc, []).append(i)
        for doc, idx in by_doc.items():
            await asyncio.to_thread(self._insert_chunks, store_id, doc, [texts[i] for i in idx], out[idx],
                                    [metas[i] for i in idx], None, [chunk_ids[i] for i in idx],
                                    [chunk_metas[i] for i in idx])

