"""The LLM deployment: one per served model, a thin shim from handle calls to the OpenAI layer and its engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ray import serve

from serve.config import ModelConfig
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest
from serve.telemetry.genai import InferenceTelemetry
from serve.telemetry.instrument import instrument_deployment

logger = logging.getLogger("stackserve.llm")


async def coalesce(source: AsyncIterator[Any]) -> AsyncIterator[list[Any]]:
    """Re-yields `source` as lists of every item ready at the time, never waiting to fill one.

    Each yield of a streaming handle call is a Ray object sent across processes; under load a replica cannot send
    one per token per stream, so tokens that pile up while it is busy travel together. At low load each list holds
    one chunk and nothing waits. Closing this generator cancels the source (the engine frees the request).
    """
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
            queue.put_nowait(done)
        except BaseException as e:  # noqa: BLE001  (handed to the consumer)
            queue.put_nowait(e)

    task = asyncio.get_running_loop().create_task(pump())
    try:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            end = next((i for i, x in enumerate(batch) if x is done or isinstance(x, BaseException)), None)
            if end is None:
                yield batch
                continue
            if end:
                yield batch[:end]
            if isinstance(batch[end], BaseException):
                raise batch[end]
            return
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            await source.aclose()


@serve.deployment
@instrument_deployment
class LLMServer:
    def __init__(self, model: ModelConfig, model_cache_dir: str):
        from transformers import AutoTokenizer

        from deployments.inference.engines import build_engine
        from deployments.inference.model_store import resolve_checkpoint
        from deployments.inference.serving import OpenAIServing

        checkpoint = resolve_checkpoint(model.source, Path(model_cache_dir))
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.engine = build_engine(model.engine, checkpoint, tokenizer)
        self.serving = OpenAIServing(self.engine, tokenizer, model.model_id)
        self._info = {"context_length": self.engine.max_model_len, "engine": model.engine.type,
                      "max_num_seqs": model.engine.max_num_seqs,
                      "device": str(getattr(self.engine, "device", model.engine.device)),  # after CPU fallback
                      "dtype": model.engine.dtype}
        self.telemetry = InferenceTelemetry(model.model_id, model.engine.type, self.engine)
        logger.info("model %s ready from %s", model.model_id, checkpoint)

    async def model_info(self) -> dict[str, Any]:
        return self._info

    async def stats(self) -> dict[str, Any]:
        """The engine's counters, and which replica answered."""
        return {**vars(self.engine.stats()), "replica": serve.get_replica_context().replica_id.unique_id}

    async def chat(self, req: ChatCompletionRequest) -> dict[str, Any]:
        with self.telemetry.call("chat", req) as call:
            return call.finish(await self.serving.chat(req))

    async def chat_stream(self, req: ChatCompletionRequest) -> AsyncIterator[list[dict[str, Any]]]:
        """Lists of chunks: whatever is ready when the caller asks (see `coalesce`)."""
        with self.telemetry.call("chat", req) as call:
            async for chunks in coalesce(self.serving.chat_stream(req)):
                yield [call.chunk(c) for c in chunks]

    async def completion(self, req: CompletionRequest) -> dict[str, Any]:
        with self.telemetry.call("text_completion", req) as call:
            return call.finish(await self.serving.completion(req))

    async def completion_stream(self, req: CompletionRequest) -> AsyncIterator[list[dict[str, Any]]]:
        with self.telemetry.call("text_completion", req) as call:
            async for chunks in coalesce(self.serving.completion_stream(req)):
                yield [call.chunk(c) for c in chunks]

    async def check_health(self) -> None:
        await self.engine.check_health()

    def __del__(self):
        # Serve calls this when the replica stops: engines with processes of their own (vLLM) end them here
        shutdown = getattr(getattr(self, "engine", None), "shutdown", None)
        if shutdown is not None:
            shutdown()
