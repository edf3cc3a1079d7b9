"""Meta-reference engine: continuous batching over a paged KV cache, one `step()` at a time.

`step()` = schedule -> run the model (prefill, decode) -> postprocess. Scheduling and postprocessing run on the
event loop; the model runs on the engine's own torch thread (torch releases the GIL), so streams keep flowing while
a step computes. The loop only waits for work and calls `step()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from deployments.inference.engine import EngineOutput, EngineRequest, EngineStats
from deployments.inference.meta_reference.cpu_linear import pack_linears
from deployments.inference.meta_reference.decode_runner import DecodeRunner
from deployments.inference.meta_reference.kv_cache import PagedKVCache
from deployments.inference.meta_reference.loader import load_checkpoint, read_hf_config
from deployments.inference.meta_reference.model import BatchView, LlamaForCausalLM
from deployments.inference.meta_reference.scheduler import Scheduler, Sequence, StepPlan
from deployments.inference.sampling import (
    SampledToken,
    apply_constraints,
    apply_penalties,
    confirm_constraints,
    sample,
)
from deployments.torch_thread import torch_thread
from serve.errors import InvalidRequestError, OverloadedError

if TYPE_CHECKING:  # the engine reads plain attributes, so torch-only scripts can pass a dataclass
    from serve.config import EngineConfig

logger = logging.getLogger("stackserve.engine")


def eos_ids_from_config(hf_config: dict, checkpoint: Path | None = None) -> list[int]:
    ids: list[int] = []
    sources = [hf_config]
    gen = checkpoint / "generation_config.json" if checkpoint else None
    if gen and gen.exists():
        import json

        sources.append(json.loads(gen.read_text()))
    for src in sources:
        e = src.get("eos_token_id")
        for i in [e] if isinstance(e, int) else (e or []):
            if i not in ids:
                ids.append(i)
    return ids


class MetaReferenceEngine:
    provider_type = "inline::meta-reference"

    def __init__(self, model: LlamaForCausalLM, cfg: EngineConfig, eos_token_ids: list[int],
                 executor: ThreadPoolExecutor | None = None):
        self._executor = executor or torch_thread(cfg.num_threads, "engine-torch")
        if cfg.device.startswith("cuda"):
            # cuDNN attention builds a plan per new key length (seen on an H200: decode at half speed while the
            # context grows); the memory-efficient kernel takes our masks without that cost.
            torch.backends.cuda.enable_cudnn_sdp(False)
        self.device = torch.device(cfg.device)
        if self.device.type == "cpu" and cfg.cpu_packed_linear:
            self._executor.submit(pack_linears, model, cfg.max_num_seqs).result()
        self.model = model
        self.cfg = cfg
        a = model.args
        self.vocab_size = a.vocab_size
        self.eos_token_ids = eos_token_ids
        num_blocks = -(-cfg.kv_cache_tokens // cfg.kv_block_size) + 1  # +1: the scratch block
        self.cache = self._executor.submit(
            PagedKVCache, a.num_hidden_layers, num_blocks, cfg.kv_block_size, a.num_key_value_heads, a.head_dim,
            next(model.parameters()).dtype, self.device, cfg.enable_prefix_caching).result()
        capacity = self.cache.usable_blocks * cfg.kv_block_size
        self.max_model_len = min(cfg.max_model_len or a.max_position_embeddings, a.max_position_embeddings, capacity)
        graphs = self.device.type == "cuda" and cfg.cuda_graphs is not False
        self.decoder = DecodeRunner(model, self.cache, cfg.max_num_seqs, self.max_model_len, self.device,
                                    pad=graphs, graphs=graphs)
        self.scheduler = Scheduler(self.cache, cfg.max_num_seqs, max(cfg.max_prefill_tokens, self.max_model_len),
                                   cfg.prefill_chunk_tokens)
        self._stats = EngineStats(max_num_seqs=cfg.max_num_seqs, total_kv_blocks=self.cache.usable_blocks)
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task | None = None
        self._loop_error: BaseException | None = None
        self._step_started: float | None = None  # monotonic time the running step began

    @classmethod
    def from_checkpoint(cls, checkpoint: Path, cfg: EngineConfig) -> MetaReferenceEngine:
        executor = torch_thread(cfg.num_threads, "engine-torch")
        model = executor.submit(load_checkpoint, checkpoint, cfg.device, cfg.dtype).result()
        return cls(model, cfg, eos_ids_from_config(read_hf_config(checkpoint), checkpoint), executor)

    # ---- public interface -------------------------------------------------------------------------------

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        n_prompt = len(request.prompt_token_ids)
        if n_prompt == 0:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        if n_prompt + request.params.max_tokens > self.max_model_len:
            raise InvalidRequestError(
                f"prompt ({n_prompt} tokens) plus max_tokens ({request.params.max_tokens}) exceeds the model's "
                f"context length of {self.max_model_len} tokens", param="max_tokens", code="context_length_exceeded")
        free_slots = max(0, self.cfg.max_num_seqs - len(self.scheduler.running))
        if len(self.scheduler.waiting) >= self.cfg.max_queued_requests + free_slots:
            raise OverloadedError("too many requests are queued for this model, retry later",
                                  code="queue_full", headers={"Retry-After": "1"})
        self._ensure_loop()
        seq = Sequence(request, request.params.make_generator())
        self.scheduler.waiting.append(seq)
        self._wakeup.set()
        try:
            while True:
                item = await seq.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            if not seq.finished:
                seq.aborted = True  # the scheduler frees its blocks at the next step
                self._wakeup.set()

    def stats(self) -> EngineStats:
        s = self._stats
        s.running, s.waiting = len(self.scheduler.running), len(self.scheduler.waiting)
        s.free_kv_blocks = self.cache.free_blocks
        s.cached_kv_blocks = self.cache.pool.num_cached
        s.prefix_cache_queries = self.scheduler.prefix_cache_queries
        s.prefix_cache_hits = self.scheduler.prefix_cache_hits
        return s

    async def check_health(self) -> None:
        if self._loop_error is not None:
            raise RuntimeError(f"engine loop died: {self._loop_error!r}")
        started = self._step_started
        if started is not None and time.monotonic() - started > self.cfg.step_timeout_s:
            raise RuntimeError(f"engine wedged: a step has run for {time.monotonic() - started:.0f} s "
                               f"(engine.step_timeout_s is {self.cfg.step_timeout_s:g})")

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def step(self) -> int:
        """One engine step: schedule the waiting and running sequences, run the model on the torch thread (prefill
        for newly admitted ones, then one decode token for the rest), and postprocess: append each sampled token,
        finish sequences at a stop token, constraint end or length, and hand every output to its request's stream.
        Returns how many sequences ran (0: nothing was runnable). A failed forward pass fails the sequences it ran,
        not the engine."""
        plan = self.scheduler.schedule()
        seqs = plan.prefill + plan.decode
        if not seqs:
            return 0
        self._step_started = time.monotonic()
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._execute, plan)
        except Exception as e:
            logger.exception("engine step failed")
            for seq in seqs:
                self.scheduler.finish(seq)
                seq.queue.put_nowait(e)
            return len(seqs)
        finally:
            self._step_started = None
        self._postprocess(results)
        return len(seqs)

    # ---- the loop ---------------------------------------------------------------------------------------

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._wakeup = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._run_loop())

    async def _run_loop(self) -> None:
        try:
            while True:
                if not self.scheduler.has_work():
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if not await self.step():
                    await asyncio.sleep(0.001)  # only aborted sequences were dropped
        except BaseException as e:
            self._loop_error = e
            raise

    def _execute(self, plan: StepPlan) -> list[tuple[Sequence, SampledToken]]:
        results = []
        with torch.inference_mode():
            if plan.prefill:
                results += self._prefill(plan.prefill, plan.chunks)
            if plan.decode:
                d = plan.decode
                logits = self.decoder.run([s.last_token_id for s in d], [s.num_cached for s in d],
                                          [s.blocks for s in d])
                results += self._sample(d, logits, [1] * len(d))
        bs = len(plan.prefill) + len(plan.decode)
        self._stats.max_batch_size_seen = max(self._stats.max_batch_size_seen, bs)
        self._stats.steps += 1
        return results

    def _prefill(self, seqs: list[Sequence], chunks: list[int]) -> list[tuple[Sequence, SampledToken]]:
        """Compute each sequence's next `chunk` tokens (after its prefix-cache hit); those that reach the end of
        their tokens sample one, the others (chunked prefill) go on next step."""
        inputs = [s.all_ids[s.num_cached:s.num_cached + n] for s, n in zip(seqs, chunks, strict=True)]
        self._stats.prefill_tokens += sum(chunks)
        view, tokens, last = self._batch_view(seqs, inputs)
        logits = self.model(tokens, view, self.cache.layers, last)  # [B, vocab]
        done = [i for i, (s, n) in enumerate(zip(seqs, chunks, strict=True)) if s.num_cached + n == s.num_tokens]
        for s, n in zip(seqs, chunks, strict=True):
            if s.num_cached + n < s.num_tokens:
                s.num_cached += n
        if not done:
            return []
        if len(done) < len(seqs):
            logits = logits[done]
        return self._sample([seqs[i] for i in done], logits, [chunks[i] for i in done])

    def _sample(self, seqs: list[Sequence], logits: torch.Tensor, computed: list[int]
                ) -> list[tuple[Sequence, SampledToken]]:
        """Penalties, constraints and sampling over a step's logits ([B, vocab]); `computed`: tokens each row
        added to the cache this step."""
        params = [s.request.params for s in seqs]
        apply_penalties(logits, params, [s.output_ids for s in seqs], [s.request.prompt_token_ids for s in seqs])
        remaining = [min(s.request.params.max_tokens - len(s.output_ids), self.max_model_len - s.num_tokens)
                     for s in seqs]
        apply_constraints(logits, params, remaining)
        sampled = sample(logits, params, [s.generator for s in seqs])
        confirm_constraints(sampled, params, remaining)
        for s, n in zip(seqs, computed, strict=True):
            s.num_cached += n
        return list(zip(seqs, sampled, strict=True))

    def _batch_view(self, seqs: list[Sequence], inputs: list[list[int]]):
        """Pad rows to the longest input; build positions, cache slots, block tables and the attention mask."""
        bs = self.cache.block_size
        S = max(len(x) for x in inputs)
        tokens, positions, slots, tables = [], [], [], []
        for seq, x in zip(seqs, inputs, strict=True):
            start, pad = seq.num_cached, S - len(x)
            pos = list(range(start, start + len(x)))
            tokens.append(x + [0] * pad)
            positions.append(pos + [pos[-1]] * pad)
            slots.append([seq.blocks[p // bs] * bs + p % bs for p in pos] + [0] * pad)  # padding -> scratch
        nb = max(self.cache.blocks_for(seq.num_cached + len(x)) for seq, x in zip(seqs, inputs, strict=True))
        for seq in seqs:
            row = seq.blocks[:nb]
            tables.append(row + [0] * (nb - len(row)))
        dev = self.device
        pos_t = torch.tensor(positions, device=dev)
        keys = torch.arange(nb * bs, device=dev)
        view = BatchView(
            positions=pos_t,
            slot_ids=torch.tensor(slots, device=dev),
            block_table=torch.tensor(tables, device=dev),
            valid=keys.view(1, 1, -1) <= pos_t.unsqueeze(-1),
            block_size=bs,
        )
        last = torch.tensor([len(x) - 1 for x in inputs], device=dev)
        return view, torch.tensor(tokens, device=dev), last

    def _postprocess(self, results: list[tuple[Sequence, SampledToken]]) -> None:
        for seq, tok in results:
            self.scheduler.commit(seq)  # the blocks this step filled become findable prefixes
            if seq.aborted or seq.finished:
                continue
            p = seq.request.params
            seq.output_ids.append(tok.token_id)
            if p.constraint is not None:
                p.constraint.advance(tok.token_id)
            self._stats.generated_tokens += 1
            reason = None
            stop_ids = p.stop_token_ids if p.ignore_eos else [*self.eos_token_ids, *p.stop_token_ids]
            if tok.token_id in stop_ids or (p.constraint is not None and p.constraint.is_terminated()):
                reason = "stop"
            elif len(seq.output_ids) >= p.max_tokens or seq.num_tokens >= self.max_model_len:
                reason = "length"
            if reason is not None:
                self.scheduler.finish(seq)
            seq.queue.put_nowait(EngineOutput([tok], reason, len(seq.request.prompt_token_ids),
                                              seq.prompt_cache_hit or 0))
