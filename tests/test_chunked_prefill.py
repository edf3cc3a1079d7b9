"""Chunked prefill in the meta-reference engine, without Ray: while sequences decode, a long prompt is computed a
budget of tokens a step, the running sequences get a token every one of those steps, and the tokens are the ones
a whole-prompt prefill gives (with prefix caching and aborts)."""

from __future__ import annotations

import asyncio

import torch

from deployments.inference.engine import EngineRequest
from deployments.inference.meta_reference.engine import MetaReferenceEngine
from deployments.inference.meta_reference.kv_cache import PagedKVCache
from deployments.inference.meta_reference.scheduler import Scheduler, Sequence
from deployments.inference.sampling import SamplingParams
from serve.config import MetaReferenceEngineConfig as EngineConfig

LONG = ("The lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the wick, polished the "
        "great lens and watched the ships pass the rocks below, counting them in a worn notebook. One stormy night "
        "a small boat lost its rudder and drifted toward the reef, and the keeper")


def _seq(ids: list[int], max_tokens: int = 8) -> Sequence:
    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    return Sequence(EngineRequest("r", ids, params), params.make_generator())


def test_scheduler_chunks_a_prompt_while_others_decode():
    cache = PagedKVCache(1, 32, 16, 1, 8, torch.float32, "cpu")
    sched = Scheduler(cache, max_num_seqs=4, max_prefill_tokens=4096, prefill_chunk_tokens=16)
    a, b = _seq(list(range(1, 6))), _seq(list(range(100, 150)))
    sched.waiting.append(a)
    plan = sched.schedule()  # nothing decodes: a whole prompt, up to max_prefill_tokens
    assert plan.prefill == [a] and plan.chunks == [5] and not plan.decode
    a.num_cached, a.output_ids = 5, [7]
    sched.waiting.append(b)
    chunks = []
    while True:
        plan = sched.schedule()
        assert plan.decode[0] is a  # a's stream never waits for b's prompt
        a.num_cached, a.output_ids = a.num_cached + 1, [*a.output_ids, 7]
        if not plan.prefill:
            break
        assert plan.prefill == [b]
        chunks += plan.chunks
        b.num_cached += plan.chunks[0]
        if b.num_cached == b.num_tokens:
            b.output_ids.append(9)  # b sampled its first token: it decodes from the next step
    assert chunks == [16, 16, 16, 2]
    assert len(b.blocks) == cache.blocks_for(51)  # all of b's blocks were taken at admission


def _engine(model_dir, chunk: int | None, caching: bool = True) -> MetaReferenceEngine:
    return MetaReferenceEngine.from_checkpoint(model_dir, EngineConfig(
        max_num_seqs=4, kv_cache_tokens=1024, kv_block_size=16, prefill_chunk_tokens=chunk,
        enable_prefix_caching=caching))


async def _long_prompt_during_decode(engine, short: list[int], long: list[int]) -> tuple[list[int], list[int]]:
    """`long` arrives once `short` has streamed two tokens. Returns both greedy outputs."""
    started = asyncio.Event()

    async def run(ids, n, signal=None):
        toks = []
        params = SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)
        async for out in engine.generate(EngineRequest("r", ids, params)):
            toks += [t.token_id for t in out.tokens]
            if signal is not None and len(toks) == 2:
                signal.set()
        return toks

    first = asyncio.ensure_future(run(short, 24, started))
    await started.wait()
    second = await run(long, 8)
    return await first, second


def test_chunked_prefill_gives_whole_prefill_tokens(smollm2_dir, tokenizer):
    short = tokenizer.encode("Once upon a time", add_special_tokens=False)
    long = tokenizer.encode(LONG, add_special_tokens=False)
    assert len(long) > 3 * 16
    chunked, whole = _engine(smollm2_dir, 16), _engine(smollm2_dir, None)
    plans = []
    schedule = chunked.scheduler.schedule
    chunked.scheduler.schedule = lambda: plans.append(p := schedule()) or p  # record the plans
    got = asyncio.run(_long_prompt_during_decode(chunked, short, long))
    assert got == asyncio.run(_long_prompt_during_decode(whole, short, long))
    mixed = [p.chunks for p in plans if p.decode and p.prefill]
    assert len(mixed) >= 3 and all(c == [16] for c in mixed[:3])  # chunks rode along with the decode steps
    # a second time the long prompt's first blocks come from the prefix cache; the rest is chunked again
    again = asyncio.run(_long_prompt_during_decode(chunked, short, long))
    assert again == got
    assert chunked.stats().prefix_cache_hits >= 16
    assert chunked.cache.free_blocks == chunked.cache.usable_blocks


def test_abort_during_chunked_prefill_frees_blocks(smollm2_dir, tokenizer):
    engine = _engine(smollm2_dir, 16, caching=False)
    short = tokenizer.encode("Once upon a time", add_special_tokens=False)
    long = tokenizer.encode(LONG, add_special_tokens=False)

    async def main():
        started = asyncio.Event()

        async def decode():
            params = SamplingParams(max_tokens=30, temperature=0, ignore_eos=True)
            n = 0
            async for _ in engine.generate(EngineRequest("a", short, params)):
                n += 1
                if n == 2:
                    started.set()

        a = asyncio.ensure_future(decode())
        await started.wait()
        gen = engine.generate(EngineRequest("b", long, SamplingParams(max_tokens=8, temperature=0)))
        b = asyncio.ensure_future(gen.__anext__())
        while not any(s.num_cached for s in engine.scheduler.running if s.request.request_id == "b"):
            await asyncio.sleep(0.01)
        b.cancel()  # mid-prompt: some chunks computed, no token yet; the stream's close marks it aborted
        await asyncio.gather(b, return_exceptions=True)
        await a

    asyncio.run(main())
    assert not engine.scheduler.running and not engine.scheduler.waiting
    assert engine.cache.free_blocks == engine.cache.usable_blocks
