"""The LLM deployment: one per served model, a thin Serve shim over `LLMService` (engine + OpenAI layer); its typed
methods (`LLMEndpoints`) are also the Ingress's when the Ingress hosts a model's engine (`in_ingress`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ray import serve

from serve.config import ModelConfig
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest
from serve.telemetry.instrument import instrument_deployment

if TYPE_CHECKING:  # the engine modules import torch; replicas load them in __init__
    from deployments.inference.engines import EngineFactory
    from deployments.inference.service import LLMService


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


class LLMEndpoints:
    """The typed API of a replica that runs one model's engine (`self.service`): what the Ingress router, Agents,
    Safety and Batches call through handles. The LLM deployment is this alone; the Ingress has it too when it hosts
    a model (`in_ingress`), and answers that model's HTTP requests through it in-process (serve/local_handle.py)."""

    service: LLMService
    requests: int  # chat and completion calls this replica took (where the request router sent them)

    def load_engine(self, model: ModelConfig, model_cache_dir: str, engine_factory: EngineFactory | None) -> None:
        from deployments.inference.service import LLMService

        self.service = LLMService.load(model, model_cache_dir, engine_factory)
        self.requests = 0

    async def model_info(self) -> dict[str, Any]:
        return await self.service.model_info()

    async def stats(self) -> dict[str, Any]:
        """The engine's counters, the generation calls this replica took, and which replica answered."""
        stats = await self.service.stats()
        return {**vars(stats), "requests": self.requests, "replica": serve.get_replica_context().replica_id.unique_id}

    async def chat(self, req: ChatCompletionRequest) -> dict[str, Any]:
        self.requests += 1
        return await self.service.chat(req)

    async def chat_stream(self, req: ChatCompletionRequest) -> AsyncIterator[list[dict[str, Any]]]:
        """Lists of chunks: whatever is ready when the caller asks (see `coalesce`)."""
        self.requests += 1
        async for chunks in coalesce(self.service.chat_stream(req)):
            yield chunks

    async def count_tokens(self, req: ChatCompletionRequest) -> int:
        return await self.service.count_tokens(req)

    async def completion(self, req: CompletionRequest) -> dict[str, Any]:
        self.requests += 1
        return await self.service.completion(req)

    async def completion_stream(self, req: CompletionRequest) -> AsyncIterator[list[dict[str, Any]]]:
        self.requests += 1
        async for chunks in coalesce(self.service.completion_stream(req)):
            yield chunks

    async def check_health(self) -> None:
        await self.service.check_health()

    async def health(self) -> dict[str, str]:
        """This model's provider health (/v1/providers): the engine loop is alive and no step is wedged."""
        from serve.health import run_checks

        return await run_checks(self.service.check_health)

    def __del__(self):
        # Serve calls this when the replica stops: engines with processes of their own (vLLM) end them here
        service = getattr(self, "service", None)
        if service is not None:
            service.shutdown()


@serve.deployment
@instrument_deployment
class LLMServer(LLMEndpoints):
    """`engine_factory`: a picklable (checkpoint, tokenizer, model config) -> Engine; None builds the engine the
    model's config names (meta-reference or vLLM)."""

    def __init__(self, model: ModelConfig, model_cache_dir: str, engine_factory: EngineFactory | None = None):
        self.load_engine(model, model_cache_dir, engine_factory)
