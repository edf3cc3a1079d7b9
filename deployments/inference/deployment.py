"""The LLM deployment: one per served model, a thin shim from handle calls to the OpenAI layer and its engine."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ray import serve

from serve.config import ModelConfig
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest

logger = logging.getLogger("stackserve.llm")


@serve.deployment
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
        logger.info("model %s ready from %s", model.model_id, checkpoint)

    async def model_info(self) -> dict[str, Any]:
        return self._info

    async def stats(self) -> dict[str, Any]:
        return vars(self.engine.stats()).copy()

    async def chat(self, req: ChatCompletionRequest) -> dict[str, Any]:
        return await self.serving.chat(req)

    async def chat_stream(self, req: ChatCompletionRequest) -> AsyncIterator[dict[str, Any]]:
        async for chunk in self.serving.chat_stream(req):
            yield chunk

    async def completion(self, req: CompletionRequest) -> dict[str, Any]:
        return await self.serving.completion(req)

    async def completion_stream(self, req: CompletionRequest) -> AsyncIterator[dict[str, Any]]:
        async for chunk in self.serving.completion_stream(req):
            yield chunk

    async def check_health(self) -> None:
        await self.engine.check_health()
