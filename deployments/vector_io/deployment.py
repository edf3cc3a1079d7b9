"""The VectorIO deployment: files, vector stores, search and the Llama Stack vector-io routes.

State lives in the shared SQL database and blob store, so any number of replicas serve the same stores (each keeps
its own in-memory FAISS/BM25 index per store, synced by version; see index.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from ray import serve

from serve.config import EmbeddingModelConfig, VectorIOConfig
from serve.errors import InvalidRequestError
from serve.protocol.openai_files import FileBlob, RegisterFileRequest
from serve.protocol.vector_io import (
    AttachFileRequest,
    CreateVectorStoreRequest,
    FileBatchRequest,
    InsertChunksRequest,
    QueryChunksRequest,
    SearchRequest,
    UpdateVectorStoreRequest,
)
from serve.telemetry.instrument import instrument_deployment


@serve.deployment
@instrument_deployment
class VectorIOServer:
    def __init__(self, cfg: VectorIOConfig, embedding_models: list[EmbeddingModelConfig], embedders: dict,
                 blob_url: str, database_url: str):
        from transformers import AutoTokenizer

        import deployments.vector_io.tables  # noqa: F401  (registers the tables)
        from deployments.vector_io.ann_builder import AnnBuilder
        from deployments.vector_io.batcher import BatchedEmbedder
        from deployments.vector_io.embedding_model import resolve_embedding_source
        from deployments.vector_io.files import FileService
        from deployments.vector_io.index_snapshots import IndexSnapshots
        from deployments.vector_io.store import EmbeddingModelInfo, VectorStoreService
        from serve.storage import Database, open_blob_store

        self.db = Database(database_url)
        self.embedders = embedders
        blobs = open_blob_store(blob_url, self.db)
        self.files = FileService(self.db, blobs, cfg.max_file_bytes)
        self._model_cfgs = embedding_models
        self._infos: dict[str, Any] = {}
        self._tokenizers = {m.model_id: AutoTokenizer.from_pretrained(resolve_embedding_source(m.source))
                            for m in embedding_models}
        self._info_cls = EmbeddingModelInfo
        qb, ingest = cfg.query_batch, cfg.ingest
        # chunks of several files share large embedding calls; concurrent searches' queries share calls too
        self.chunk_embedder = BatchedEmbedder(self._embed, ingest.embed_batch_size,
                                              max_in_flight=ingest.max_embed_calls)
        self.query_embedder = BatchedEmbedder(self._embed, qb.max_batch_size, qb.wait_timeout_s, qb.max_in_flight,
                                              qb.busy_wait_s)
        self.builder = AnnBuilder(IndexSnapshots(blobs) if cfg.index_snapshots else None)
        self.stores = VectorStoreService(self.db, self.files, self.chunk_embedder, self._infos,
                                         cfg.default_embedding_model or embedding_models[0].model_id,
                                         cfg.index.model_dump(), max_concurrent_ingests=ingest.max_concurrent_files,
                                         lease_s=cfg.ingest_lease_timeout_s,
                                         runner=serve.get_replica_context().replica_id.unique_id,
                                         attach_wait_s=cfg.attach_wait_s, embed_queries=self.query_embedder,
                                         builder=self.builder)
        self._watcher = asyncio.get_running_loop().create_task(self._watch_orphans())

    async def health(self) -> dict[str, str]:
        """Provider health (/v1/providers): the database answers and the orphaned-ingestion watcher runs."""
        from serve.health import run_checks, running

        return await run_checks(self.db.ping, running(self._watcher, "the ingestion watcher"))

    async def _watch_orphans(self) -> None:
        while True:  # resumed ingestions need the embedding models' sizes: wait for the Embeddings deployments
            try:
                await self._ensure_infos()
                break
            except Exception:
                await asyncio.sleep(1.0)
        await self.stores.watch_orphans()

    async def _ensure_infos(self) -> None:
        for m in self._model_cfgs:
            if m.model_id not in self._infos:
                info = await self.embedders[m.model_id].model_info.remote()
                self._infos[m.model_id] = self._info_cls(m.model_id, info["embedding_dimension"],
                                                         info["context_length"], self._tokenizers[m.model_id])
                for alias in m.aliases:  # another name of the same model: stores record its model_id
                    self._infos[alias] = self._infos[m.model_id]

    async def _embed(self, model_id: str, texts: list[str]) -> np.ndarray:
        return await self.embedders[model_id].embed.remote(texts)

    async def _run(self, method: Any, *args: Any) -> Any:
        """Runs a service method once the embedding models are known: coroutines awaited, blocking SQL / disk work
        in a thread."""
        await self._ensure_infos()
        if asyncio.iscoroutinefunction(method):
            return await method(*args)
        return await asyncio.to_thread(method, *args)

    # ---- OpenAI Files -------------------------------------------------------------------------------------------

    async def register_file(self, req: RegisterFileRequest) -> dict[str, Any]:
        """An upload whose bytes the ingress streamed into the blob store (serve/file_blobs.py)."""
        return await self._run(self.files.register, req)

    async def list_files(self, purpose: str | None, after: str | None, limit: int, order: str) -> dict[str, Any]:
        return await self._run(self.files.list, purpose, after, limit, order)

    async def get_file(self, file_id: str) -> dict[str, Any]:
        return await self._run(self.files.get, file_id)

    async def file_blob(self, file_id: str) -> FileBlob:
        """Where the file's bytes are: the ingress streams them out of the blob store itself."""
        return await self._run(self.files.blob, file_id)

    async def replica_id(self) -> str:
        return serve.get_replica_context().replica_id.unique_id

    async def delete_file(self, file_id: str) -> dict[str, Any]:
        """Deleting a file also takes it (and its vectors) out of every vector store."""
        await asyncio.to_thread(self.files.get, file_id)
        await self.stores.forget_file_everywhere(file_id)
        return await asyncio.to_thread(self.files.delete, file_id)

    # ---- OpenAI Vector Stores ------------------------------------------------------------------------------------

    async def create_vector_store(self, req: CreateVectorStoreRequest) -> dict[str, Any]:
        return await self._run(self.stores.create_store, req)

    async def list_vector_stores(self, after: str | None, before: str | None, limit: int,
                                 order: str) -> dict[str, Any]:
        return await self._run(self.stores.list_stores, after, before, limit, order)

    async def get_vector_store(self, store_id: str) -> dict[str, Any]:
        return await self._run(self.stores.get_store, store_id)

    async def update_vector_store(self, store_id: str, req: UpdateVectorStoreRequest) -> dict[str, Any]:
        return await self._run(self.stores.update_store, store_id, req)

    async def delete_vector_store(self, store_id: str) -> dict[str, Any]:
        return await self._run(self.stores.delete_store, store_id)

    async def search_vector_store(self, store_id: str, req: SearchRequest) -> dict[str, Any]:
        return await self._run(self.stores.search, store_id, req)

    async def attach_file(self, store_id: str, req: AttachFileRequest) -> dict[str, Any]:
        return await self._run(self.stores.attach_file, store_id, req)

    async def list_vector_store_files(self, store_id: str, filter: str | None, after: str | None,
                                      before: str | None, limit: int, order: str,
                                      batch_id: str | None = None) -> dict[str, Any]:
        return await self._run(self.stores.list_files, store_id, filter, after, before, limit, order, batch_id)

    async def get_vector_store_file(self, store_id: str, file_id: str) -> dict[str, Any]:
        return await self._run(self.stores.get_file, store_id, file_id)

    async def update_vector_store_file(self, store_id: str, file_id: str,
                                       attributes: dict[str, Any]) -> dict[str, Any]:
        return await self._run(self.stores.update_file, store_id, file_id, attributes)

    async def delete_vector_store_file(self, store_id: str, file_id: str) -> dict[str, Any]:
        return await self._run(self.stores.delete_file, store_id, file_id)

    async def vector_store_file_content(self, store_id: str, file_id: str) -> dict[str, Any]:
        return await self._run(self.stores.file_content, store_id, file_id)

    async def create_file_batch(self, store_id: str, req: FileBatchRequest) -> dict[str, Any]:
        return await self._run(self.stores.create_batch, store_id, req)

    async def get_file_batch(self, store_id: str, batch_id: str) -> dict[str, Any]:
        return await self._run(self.stores.get_batch, store_id, batch_id)

    async def cancel_file_batch(self, store_id: str, batch_id: str) -> dict[str, Any]:
        return await self._run(self.stores.cancel_batch, store_id, batch_id)

    # ---- Llama Stack 0.2 --------------------------------------------------------------------------------------

    async def register_vector_db(self, req) -> dict[str, Any]:
        from deployments.vector_io.llama_stack import vector_db_object
        from serve.protocol.vector_io import CreateVectorStoreRequest

        await self._ensure_infos()
        store = await self.stores.create_store(
            CreateVectorStoreRequest(name=req.vector_db_id, embedding_model=req.embedding_model,
                                     embedding_dimension=req.embedding_dimension, provider_id=req.provider_id),
            store_id=req.vector_db_id)
        return vector_db_object(store)

    async def list_vector_dbs(self) -> list[dict[str, Any]]:
        from deployments.vector_io.llama_stack import vector_db_object

        page = await self.stores.list_stores(None, None, 100, "asc")
        out = [vector_db_object(s) for s in page["data"]]
        while page["has_more"]:
            page = await self.stores.list_stores(page["last_id"], None, 100, "asc")
            out += [vector_db_object(s) for s in page["data"]]
        return out

    async def get_vector_db(self, vector_db_id: str) -> dict[str, Any]:
        from deployments.vector_io.llama_stack import vector_db_object

        return vector_db_object(await self.stores.get_store(vector_db_id))

    async def unregister_vector_db(self, vector_db_id: str) -> None:
        await self.stores.delete_store(vector_db_id)

    async def insert_chunks(self, req: InsertChunksRequest) -> None:
        from deployments.vector_io.llama_stack import chunk_id_of, content_text, document_id_of

        await self._ensure_infos()
        chunks = req.chunks
        await self.stores.insert_chunks(
            req.vector_db_id, [content_text(c.content, f"chunks.{i}.content") for i, c in enumerate(chunks)],
            [c.metadata for c in chunks], [c.embedding for c in chunks], chunk_ids=[chunk_id_of(c) for c in chunks],
            chunk_metas=[c.chunk_metadata for c in chunks], documents=[document_id_of(c) for c in chunks])

    async def query_chunks(self, req: QueryChunksRequest) -> dict[str, Any]:
        """Both kinds of chunks: inserted ones with their metadata, attached files' with the file's attributes."""
        from deployments.vector_io.llama_stack import content_text, llama_chunk, query_params

        await self._ensure_infos()
        k, threshold, mode = query_params(req.params)
        found = await self.stores.ranked_chunks(req.vector_db_id, [content_text(req.query, "query")], k, mode, None)
        found = [f for f in found if threshold <= 0 or f[1] >= threshold]
        return {"chunks": [llama_chunk(row, attrs) for row, _, attrs in found],
                "scores": [float(s) for _, s, _ in found]}

    async def rag_insert(self, req) -> None:
        from deployments.vector_io.chunking import chunk_text

        await self._ensure_infos()
        store = await self.stores.get_store(req.vector_db_id)
        tok = self._tokenizers[store["embedding_model"]]
        texts, metas = [], []
        for i, doc in enumerate(req.documents):
            text = await self._document_text(doc.content, f"documents.{i}.content")
            pieces = await asyncio.to_thread(chunk_text, text, tok, req.chunk_size_in_tokens,
                                             req.chunk_size_in_tokens // 4)
            texts += pieces
            metas += [{**doc.metadata, "document_id": doc.document_id}] * len(pieces)
        if texts:
            await self.stores.insert_chunks(req.vector_db_id, texts, metas, [None] * len(texts))

    async def _document_text(self, content: Any, param: str) -> str:
        """A rag-tool document's text: its content, or what its URL (http(s):// or data:) holds, extracted as an
        uploaded file's would be."""
        from deployments.vector_io.extract import UnsupportedFileError, extract_text
        from deployments.vector_io.llama_stack import content_text, document_url, fetch_document

        url = document_url(content)
        if url is None:
            return content_text(content, param)
        name, data = await asyncio.to_thread(fetch_document, url, param, self.files.max_bytes)
        try:
            return await asyncio.to_thread(extract_text, name, data)
        except UnsupportedFileError as e:
            raise InvalidRequestError(f"the document at {url[:200]}: {e}", param=param) from None

    async def rag_query(self, req) -> dict[str, Any]:
        from deployments.vector_io.llama_stack import chunk_template, content_text, query_params, rag_query_result

        await self._ensure_infos()
        k, _threshold, mode = query_params({"max_chunks": 5, **(req.query_config or {})}, "query_config")
        template = chunk_template(req.query_config)
        query = content_text(req.content, "content")
        found = []
        for vdb in req.vector_db_ids:
            found += await self.stores.ranked_chunks(vdb, [query], k, mode, None)
        return rag_query_result(found, k, template)
