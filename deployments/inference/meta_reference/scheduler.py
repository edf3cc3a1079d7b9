"""Continuous-batching scheduler: admits waiting sequences by free KV capacity, grows running ones block by block,
and preempts (recompute) the newest sequence when the cache runs out.

With prefix caching a sequence is admitted holding the cached blocks that match the start of its tokens and
prefills only the rest; once a step has filled a block, `commit` makes it findable for later sequences.
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
    prefill: list[Sequence]  # each computes all_ids[num_cached:] (num_cached: its prefix-cache hit, else 0)
    decode: list[Sequence]  # each computes its last token


class Scheduler:
    def __init__(self, cache: PagedKVCache, max_num_seqs: int, max_prefill_tokens: int):
        self.cache = cache
        self.max_num_seqs = max_num_seqs
        self.max_prefill_tokens = max_prefill_tokens
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
        # Make room for one more token in every running sequence, preempting the newest when out of blocks.
        decode: list[Sequence] = []
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
                decode.append(seq)
        # Admit waiting sequences in arrival order while slots, blocks and the prefill budget allow.
        prefill: list[Sequence] = []
        budget = self.max_prefill_tokens
        while self.waiting and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if not self._admit(seq, budget, first=not prefill):
                break
            self.waiting.popleft()
            self.running.append(seq)
            prefill.append(seq)
            budget -= len(seq.all_ids) - seq.num_cached
        return StepPlan(prefill=prefill, decode=decode)

    def _admit(self, seq: Sequence, budget: int, first: bool) -> bool:
        """Give `seq` its cached prefix blocks plus fresh ones for the rest and one more token, if the budget (a
        step's first sequence ignores it) and the cache allow. The last token is always computed, even when the
        whole prompt is cached, so its logits exist to sample from: a hit covers at most n - 1 tokens."""
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
