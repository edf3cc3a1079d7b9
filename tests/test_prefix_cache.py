"""Automatic prefix caching in the meta-reference engine, without Ray: the block pool's bookkeeping, prefills that
compute only new tokens yet sample what an uncached engine samples, and reference counts that settle after
eviction, preemption, aborts and n > 1; usage's cached_tokens through the OpenAI layer."""

from __future__ import annotations

import asyncio
import json

import pytest

from deployments.inference.engine import EngineRequest
from deployments.inference.meta_reference.block_pool import BlockPool, block_hash
from deployments.inference.meta_reference.engine import MetaReferenceEngine
from deployments.inference.sampling import SamplingParams
from deployments.inference.serving import OpenAIServing
from serve.config import MetaReferenceEngineConfig as EngineConfig
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest

BS = 16
STORY = ("The lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the wick, polished the "
         "great lens and watched the ships pass the rocks below. One stormy night a small boat lost its rudder and "
         "drifted toward the reef, and the keeper")


def _engine(model_dir, caching: bool = True, **kw) -> MetaReferenceEngine:
    cfg = {"max_num_seqs": 4, "kv_cache_tokens": 1024, "kv_block_size": BS, **kw}
    return MetaReferenceEngine.from_checkpoint(model_dir, EngineConfig(enable_prefix_caching=caching, **cfg))


async def _run(engine, prompt, max_tokens=8, **kw) -> tuple[list[int], int]:
    """(greedy tokens, the prompt tokens the engine reported cached)."""
    toks, cached = [], -1
    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True, **kw)
    async for out in engine.generate(EngineRequest("r", prompt, params)):
        toks += [t.token_id for t in out.tokens]
        cached = out.num_cached_tokens
    return toks, cached


def _settled(engine: MetaReferenceEngine) -> None:
    """Nothing runs: no block is referenced, every block is free or an evictable cached prefix."""
    pool = engine.cache.pool
    assert not engine.scheduler.running and not engine.scheduler.waiting
    assert all(r == 0 for r in pool.ref)
    assert pool.num_free == engine.cache.usable_blocks
    assert pool.num_evictable == pool.num_cached


