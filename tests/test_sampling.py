import torch

from deployments.inference.sampling import SamplingParams, apply_penalties, sample


def _logits(B=3, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, V, generator=g) * 3


def test_greedy_is_argmax():
    logits = _logits()
    ps = [SamplingParams(temperature=0)] * 3
    out = sample(logits.clone(), ps, [p.make_generator() for p in ps])
    assert [t.token_id for t in out] == logits.argmax(-1).tolist()


def test_top_k_1_equals_greedy():
    logits = _logits()
    ps = [SamplingParams(temperature=1.5, top_k=1, seed=i) for i in range(3)]
    out = sample(logits.clone(), ps, [p.make_generator() for p in ps])
    assert [t.token_id for t in out] == logits.argmax(-1).tolist()


def test_top_p_keeps_only_the_nucleus():
    logits = torch.full((1, 10), -10.0)
    logits[0, 3], logits[0, 7] = 5.0, 4.0  # ~73% / ~27%: top_p=0.5 keeps only token 3
    ps = [SamplingParams(temperature=1.0, top_p=0.5)]
    for s in range(20):
        ps[0].seed = s
        assert sample(logits.clone(), ps, [ps[0].make_generator()])[0].token_id == 3


def test_seed_is_per_row_and_independent_of_batch():
    logits = _logits(B=4)
    alone = SamplingParams(temperature=1.0, seed=42)
    a = sample(logits[1:2].clone(), [alone], [alone.make_generator()])[0].token_id
    ps = [SamplingParams(temperature=1.0, seed=s) for s in (7, 42, 9, 11)]
    b = sample(logits.clone(), ps, [p.make_generator() for p in ps])[1].token_id
    assert a == b


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    p = SamplingParams(temperature=1.0, seed=0)
    g = p.make_generator()
    counts = torch.zeros(3)
    for _ in range(2000):
        counts[sample(logits.clone(), [p], [g])[0].token_id] += 1
    assert torch.allclose(counts / 2000, torch.tensor([0.7, 0.2, 0.1]), atol=0.04)


def test_penalties_and_bias():
    logits = torch.zeros(1, 5)
    p = SamplingParams(presence_penalty=1.0, frequency_penalty=0.5, logit_bias={4: 3.0})
    apply_penalties(logits, [p], [[1, 1, 2]])
    assert logits[0].tolist() == [0.0, -2.0, -1.5, 0.0, 3.0]


def test_logprobs_shape():
    logits = _logits(B=1)
    p = SamplingParams(temperature=0, logprobs=3)
    t = sample(logits.clone(), [p], [p.make_generator()])[0]
    ref = logits.log_softmax(-1)[0]
    assert abs(t.logprob - ref.max().item()) < 1e-5
    assert [i for i, _ in t.top_logprobs] == ref.topk(3).indices.tolist()


def test_repetition_penalty_scales_seen_tokens_of_prompt_and_output():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0, 1.0]])
    p = SamplingParams(repetition_penalty=2.0)
    apply_penalties(logits, [p], [[1]], [[0, 0]])  # prompt saw token 0, the output token 1
    assert logits[0].tolist() == [1.0, -4.0, 2.0, -2.0, 1.0]  # positive logits shrink, negative ones grow
    untouched = torch.tensor([[2.0, -2.0]])
    apply_penalties(untouched, [SamplingParams()], [[0, 1]], [[0]])
    assert untouched[0].tolist() == [2.0, -2.0]


def test_an_all_greedy_batch_is_argmax_without_draws():
    torch.manual_seed(1)
    logits = torch.randn(4, 50)
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    states = [g.get_state() for g in gens]
    out = sample(logits.clone(), [SamplingParams(temperature=0.0)] * 4, gens)
    assert [t.token_id for t in out] == logits.argmax(-1).tolist()
    assert all(torch.equal(g.get_state(), s) for g, s in zip(gens, states, strict=True))
    # one sampled row in the batch: the greedy rows still take the argmax
    mixed = [SamplingParams(temperature=0.0)] * 3 + [SamplingParams(temperature=1.0, seed=3)]
    out = sample(logits.clone(), mixed, gens)
    assert [t.token_id for t in out[:3]] == logits[:3].argmax(-1).tolist()
