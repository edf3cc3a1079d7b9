"""The meta-reference engine without Ray: numerics against HF transformers, batching, preemption, aborts."""

import asyncio

import pytest
import torch

from deployments.inference.engine import EngineRequest
from deployments.inference.meta_reference.engine import MetaReferenceEngine
from deployments.inference.sampling import SamplingParams
from serve.config import MetaReferenceEngineConfig as EngineConfig
from serve.errors import InvalidRequestError, OverloadedError


@pytest.fixture(scope="module")
def smol_engine(smollm2_dir):
    return MetaReferenceEngine.from_checkpoint(smollm2_dir, EngineConfig(max_num_seqs=8, kv_cache_tokens=4096))


async def _run(engine, prompt, **kw):
    toks, reason = [], None
    async for out in engine.generate(EngineRequest("r", prompt, SamplingParams(**kw))):
        toks += [t.token_id for t in out.tokens]
        reason = out.finish_reason
    return toks, reason


def test_greedy_matches_hf_transformers(smollm2_dir, smol_engine, tokenizer):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    ids = tokenizer.encode("The three primary colors are", add_special_tokens=False)
    with torch.no_grad():
        ref = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids):].tolist()
    ours, _ = asyncio.run(_run(smol_engine, ids, max_tokens=12, temperature=0, ignore_eos=True))
    assert ours == ref


def test_batched_equals_alone(smol_engine, tokenizer):
    prompts = [tokenizer.encode(p, add_special_tokens=False) for p in
               ["Once upon a time", "def fibonacci(n):", "The weather today is", "1, 2, 3,"]]

    async def main():
        alone = [await _run(smol_engine, p, max_tokens=10, temperature=0, ignore_eos=True) for p in prompts]
        together = await asyncio.gather(*[_run(smol_engine, p, max_tokens=10, temperature=0, ignore_eos=True)
                                          for p in prompts])
        return alone, together

    alone, together = asyncio.run(main())
    assert [a[0] for a in alone] == [t[0] for t in together]
    assert smol_engine.stats().max_batch_size_seen >= 4


def test_preemption_under_small_cache(smollm2_dir, tokenizer):
    # 12 blocks of 16 tokens for 4 sequences that each grow to ~60 tokens: someone must be preempted and recomputed.
    engine = MetaReferenceEngine.from_checkpoint(
        smollm2_dir, EngineConfig(max_num_seqs=4, kv_cache_tokens=192, kv_block_size=16))
    ids = tokenizer.encode("Count with me: one, two, three,", add_special_tokens=False)

    async def main():
        return await asyncio.gather(*[_run(engine, ids, max_tokens=48, temperature=0, ignore_eos=True)
                                      for _ in range(4)])

    results = asyncio.run(main())
    assert all(r == results[0] for r in results)
    assert engine.cache.free_blocks == engine.cache.usable_blocks  # everything released


def test_abort_frees_blocks(smol_engine, tokenizer):
    ids = tokenizer.encode("Tell me a story", add_special_tokens=False)

    async def main():
        gen = smol_engine.generate(EngineRequest("x", ids, SamplingParams(max_tokens=500, ignore_eos=True)))
        await gen.__anext__()
        await gen.aclose()
        for _ in range(50):
            if smol_engine.stats().running == 0:
                break
            await asyncio.sleep(0.02)

    asyncio.run(main())
    assert smol_engine.cache.free_blocks == smol_engine.cache.usable_blocks


def test_limits(smollm2_dir, tokenizer):
    engine = MetaReferenceEngine.from_checkpoint(
        smollm2_dir, EngineConfig(max_num_seqs=1, kv_cache_tokens=512, max_queued_requests=1))
    assert engine.max_model_len == 512  # capped by the cache's capacity
    with pytest.raises(InvalidRequestError):
        asyncio.run(_run(engine, [1] * 500, max_tokens=20))

    async def overload():
        gens = [engine.generate(EngineRequest(str(i), [1, 2, 3], SamplingParams(max_tokens=50))) for i in range(3)]
        await gens[0].__anext__()  # running
        first = asyncio.ensure_future(gens[1].__anext__())  # queued
        await asyncio.sleep(0)
        try:
            await gens[2].__anext__()  # beyond the queue bound
        finally:
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            for g in gens:
                await g.aclose()

    with pytest.raises(OverloadedError):
        asyncio.run(overload())


def test_a_wedged_step_fails_the_health_check(tiny_model_dir):
    """A forward pass that never returns (a hung kernel, a deadlocked device) makes check_health raise, so Ray
    Serve replaces the replica; a healthy engine, idle or busy, passes."""
    import threading

    engine = MetaReferenceEngine.from_checkpoint(tiny_model_dir, EngineConfig(max_num_seqs=2, kv_cache_tokens=1024,
                                                                              step_timeout_s=0.5))
    stuck, execute = threading.Event(), engine._execute

    def wedged(plan):
        stuck.wait(30)
        return execute(plan)

    async def main():
        await engine.check_health()
        await _run(engine, [1, 2, 3], max_tokens=3)  # healthy while it works
        await engine.check_health()
        engine._execute = wedged
        task = asyncio.ensure_future(_run(engine, [1, 2, 3], max_tokens=3))
        await asyncio.sleep(1.0)
        with pytest.raises(RuntimeError, match="wedged"):
            await engine.check_health()
        stuck.set()
        await task
        await engine.check_health()  # the step finished: healthy again

    asyncio.run(main())
