"""The LLM service: one model's engine, its OpenAI layer and its telemetry, as typed async methods.

Plain Python (no Ray): the LLM deployment wraps it for Serve, offline batch jobs run it inside a Ray Data actor,
and tests drive it directly.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from deployments.inference.engine import Engine, EngineStats
from deployments.inference.engines import EngineFactory
from deployments.inference.serving import OpenAIServing
from serve.config import ModelConfig
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest
from serve.telemetry.genai import InferenceTelemetry

logger = logging.getLogger("stackserve.llm")


class LLMService:
    def __init__(self, model: ModelConfig, engine: Engine, tokenizer: Any):
        self.model_id = model.model_id
        self.engine = engine
        self.serving = OpenAIServing(engine, tokenizer, model.model_id, model.engine.default_max_tokens)
        system = engine.provider_type.split("::")[-1]  # "meta-reference", "vllm", ...
        self._info = {"context_length": engine.max_model_len, "engine": system,
                      "provider_type": engine.provider_type, "max_num_seqs": model.engine.max_num_seqs,
                      "device": str(getattr(engine, "device", model.engine.device)),  # after CPU fallback
                      "dtype": model.engine.dtype}
        self.telemetry = InferenceTelemetry(model.model_id, system, engine)

    @classmethod
    def load(cls, model: ModelConfig, model_cache_dir: str | Path,
             engine_factory: EngineFactory | None = None) -> LLMService:
        """Resolve the model's checkpoint and build its engine: with `engine_factory`, or the one its config names."""
        from transformers import AutoTokenizer

        from deployments.inference.engines import engine_from_config
        from deployments.inference.model_store import resolve_checkpoint

        checkpoint = resolve_checkpoint(model.source, Path(model_cache_dir))
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        engine = (engine_factory or engine_from_config)(checkpoint, tokenizer, model)
        logger.info("model %s ready from %s on %s", model.model_id, checkpoint, engine.provider_type)
        return cls(model, engine, tokenizer)

    async def model_info(self) -> dict[str, Any]:
        """Context length, what engine runs (`provider_type`), its sizing and device."""
        return self._info

    async def stats(self) -> EngineStats:
        return self.engine.stats()

    async def chat(self, req: ChatCompletionRequest) -> dict[str, Any]:
        with self.telemetry.call("chat", req) as call:
            return call.finish(await self.serving.chat(req))

    async def chat_stream(self, req: ChatCompletionRequest) -> AsyncIterator[dict[str, Any]]:
        with self.telemetry.call("chat", req) as call:
            async for chunk in self.serving.chat_stream(req):
                yield call.chunk(chunk)

    async def count_tokens(self, req: ChatCompletionRequest) -> dict[str, int]:
        """{"input_tokens": N}: the rendered chat prompt's length, as a chat call of `req` would count it."""
        return self.serving.count_tokens(req)

    async def completion(self, req: CompletionRequest) -> dict[str, Any]:
        with self.telemetry.call("text_completion", req) as call:
            return call.finish(await self.serving.completion(req))

    async def completion_stream(self, req: CompletionRequest) -> AsyncIterator[dict[str, Any]]:
        with self.telemetry.call("text_completion", req) as call:
            async for chunk in self.serving.completion_stream(req):
                yield call.chunk(chunk)

    async def check_health(self) -> None:
        await self.engine.check_health()

    def shutdown(self) -> None:
        self.engine.shutdown()
