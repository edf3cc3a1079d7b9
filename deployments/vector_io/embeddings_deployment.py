"""The Embeddings deployment: one sentence-transformers model, dynamic batching across concurrent requests.

Batching is AsyncBatcher's (batcher.py): a request goes to the model at once when it is free, and the requests that
arrive while it computes share the next call (up to `max_batch_size` texts, or after `batch_wait_timeout_s` when set).
A lone request waits for nothing; Serve's @serve.batch held each one `batch_wait_timeout_s` for company.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
from ray import serve

from deployments.vector_io.batcher import AsyncBatcher
from serve.config import EmbeddingModelConfig
from serve.errors import InvalidRequestError
from serve.protocol.vector_io import EmbeddingRequest
from serve.telemetry.genai import embedding_call
from serve.telemetry.instrument import instrument_deployment


@serve.deployment
@instrument_deployment
class EmbeddingsServer:
    def __init__(self, cfg: EmbeddingModelConfig):
        from deployments.device import resolve_device
        from deployments.torch_thread import torch_thread
        from deployments.vector_io.embedding_model import EmbeddingModel

        # all torch work on one thread: OpenMP teams are per calling thread (see the LLM engine)
        self._executor = torch_thread(cfg.num_threads, "embed-torch")
        device = resolve_device(cfg.device, f"embedding model {cfg.model_id}")
        self.model = self._executor.submit(EmbeddingModel, cfg.source, device, cfg.dtype).result()
        self._executor.submit(self.model.warm_up).result()
        self.model_id = cfg.model_id
        self.batcher: AsyncBatcher[str, tuple[np.ndarray, int]] = AsyncBatcher(
            self._run_batch, cfg.max_batch_size, cfg.batch_wait_timeout_s)

    async def model_info(self) -> dict[str, Any]:
        return {"embedding_dimension": self.model.dimension, "context_length": self.model.max_seq_length}

    async def health(self) -> dict[str, str]:
        """This model's provider health (/v1/providers): a replica that answers serves its model."""
        from serve.health import run_checks

        return await run_checks()

    async def stats(self) -> dict[str, Any]:
        """Texts per model call, over the latest 1000 calls."""
        return {"batches": len(self.batcher.batch_sizes), "max_batch_texts": max(self.batcher.batch_sizes, default=0)}

    async def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """Vectors and token counts of `texts`; concurrent callers' texts share model calls."""
        out = await self.batcher.submit(texts)
        return np.stack([v for v, _ in out]), [n for _, n in out]

    async def _run_batch(self, texts: list[str]) -> list[tuple[np.ndarray, int]]:
        """One model call for the texts of every request the batcher gathered."""
        loop = asyncio.get_running_loop()
        vecs, counts = await loop.run_in_executor(self._executor, self.model.encode_with_counts, texts)
        return list(zip(vecs, counts, strict=True))

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Raw vectors for internal callers (vector stores): [len(texts), dim] float32, normalized."""
        with embedding_call(self.model_id, texts) as call:
            vecs, counts = await self.encode_batch(texts)
            call.tokens(int(sum(counts)))
        return vecs

    async def embeddings(self, req: EmbeddingRequest) -> dict[str, Any]:
        """The OpenAI `POST /v1/embeddings` response."""
        texts = self._texts(req)
        if req.dimensions is not None and req.dimensions != self.model.dimension:
            raise InvalidRequestError(f"this model produces {self.model.dimension}-dimensional embeddings; "
                                      f"dimensions={req.dimensions} is not supported", param="dimensions")
        with embedding_call(self.model_id, texts) as call:
            vecs, counts = await self.encode_batch(texts)
            call.tokens(int(sum(counts)))
        data = []
        for i, v in enumerate(vecs):
            v = np.asarray(v, dtype=np.float32)
            emb: Any = base64.b64encode(v.tobytes()).decode() if req.encoding_format == "base64" else v.tolist()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        n = int(sum(counts))
        return {"object": "list", "data": data, "model": self.model_id,
                "usage": {"prompt_tokens": n, "total_tokens": n}}

    def _texts(self, req: EmbeddingRequest) -> list[str]:
        inp = req.input
        if isinstance(inp, str):
            texts = [inp]
        elif inp and all(isinstance(x, str) for x in inp):
            texts = list(inp)
        else:
            raise InvalidRequestError("this embedding model takes text input (a string or a list of strings), "
                                      "not token ids", param="input")
        if not texts or len(texts) > 2048:
            raise InvalidRequestError("input must hold between 1 and 2048 texts", param="input")
        if any(not t for t in texts):
            raise InvalidRequestError("input texts must not be empty", param="input")
        return texts
