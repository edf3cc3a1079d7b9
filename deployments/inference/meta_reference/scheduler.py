"""Continuous-batching scheduler: admits waiting sequences by free KV capacity, grows running ones block by block,
and preempts (recompute) the newest sequence when the cache runs out.

With prefix caching a sequence is admitted holding the cached blocks that match the start of its tokens and
prefills only the rest; once a step has filled a block, `commit` makes it findable for later sequences.

Chunked prefill: while sequences decode, a step computes at most `prefill_chunk_tokens` prompt tokens, so a long
prompt is computed over several steps (it holds all its blocks from admission) and decoding never waits for a
whole burst of prompts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import torch

from deployments.inference.engine import EngineRequest
from deployments.inference.meta_reference.block_pool import block_hash
from deployments.inference.meta_reference.kv_cache import PagedKVCache


@dataclass(eq=False)
class Sequence:
    request: EngineRequest
    generator: torch.Generator
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    output_ids: list[int] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    num_cached: int = 0  # tokens whose K/V are in the cache
    block_hashes: list[int] = field(default_factory=list)  # chain hashes of blocks[:len(block_hashes)] (full ones)
    prompt_cache_hit: int | None = None  # prompt tokens found in the prefix cache at first admission
    aborted: bool = False
    finished: bool = False

    @property
    def all_ids(self) -> list[int]:
        return self.request.prompt_token_ids + self.output_ids

    @property
    def num_tokens(self) -> int:
        return len(self.request.prompt_token_ids) + len(self.output_ids)

    @property
    def last_token_id(self) -> int:
        return self.output_ids[-1] if self.output_ids else self.request.prompt_token_ids[-1]


@dataclass
class StepPlan:
    prefill: list[Sequence]  # each computes all_ids[num_cached:num_cached + chunk] (its prompt, or a chunk of it)
    decode: list[Sequence]  # each computes its last token
    chunks: list[int] = field(default_factory=list)  # per prefill sequence: tokens it computes this step


class Scheduler:
    def __init__(self, cache: PagedKVCache, max_num_seqs: int, max_prefill_tokens: int,
                 prefill_chunk_tokens: int | None = None):
        self.cache = cache
        self.max_num_seqs = max_num_seqs
        self.max_prefill_tokens = max_prefill_tokens
        # while sequences decode, a step computes at most this many prompt tokens, in chunks of longer prompts, so
        # a burst of prompts does not stall their tokens; None: whole prompts, max_prefill_tokens a step
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.prefix_cache_queries = 0  # prompt tokens looked up in the prefix cache (first admissions)
        self.prefix_cache_hits = 0  # of those, tokens found cached
        self.num_preempted = 0

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def finish(self, seq: Sequence) -> None:
        seq.finished = True
        self.cache.release(seq.blocks)
        if seq in self.running:
            self.running.remove(seq)

    def _drop_aborted(self) -> None:
        for seq in [s for s in self.running if s.aborted]:
            self.finish(seq)
        if any(s.aborted for s in self.waiting):
            self.waiting = deque(s for s in self.waiting if not s.aborted)

    def _preempt(self, seq: Sequence) -> None:
        """Free a running sequence's cache; it re-enters the queue head and recomputes its tokens later."""
        self.cache.release(seq.blocks)
        seq.num_cached = 0
        seq.block_hashes.clear()
        self.num_preempted += 1
        self.running.remove(seq)
        self.waiting.appendleft(seq)

    def schedule(self) -> StepPlan:
        self._drop_aborted()
        decode, partial = self._grow_running()
        # Prompt tokens this step: sequences part-way through their prompt go on, then waiting ones are admitted
        # in arrival order while slots, blocks and the budget allow.
        chunked = self.prefill_chunk_tokens is not None
        budget = self.prefill_chunk_tokens if chunked and decode else self.max_prefill_tokens
        plan = StepPlan(prefill=[], decode=decode)
        for seq in partial:
            if budget <= 0:
                break
            budget -= self._plan_prefill(plan, seq, budget)
        while self.waiting and len(self.running) < self.max_num_seqs and budget > 0:
            seq = self.waiting[0]
            if not self._admit(seq, budget, first=not plan.prefill or chunked):
                break
            self.waiting.popleft()
            self.running.append(seq)
            budget -= self._plan_prefill(plan, seq, budget if chunked else seq.num_tokens)
        return plan

    @staticmethod
    def _plan_prefill(plan: StepPlan, seq: Sequence, budget: int) -> int:
        n = min(budget, seq.num_tokens - seq.num_cached)
        plan.prefill.append(seq)
        plan.chunks.append(n)
        return n

    def _grow_running(self) -> tuple[list[Sequence], list[Sequence]]:
        """Make room for one more token in every running sequence, preempting the newest when out of blocks.
        Returns the sequences that decode (only their last token is uncomputed) and those part-way through
        their prompt (chunked prefill)."""
        decode: list[Sequence] = []
        partial: list[Sequence] = []
        for seq in list(self.running):
            if seq not in self.running:
                continue  # preempted below for an older sequence
            need = self.cache.blocks_for(seq.num_cached + 1) - len(seq.blocks)
            while need > 0:
                got = self.cache.allocate(need)
                if got is not None:
                    seq.blocks.extend(got)
                    need = 0
                    break
                victim = self.running[-1]
                self._preempt(victim)
                if victim is seq:
                    break
            if seq in self.running:
                (decode if seq.num_cached == seq.num_tokens - 1 else partial).append(seq)
        return decode, partial

    def _admit(self, seq: Sequence, budget: int, first: bool) -> bool:
        """Give `seq` its cached prefix blocks plus fresh ones for the rest and one more token, if the budget (a
        step's first sequence ignores it, and so does chunked prefill) and the cache allow. The last token is
        always computed, even when the whole prompt is cached, so its logits exist to sample from: a hit covers
        at most n - 1 tokens."""
        ids = seq.all_ids
        n = len(ids)
        bs = self.cache.block_size
        hit, hashes = self.cache.pool.match(ids, (n - 1) // bs)
        if not first and n - len(hit) * bs > budget:
            return False
        self.cache.pool.acquire(hit)
        got = self.cache.allocate(self.cache.blocks_for(n + 1) - len(hit))
        if got is None:
            self.cache.release(hit)
            return False
        seq.blocks = hit + got
        seq.block_hashes = hashes
        seq.num_cached = len(hit) * bs
        if seq.prompt_cache_hit is None:
            seq.prompt_cache_hit = seq.num_cached
            self.prefix_cache_queries += n
            self.prefix_cache_hits += seq.num_cached
        return True

    def commit(self, seq: Sequence) -> None:
        """Register the blocks `seq` has filled since the last call with the prefix cache."""
        bs = self.cache.block_size
        full = min(seq.num_cached // bs, len(seq.blocks))
        if not self.cache.pool.enable_prefix_caching or len(seq.block_hashes) >= full:
            return
        ids = seq.all_ids
        for i in range(len(seq.block_hashes), full):
            h = block_hash(seq.block_hashes[-1] if i else None, ids[i * bs:(i + 1) * bs])
            seq.block_hashes.append(h)
            self.cache.pool.register(seq.blocks[i], h)
