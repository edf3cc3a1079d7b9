"""Ray Data UDFs that run batches of request lines against models, many requests in flight at once.

`map_batches` hands each UDF actor small batches (a few lines each) and keeps several in flight per actor, so the
engine sees a steady stream of requests up to its continuous-batching capacity rather than waves. Two flavours:
`ServeRequestsUDF` calls the graph's model deployments through their handles (the Batch API) and records each
line's result in SQL as it finishes; `EngineRequestsUDF` loads the model inside the actor (offline jobs, no Serve).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from deployments.batches.lines import (
    ENDPOINTS,
    LineResult,
    RequestLine,
    check_request,
    error_result,
    response_result,
)
from serve.errors import to_api_error
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest

COLUMNS = ("line", "custom_id", "ok", "record", "input_tokens", "output_tokens", "peak_in_flight")
Call = Callable[[str, str, Any], Awaitable[dict[str, Any]]]  # (model, method, request) -> response body


async def execute(call: Call, endpoint: str, models: dict[str, str], req: RequestLine) -> LineResult:
    """One request line -> its result record; a failing request is a failed line, never a failed batch."""
    ep = ENDPOINTS[endpoint]
    try:
        request = check_request(ep, req.body, models)
        body = await call(request.model, ep.method, request)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001  (every failure is recorded against its line)
        return error_result(req.line, req.custom_id, to_api_error(e))
    return response_result(req.line, req.custom_id, 200, body)


def to_columns(results: list[LineResult], peak_in_flight: int = 0) -> dict[str, list]:
    return {"line": [r.line for r in results], "custom_id": [r.custom_id for r in results],
            "ok": [r.ok for r in results], "record": [json.dumps(r.record) for r in results],
            "input_tokens": [r.input_tokens for r in results], "output_tokens": [r.output_tokens for r in results],
            "peak_in_flight": [peak_in_flight] * len(results)}


class RequestsUDF:
    """Runs one batch's lines concurrently. Subclasses provide `call` and may persist or watch for cancellation."""

    poll_s = 0.5

    def __init__(self, endpoint: str, models: dict[str, str]):
        self.endpoint = endpoint
        self.models = models
        self.in_flight = self.peak_in_flight = 0  # requests this actor has running (one event loop: no lock)

    async def call(self, model: str, method: str, request: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def cancelled(self) -> bool:
        return False

    async def persist(self, results: list[LineResult]) -> None:
        return None

    async def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        lines = [RequestLine(int(n), str(c), json.loads(b))
                 for n, c, b in zip(batch["line"], batch["custom_id"], batch["body"], strict=True)]
        if await self.cancelled():
            return to_columns([])
        tasks = [asyncio.create_task(execute(self.call, self.endpoint, self.models, r)) for r in lines]
        self.in_flight += len(tasks)
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        pending = set(tasks)
        try:
            while pending:
                _, pending = await asyncio.wait(pending, timeout=self.poll_s)
                if pending and await self.cancelled():
                    for t in pending:
                        t.cancel()  # the awaited model call is cancelled too, which aborts it in the engine
                    await asyncio.wait(pending)
                    break
        finally:
            self.in_flight -= len(tasks)
        results = [t.result() for t in tasks if not t.cancelled()]
        await self.persist(results)
        return to_columns(results, self.peak_in_flight)


class ServeRequestsUDF(RequestsUDF):
    """Batch API jobs: model deployments through their handles; results and cancellation through SQL."""

    def __init__(self, endpoint: str, models: dict[str, str], handles: dict[str, Any], database_url: str,
                 batch_id: str):
        import deployments.batches.tables  # noqa: F401  (registers the tables)
        from deployments.batches.store import BatchStore
        from serve.storage import Database

        super().__init__(endpoint, models)
        self.handles = handles
        self.store = BatchStore(Database(database_url))
        self.batch_id = batch_id
        self._checked = (0.0, False)

    async def call(self, model: str, method: str, request: Any) -> dict[str, Any]:
        response = _remote(self.handles[model], request)
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()
            raise

    async def cancelled(self) -> bool:
        at, value = self._checked
        if not value and time.monotonic() - at >= self.poll_s:
            value = await asyncio.to_thread(self.store.stop_requested, self.batch_id)
            self._checked = (time.monotonic(), value)
        return value

    async def persist(self, results: list[LineResult]) -> None:
        await asyncio.to_thread(self.store.save_results, self.batch_id, results)


def _remote(handle: Any, request: Any) -> Any:
    """The model deployment's typed method for one request line (a DeploymentResponse, cancellable)."""
    if isinstance(request, ChatCompletionRequest):
        return handle.chat.remote(request)
    if isinstance(request, CompletionRequest):
        return handle.completion.remote(request)
    return handle.embeddings.remote(request)


class EngineRequestsUDF(RequestsUDF):
    """Offline jobs: the model runs inside this actor, without Serve: an LLM as the LLM deployment's `LLMService`;
    an embedding model as the Embeddings deployment's class (its batcher is plain asyncio: it works outside Serve)."""

    def __init__(self, endpoint: str, model_config: Any, model_cache_dir: str):
        super().__init__(endpoint, {model_config.model_id: ENDPOINTS[endpoint].model_type})
        if ENDPOINTS[endpoint].model_type == "embedding":
            from deployments.vector_io.embeddings_deployment import EmbeddingsServer

            self.server = EmbeddingsServer.func_or_class(model_config)
        else:
            from deployments.inference.service import LLMService

            self.server = LLMService.load(model_config, Path(model_cache_dir))

    async def call(self, model: str, method: str, request: Any) -> dict[str, Any]:
        return await getattr(self.server, method)(request)
