"""Workload generation (exact prompt lengths, reproducible by seed) and Poisson / gamma arrival statistics."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest

from benchmarks.load import LoadSpec, arrival_times
from benchmarks.workloads import PromptMaker, WorkloadError, generate, load_tokenizer, parse_workload


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    return load_tokenizer(str(smollm2_dir))  # the cached one `stackserve bench` uses (loaded once per session)


@pytest.fixture(scope="module")
def maker(tokenizer) -> PromptMaker:
    return PromptMaker(tokenizer)


def test_parse_workload_specs():
    assert parse_workload("fixed:128:128").name == "fixed-128-128"
    chat = parse_workload("chat")
    assert (chat.kind, chat.input_len, chat.output_len) == ("chat", 256, 128)
    p = parse_workload("prefix:512:64:128:4")
    assert (p.prefix_len, p.input_len, p.output_len, p.num_prefixes) == (512, 64, 128, 4)
    assert parse_workload("prefix:512:64:128").num_prefixes == 1
    for bad in ("fixed:128", "fixed:a:b", "fixed:0:5", "zipf:1:2", "chat:1"):
        with pytest.raises(WorkloadError):
            parse_workload(bad)


def test_fixed_prompts_have_exact_token_counts(maker, tokenizer):
    assert maker.exact
    for n in (1, 128, 1024):
        (item,) = generate(parse_workload(f"fixed:{n}:16"), 1, maker, seed=n)
        assert item.input_tokens == n
        assert len(tokenizer.encode(item.prompt, add_special_tokens=False)) == n
        assert item.output_tokens == 16


def test_generation_is_reproducible_by_seed(maker):
    spec = parse_workload("chat")
    a, b = generate(spec, 20, maker, seed=7), generate(spec, 20, maker, seed=7)
    assert a == b
    assert generate(spec, 20, maker, seed=8) != a


def test_chat_lengths_are_long_tailed_and_bounded(maker):
    items = generate(parse_workload("chat:64:32"), 400, maker, seed=1)
    ins = np.array([i.input_tokens for i in items])
    outs = np.array([i.output_tokens for i in items])
    assert 48 <= np.median(ins) <= 84 and 24 <= np.median(outs) <= 42
    assert ins.max() > 3 * np.median(ins)  # a long tail, unlike fixed lengths
    assert ins.min() >= 16 and outs.min() >= 8 and ins.max() <= 2048 and outs.max() <= 1024
    assert all(maker.count(i.prompt) == i.input_tokens for i in items[:20])


def test_shared_prefix_prompts(maker):
    items = generate(parse_workload("prefix:64:16:8:3"), 9, maker, seed=0)
    assert [i.prefix_id for i in items] == [0, 1, 2] * 3
    assert all(i.input_tokens == 80 and maker.count(i.prompt) == 80 for i in items)
    prefix_ids = [maker.tokenizer.encode(i.prompt, add_special_tokens=False)[:64] for i in items]
    assert prefix_ids[0] == prefix_ids[3] == prefix_ids[6] != prefix_ids[1]
    assert len({i.prompt for i in items}) == 9  # suffixes differ


def _gaps(rate: float, burstiness: float, n: int, seed: int = 0) -> np.ndarray:
    return np.diff(np.fromiter(islice(arrival_times(rate, burstiness, np.random.default_rng(seed)), n + 1), float))


def test_poisson_arrivals():
    times = list(islice(arrival_times(10.0, 1.0, np.random.default_rng(0)), 20001))
    assert times[0] == 0.0
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)  # exponential: coefficient of variation 1
    # counts per 1 s window are Poisson(10): variance / mean ~ 1
    counts = np.bincount(np.floor(times).astype(int))[:-1]
    assert counts.mean() == pytest.approx(10, rel=0.05)
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.15)
    # memoryless: P(gap > 0.1) = e^-1
    assert (gaps > 0.1).mean() == pytest.approx(np.exp(-1), abs=0.02)


def test_burstiness_changes_variance_not_rate():
    for shape in (0.25, 4.0):
        gaps = _gaps(5.0, shape, 20000)
        assert gaps.mean() == pytest.approx(0.2, rel=0.05)
        assert gaps.std() / gaps.mean() == pytest.approx(1 / np.sqrt(shape), rel=0.08)


def test_arrivals_are_reproducible_and_infinite_rate_sends_at_once():
    assert np.array_equal(_gaps(3.0, 1.0, 50, seed=5), _gaps(3.0, 1.0, 50, seed=5))
    assert not np.array_equal(_gaps(3.0, 1.0, 50, seed=5), _gaps(3.0, 1.0, 50, seed=6))
    assert list(islice(arrival_times(float("inf"), 1.0, np.random.default_rng(0)), 5)) == [0.0] * 5


def test_load_spec_validation():
    with pytest.raises(ValueError):
        LoadSpec("concurrency", 4)  # neither count nor duration
    with pytest.raises(ValueError):
        LoadSpec("rate", float("inf"), duration_s=10)
    with pytest.raises(ValueError):
        LoadSpec("concurrency", 2.5, num_requests=3)
    assert LoadSpec("rate", float("inf"), num_requests=3).label == "rate=inf"
    assert LoadSpec("concurrency", 16, num_requests=3).label == "c=16"


def test_multiturn_histories_grow_turn_by_turn(maker, tokenizer):
    spec = parse_workload("multiturn:64:8:16:3")
    assert (spec.kind, spec.prefix_len, spec.input_len, spec.output_len, spec.num_prefixes) == ("multiturn", 64, 8,
                                                                                                16, 3)
    assert parse_workload("multiturn:64:8:16").num_prefixes == 4
    items = generate(spec, 9, maker, seed=3)  # 3 users x 3 turns, turn-major
    assert [i.prefix_id for i in items] == [0, 1, 2] * 3
    assert [i.input_tokens for i in items] == [64] * 3 + [88] * 3 + [112] * 3  # + answer (16) + question (8)
    for u in range(3):
        turns = [i.prompt for i in items if i.prefix_id == u]
        assert turns[1].startswith(turns[0]) and turns[2].startswith(turns[1])  # the history is resent
        assert len(tokenizer.encode(turns[2], add_special_tokens=False)) == 112
    assert items[0].prompt[:40] != items[1].prompt[:40]  # users do not share a prefix
    assert generate(spec, 9, maker, seed=3) == items