def _expected_hit(shared: int, n: int) -> int:
    """Full blocks of the shared prefix, leaving the prompt's last token to compute."""
    return min(shared // BS, (n - 1) // BS) * BS


@pytest.fixture(scope="module")
def ids(tokenizer) -> list[int]:
    return tokenizer.encode(STORY, add_special_tokens=False)


@pytest.fixture(scope="module")
def cached_engine(smollm2_dir):
    engine = _engine(smollm2_dir)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def plain_engine(smollm2_dir):
    engine = _engine(smollm2_dir, caching=False)
    yield engine
    engine.shutdown()


# ---- the block pool --------------------------------------------------------------------------------------------


def test_pool_shares_keeps_and_evicts_least_recently_released():
    pool = BlockPool(num_blocks=5, block_size=2)  # blocks 1..4
    a = pool.allocate(2)
    h0 = block_hash(None, [7, 8])
    h1 = block_hash(h0, [9, 10])
    pool.register(a[0], h0)
    pool.register(a[1], h1)
    assert pool.match([7, 8, 9, 10, 11], 2) == (a, [h0, h1])
    assert pool.match([7, 8, 9, 99], 2) == (a[:1], [h0])
    assert pool.match([1, 2, 9, 10], 2) == ([], [])  # same block, other parent: no hit
    shared, _ = pool.match([7, 8, 9, 10], 2)
    pool.acquire(shared)
    assert pool.ref[a[0]] == 2
    pool.release(list(a))  # release empties the list it is given
    assert pool.ref[a[0]] == 1 and pool.num_evictable == 0
    pool.release(shared)
    assert pool.num_evictable == 2 and pool.num_free == 4  # kept, yet allocatable
    b = pool.allocate(3)  # two free ones first, then the LRU cached block: the tail (released first)
    assert a[1] in b and a[0] not in b and pool.num_evicted == 1
    assert pool.match([7, 8, 9, 10], 2)[0] == [a[0]]
    assert pool.allocate(2) is None  # only one left: nothing taken
    assert pool.num_free == 1


def test_pool_without_caching_frees_at_once():
    pool = BlockPool(num_blocks=3, block_size=2, enable_prefix_caching=False)
    a = pool.allocate(2)
    pool.register(a[0], block_hash(None, [1, 2]))
    assert pool.match([1, 2, 3], 1) == ([], []) and pool.num_cached == 0
    pool.release(list(a))  # release empties the list it is given
    assert pool.num_free == 2 and pool.num_evictable == 0


# ---- the engine ------------------------------------------------------------------------------------------------


def test_second_request_computes_only_its_new_tokens(cached_engine, plain_engine, ids, tokenizer):
    first = ids + tokenizer.encode(" rang the bell.", add_special_tokens=False)
    second = ids + tokenizer.encode(" lit a flare and shouted", add_special_tokens=False)

    async def main():
        await _run(cached_engine, first)
        before = cached_engine.stats().prefill_tokens
        toks, cached = await _run(cached_engine, second)
        return toks, cached, cached_engine.stats().prefill_tokens - before

    toks, cached, computed = asyncio.run(main())
    hit = _expected_hit(len(ids), len(second))
    assert hit >= 2 * BS and cached == hit
    assert computed == len(second) - hit
    assert toks == asyncio.run(_run(plain_engine, second))[0]
    # the whole prompt again: every full block but the one holding the last token
    again, cached = asyncio.run(_run(cached_engine, second))
    assert again == toks and cached == _expected_hit(len(second), len(second))
    s = cached_engine.stats()
    assert s.prefix_cache_hits > 0 and s.prefix_cache_queries >= s.prefix_cache_hits + len(first)
    _settled(cached_engine)


def test_prompt_of_whole_blocks_still_computes_its_last_token(cached_engine, plain_engine, ids):
    prompt = ids[:3 * BS]

    async def main():
        await _run(cached_engine, prompt)
        before = cached_engine.stats().prefill_tokens
        out = await _run(cached_engine, prompt)
        return out, cached_engine.stats().prefill_tokens - before

    (toks, cached), computed = asyncio.run(main())
    assert cached == 2 * BS and computed == BS  # the third block is recomputed, not shared (it gets written)
    assert toks == asyncio.run(_run(plain_engine, prompt))[0]
    _settled(cached_engine)


def test_eviction_under_a_small_cache_stays_correct(smollm2_dir, plain_engine, ids, tokenizer):
    # 8 blocks; each prompt needs 6: cached prefixes are evicted (least recently released first) and recomputed
    engine = _engine(smollm2_dir, kv_cache_tokens=8 * BS, max_num_seqs=2)
    base = (ids * 2)[:80]
    tails = [" rang the bell.", " slept.", " lit a flare.", " rang the bell."]
    prompts = [base + tokenizer.encode(t, add_special_tokens=False) for t in tails]
    prompts.insert(2, tokenizer.encode("Something else entirely, about gardens and bees " * 12,
                                       add_special_tokens=False)[:80])

    async def main():
        return [await _run(engine, p, max_tokens=6) for p in prompts]

    got = asyncio.run(main())
    want = [asyncio.run(_run(plain_engine, p, max_tokens=6))[0] for p in prompts]
    assert [g[0] for g in got] == want
    assert got[1][1] > 0  # the story prefix was still there
    assert engine.cache.pool.num_evicted > 0
    assert engine.cache.pool.num_cached <= engine.cache.usable_blocks
    _settled(engine)
    engine.shutdown()


def test_preemption_and_concurrent_sharing_keep_refcounts(smollm2_dir, plain_engine, ids):
    # 14 blocks for 4 sequences sharing a 3-block prefix and each growing by 48 tokens: some are preempted, and
    # their recompute may itself hit the cache
    engine = _engine(smollm2_dir, kv_cache_tokens=14 * BS, max_num_seqs=4)
    prompt = ids[:50]
    want = asyncio.run(_run(plain_engine, prompt, max_tokens=48))[0]

    async def main():
        await _run(engine, prompt, max_tokens=2)  # warm the cache
        return await asyncio.gather(*[_run(engine, prompt, max_tokens=48) for _ in range(4)])

    results = asyncio.run(main())
    assert all(toks == want for toks, _ in results)
    assert all(cached == 3 * BS for _, cached in results)
    assert engine.scheduler.num_preempted > 0
    _settled(engine)
    engine.shutdown()


def test_abort_releases_shared_blocks(cached_engine, ids):
    async def main():
        await _run(cached_engine, ids, max_tokens=2)
        gens = [cached_engine.generate(EngineRequest(str(i), ids, SamplingParams(max_tokens=200, ignore_eos=True)))
                for i in range(3)]
        for g in gens:
            await g.__anext__()
        assert max(cached_engine.cache.pool.ref) >= 3  # the prefix blocks are shared by all three
        for g in gens:
            await g.aclose()
        for _ in range(100):
            if not cached_engine.scheduler.running:
                break
            await asyncio.sleep(0.02)

    asyncio.run(main())
    _settled(cached_engine)


def test_concurrent_identical_prompts_n_gt_1(cached_engine, plain_engine, ids):
    """Like n > 1: copies of one prompt admitted in one step compute it each (nothing is registered until a step
    has filled the blocks) and keep one copy of each block in the cache; later copies share it."""
    prompt = ids[5:90]
    want = asyncio.run(_run(plain_engine, prompt))[0]

    async def main():
        first = await asyncio.gather(*[_run(cached_engine, prompt) for _ in range(3)])
        later = await asyncio.gather(*[_run(cached_engine, prompt) for _ in range(3)])
        return first, later

    first, later = asyncio.run(main())
    assert [t for t, _ in first + later] == [want] * 6
    assert [c for _, c in first] == [0, 0, 0]
    assert [c for _, c in later] == [_expected_hit(len(prompt), len(prompt))] * 3
    _settled(cached_engine)


# ---- usage through the OpenAI layer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_serving(tiny_model_dir):
    from transformers import AutoTokenizer

    engine = _engine(tiny_model_dir, max_num_seqs=4, kv_cache_tokens=2048)
    yield OpenAIServing(engine, AutoTokenizer.from_pretrained(tiny_model_dir), "tiny")
    engine.shutdown()


def test_usage_reports_cached_tokens_with_structured_output_and_n(tiny_serving):
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
              "additionalProperties": False}
    req = ChatCompletionRequest(model="tiny", messages=[{"role": "system", "content": STORY},
                                                        {"role": "user", "content": "How many ships?"}],
                                max_tokens=20, temperature=0, n=2,
                                response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})

    async def main():
        return await tiny_serving.chat(req), await tiny_serving.chat(req)

    cold, warm = asyncio.run(main())
    p = warm["usage"]["prompt_tokens"]
    assert cold["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] == (p - 1) // BS * BS > 0
    for ch in warm["choices"]:
        json.loads(ch["message"]["content"])
    assert [c["message"] for c in warm["choices"]] == [c["message"] for c in cold["choices"]]
    _settled(tiny_serving.engine)


def test_completion_usage_sums_cached_tokens_per_prompt(tiny_serving):
    prompt = list(range(100, 100 + 3 * BS + 5))
    req = CompletionRequest(model="tiny", prompt=[prompt, prompt[:2 * BS + 1]], max_tokens=3, temperature=0)

    async def main():
        await tiny_serving.completion(CompletionRequest(model="tiny", prompt=prompt, max_tokens=1))
        return await tiny_serving.completion(req)

    usage = asyncio.run(main())["usage"]
    assert usage["prompt_tokens"] == len(prompt) + 2 * BS + 1
    assert usage["prompt_tokens_details"] == {"cached_tokens": 3 * BS + 2 * BS}
