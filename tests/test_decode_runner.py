"""The meta-reference decode path without Ray: shape buckets, padded input buffers (what CUDA graphs replay over,
checked here on CPU), oneDNN-packed linear layers, and that each gives the tokens the plain path gives."""

from __future__ import annotations

import asyncio

import pytest
import torch
from torch import nn

from deployments.inference.engine import EngineRequest
from deployments.inference.meta_reference.cpu_linear import PackedLinear, onednn_linear_available, pack_linears
from deployments.inference.meta_reference.decode_runner import (
    DecodeRunner,
    batch_buckets,
    bucket_for,
    width_buckets,
)
from deployments.inference.meta_reference.engine import MetaReferenceEngine
from deployments.inference.sampling import SamplingParams
from serve.config import MetaReferenceEngineConfig as EngineConfig

PROMPTS = ["Once upon a time", "def fibonacci(n):", "The weather today is", "1, 2, 3,", "Dear Sir or Madam,"]


def test_buckets():
    assert batch_buckets(64) == [1, 2, 4, 8, 16, 32, 48, 64]
    assert batch_buckets(20) == [1, 2, 4, 8, 16, 20]
    assert batch_buckets(1) == [1]
    assert width_buckets(128) == [4, 8, 16, 32, 64, 128]
    assert width_buckets(9) == [4, 8, 9]
    assert width_buckets(3) == [3]
    assert [bucket_for([1, 2, 4, 8], n) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
    with pytest.raises(ValueError):
        bucket_for([1, 2, 4], 5)


def _engine(model_dir, packed: bool = False, max_num_seqs: int = 8, **kw) -> MetaReferenceEngine:
    cfg = EngineConfig(max_num_seqs=max_num_seqs, kv_cache_tokens=2048, kv_block_size=16, cpu_packed_linear=packed,
                       **kw)
    return MetaReferenceEngine.from_checkpoint(model_dir, cfg)


def _padded(engine: MetaReferenceEngine) -> MetaReferenceEngine:
    """The engine decoding at bucketed shapes over padded buffers, as it does under CUDA graphs."""
    engine.decoder = DecodeRunner(engine.model, engine.cache, engine.cfg.max_num_seqs, engine.max_model_len,
                                  engine.device, pad=True)
    return engine


async def _greedy(engine, prompts: list[list[int]], max_tokens: int = 24) -> list[list[int]]:
    async def one(i, ids):
        toks = []
        params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
        async for out in engine.generate(EngineRequest(f"r{i}", ids, params)):
            toks += [t.token_id for t in out.tokens]
        return toks

    return list(await asyncio.gather(*[one(i, p) for i, p in enumerate(prompts)]))


def test_fill_pads_rows_and_block_tables(tiny_model_dir):
    engine = _padded(_engine(tiny_model_dir))
    runner = engine.decoder
    bs = runner.block_size
    rows = [[3, 7], [5], [9, 11, 12]]
    positions = [bs + 2, 4, 2 * bs]  # each row's next position sits in its last block
    b, nb = runner.shape_for(3, max(engine.cache.blocks_for(p + 1) for p in positions))
    assert (b, nb) == (4, 4)  # 3 rows -> bucket 4; 3 blocks -> width 4
    runner.fill([101, 102, 103], positions, rows, b, nb)
    assert runner.tokens[:b, 0].tolist() == [101, 102, 103, 0]
    assert runner.positions[:b, 0].tolist() == [*positions, 0]
    assert runner.slot_ids[:b, 0].tolist() == [7 * bs + 2, 5 * bs + 4, 12 * bs + 0, 0]  # padding -> scratch
    assert runner.block_table[:b, :nb].tolist() == [[3, 7, 0, 0], [5, 0, 0, 0], [9, 11, 12, 0], [0, 0, 0, 0]]


def test_padded_decode_gives_the_unpadded_tokens(tiny_model_dir, tokenizer):
    """3 and 5 sequences run padded to batch 4 and 8 and to a 4-block width: the same greedy tokens and (nearly)
    the same logits as the unpadded path, and nothing leaks into the live sequences' cache."""
    prompts = [tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS]
    plain, padded = _engine(tiny_model_dir), _padded(_engine(tiny_model_dir))
    for group in (prompts[:3], prompts):
        assert asyncio.run(_greedy(padded, group)) == asyncio.run(_greedy(plain, group))
    assert padded.stats().max_batch_size_seen == 5
    assert padded.cache.free_blocks == padded.cache.usable_blocks  # every block released

    # the logits themselves, rows of a 3-row step against the same rows unpadded
    cache = plain.cache
    blocks = [cache.allocate(2), cache.allocate(1), cache.allocate(2)]
    positions, tokens = [20, 5, 17], [11, 12, 13]
    with torch.inference_mode():
        for layer in cache.layers:  # some history to attend to
            for t in layer:
                t.normal_()
        ref = plain.decoder.run(tokens, positions, blocks).clone()
        got = DecodeRunner(plain.model, cache, 8, plain.max_model_len, plain.device, pad=True).run(
            tokens, positions, blocks)
    assert got.shape == ref.shape == (3, plain.vocab_size)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_cuda_graphs_need_cuda(tiny_model_dir):
    engine = _engine(tiny_model_dir, cuda_graphs=True)  # ignored on CPU
    assert not engine.decoder.graphs and not engine.decoder.pad
    with pytest.raises(ValueError, match="CUDA"):
        DecodeRunner(engine.model, engine.cache, 8, engine.max_model_len, engine.device, pad=True, graphs=True)


@pytest.mark.skipif(not onednn_linear_available(), reason="no oneDNN in this torch build")
def test_packed_linear_matches_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.Linear(96, 32, bias=False))
    x = torch.randn(5, 3, 64)
    with torch.inference_mode():
        ref = model(x)
        assert pack_linears(model, batch_hint=4) == 2
        assert all(isinstance(m, PackedLinear) for m in model)
        torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not onednn_linear_available(), reason="no oneDNN in this torch build")
def test_packed_linear_engine_gives_the_plain_tokens(smollm2_dir, tokenizer):
    """SmolLM2 greedy decoding, batched: oneDNN-packed linear layers pick the tokens F.linear picks."""
    prompts = [tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS]
    packed = _engine(smollm2_dir, packed=True)
    assert isinstance(packed.model.lm_head, PackedLinear)
    plain = _engine(smollm2_dir, packed=False)
    assert type(plain.model.lm_head) is nn.Linear
    assert asyncio.run(_greedy(packed, prompts)) == asyncio.run(_greedy(plain, prompts))


def test_engine_options_belong_to_meta_reference():
    from pydantic import ValidationError

    from serve.config.engine import VLLMEngineConfig

    cfg = EngineConfig(cuda_graphs=False, cpu_packed_linear=False)
    assert cfg.cuda_graphs is False and cfg.cpu_packed_linear is False
    assert EngineConfig().cuda_graphs is None and EngineConfig().cpu_packed_linear is True
    with pytest.raises(ValidationError, match="cuda_graphs: only for engine type 'meta-reference'"):
        VLLMEngineConfig(cuda_graphs=True)
