"""Continuous-batching scheduler: admits waiting sequences by free KV capacity, grows running ones block by block,
and preempts (recompute) the newest sequence when the cache runs out.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import torch

from deployments.inference.engine import EngineRequest
from deployments.inference.meta_reference.kv_cache import PagedKVCache


@dataclass(eq=False)
class Sequence:
    request: EngineRequest
    generator: torch.Generator
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    output_ids: list[int] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    num_cached: int = 0  # tokens whose K/V are in the cache
    aborted: bool = False
    finished: bool = False

    @property
    def all_ids(self) -> list[int]:
        return self.request.prompt_token_ids + self.output_ids


@dataclass
class StepPlan:
    prefill: list[Sequence]  # each computes all_ids[num_cached:] (num_cached is 0: fresh or preempted)
    decode: list[Sequence]  # each computes its last token


class Scheduler:
    def __init__(self, cache: PagedKVCache, max_num_seqs: int, max_prefill_tokens: int):
        self.cache = cache
        self.max_num_seqs = max_num_seqs
        self.max_prefill_tokens = max_prefill_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

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
            n = len(seq.all_ids)
            if prefill and n > budget:
                break
            got = self.cache.allocate(self.cache.blocks_for(n + 1))
            if got is None:
                break
            self.waiting.popleft()
            seq.blocks = got
            self.running.append(seq)
            prefill.append(seq)
            budget -= n
        return StepPlan(prefill=prefill, decode=decode)
