"""The engine interface: an async stream of token deltas per request, many requests at once.

Engines (meta-reference, vLLM) take token ids in and give token ids out; everything OpenAI-shaped (chat
templates, detokenization, stop strings, usage, chunks) lives above, in `serving.py`, shared by all engines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from deployments.inference.sampling import SampledToken, SamplingParams


@dataclass
class EngineRequest:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams


@dataclass
class EngineOutput:
    """New tokens for one request since its last output; finish_reason set on the last one."""

    tokens: list[SampledToken]
    finish_reason: str | None = None  # "stop" (eos / stop token / constraint done) | "length" | "abort"
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0  # prompt tokens whose K/V came from the prefix cache (not computed)


@dataclass
class EngineStats:
    running: int = 0
    waiting: int = 0
    max_num_seqs: int = 0
    free_kv_blocks: int = 0
    total_kv_blocks: int = 0
    max_batch_size_seen: int = 0
    steps: int = 0
    generated_tokens: int = 0
    prefix_cache_queries: int = 0  # prompt tokens looked up in the prefix cache (vLLM's counter of that name)
    prefix_cache_hits: int = 0  # of those, tokens found cached
    prefill_tokens: int = 0  # prompt tokens computed by prefill (meta-reference only)
    cached_kv_blocks: int = 0  # blocks holding a findable prefix, in use or evictable (meta-reference only)
    extra: dict = field(default_factory=dict)


class Engine(Protocol):
    provider_type: str  # Llama Stack's provider type of what runs, e.g. "inline::meta-reference" (GET /v1/providers)
    max_model_len: int
    vocab_size: int
    eos_token_ids: list[int]

    def generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        """Stream outputs for one request. Closing the iterator early aborts the request and frees its capacity."""

    def stats(self) -> EngineStats: ...

    async def check_health(self) -> None:
        """Raise if the engine cannot serve (its loop died)."""

    def shutdown(self) -> None:
        """Release what the engine holds outside this process's memory (vLLM's engine core process)."""
