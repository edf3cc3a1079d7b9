"""Sampling parameters and the batched sampler (pure torch, engine-independent).

Every row of a batch samples with its own parameters and its own random generator, so a seeded request gives
the same tokens whatever else shares its batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


class TokenConstraint(Protocol):
    """Per-request decoding constraint (structured output, tool calls): which tokens may come next."""

    def apply(self, logits: torch.Tensor, remaining: int) -> None:
        """Mask one row of logits ([vocab], in place) to the allowed next tokens; `remaining` is the token budget
        left including this token, so a constraint can close its structure in time."""

    def confirm(self, token_id: int, remaining: int) -> int:
        """The token to emit given the sampled one (a constraint may replace it to finish within budget)."""

    def advance(self, token_id: int) -> None:
        """Record the emitted token."""

    def is_terminated(self) -> bool:
        """True when the constrained structure is complete (the request ends with finish_reason stop)."""


@dataclass
class OutputGrammar:
    """The grammar behind a request's constraint, for engines that apply it themselves (vLLM's structured outputs):
    kind "json_schema" (spec: the schema), "json" (any JSON value), "regex" (spec: the pattern) or "grammar"
    (spec: EBNF text)."""

    kind: str
    spec: dict | str | None = None


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: disabled
    seed: int | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0  # multiplicative, over prompt and output tokens (as vLLM and HF apply it)
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: int | None = None  # None: no logprobs; k: the sampled token's logprob plus the top k
    constraint: TokenConstraint | None = None
    grammar: OutputGrammar | None = None  # what `constraint` enforces, for engines with their own grammar masks

    def make_generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        g = torch.Generator(device="cpu")
        if self.seed is not None:
            g.manual_seed(self.seed & 0xFFFF_FFFF_FFFF_FFFF)
        else:
            g.seed()
        return g


LOGPROB_FLOOR = -9999.0  # OpenAI's floor for a log-probability: JSON has no -inf


@dataclass
class SampledToken:
    token_id: int
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None


def apply_penalties(logits: torch.Tensor, params: list[SamplingParams], output_ids: list[list[int]],
                    prompt_ids: list[list[int]] | None = None) -> None:
    """In place: the repetition penalty over each row's prompt and generated tokens, OpenAI presence/frequency
    penalties over its generated tokens, then logit_bias."""
    for row, (p, ids) in enumerate(zip(params, output_ids, strict=True)):
        if p.repetition_penalty != 1.0:
            seen = torch.tensor(sorted({*ids, *(prompt_ids[row] if prompt_ids else ())}), device=logits.device,
                                dtype=torch.long)
            if len(seen):
                vals = logits[row, seen]
                logits[row, seen] = torch.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
        if (p.presence_penalty or p.frequency_penalty) and ids:
            uniq, counts = torch.tensor(ids, device=logits.device).unique(return_counts=True)
            logits[row, uniq] -= p.frequency_penalty * counts.to(logits.dtype) + p.presence_penalty
        if p.logit_bias:
            idx = torch.tensor(list(p.logit_bias.keys()), device=logits.device)
            logits[row, idx] += torch.tensor(list(p.logit_bias.values()), device=logits.device, dtype=logits.dtype)


def apply_constraints(logits: torch.Tensor, params: list[SamplingParams], remaining: list[int]) -> None:
    """In place: forbid tokens a row's constraint does not allow."""
    for row, p in enumerate(params):
        if p.constraint is not None:
            p.constraint.apply(logits[row], remaining[row])


def confirm_constraints(sampled: list[SampledToken], params: list[SamplingParams], remaining: list[int]) -> None:
    """In place: let each row's constraint replace a sampled token that would break its budget."""
    for t, p, r in zip(sampled, params, remaining, strict=True):
        if p.constraint is not None:
            tok = p.constraint.confirm(t.token_id, r)
            if tok != t.token_id:
                t.token_id, t.logprob, t.top_logprobs = tok, None if t.logprob is None else 0.0, t.top_logprobs


def _filter_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    # logits: [B, V] already divided by temperature; top_k: [B] (0 = off); top_p: [B]
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(logits.shape[-1], device=logits.device).unsqueeze(0)
    k = torch.where(top_k > 0, top_k, logits.shape[-1]).unsqueeze(1)
    drop = ranks >= k
    probs = sorted_logits.softmax(dim=-1)
    cum_before = probs.cumsum(dim=-1) - probs  # mass strictly above each token
    drop |= cum_before >= top_p.unsqueeze(1)
    drop[:, 0] = False  # the most likely token always stays
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(1, order, sorted_logits)


def _choose(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator]) -> torch.Tensor:
    """The token id of each row ([B]): argmax for greedy rows, an inverse-CDF draw for the others."""
    if all(p.temperature <= 1e-5 for p in params):  # all greedy (the common batch): no distribution, no draws
        return logits.argmax(dim=-1)
    dev = logits.device
    temps = torch.tensor([p.temperature for p in params], device=dev, dtype=logits.dtype)
    greedy = temps <= 1e-5
    scaled = logits / torch.where(greedy, 1.0, temps).unsqueeze(1)
    if any(p.top_p < 1.0 or p.top_k > 0 for p in params):
        top_k = torch.tensor([max(p.top_k, 0) for p in params], device=dev)
        top_p = torch.tensor([p.top_p for p in params], device=dev, dtype=logits.dtype)
        scaled = _filter_top_k_top_p(scaled, top_k, top_p)
    probs = scaled.softmax(dim=-1)
    # Inverse-CDF sampling with one uniform draw per row from that row's own generator.
    u = torch.tensor([torch.rand(1, generator=g).item() for g in generators], device=dev, dtype=probs.dtype)
    cdf = probs.cumsum(dim=-1)
    drawn = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).squeeze(1).clamp_(max=logits.shape[-1] - 1)
    return torch.where(greedy, logits.argmax(dim=-1), drawn)


def sample(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator]) -> list[SampledToken]:
    """Sample one token per row. logits: [B, V] fp32 after penalties and constraints."""
    B = logits.shape[0]
    chosen = _choose(logits, params, generators)

    want = [p.logprobs for p in params]
    out: list[SampledToken] = []
    logp = logits.log_softmax(dim=-1) if any(w is not None for w in want) else None
    chosen_list = chosen.tolist()
    for row in range(B):
        tok = chosen_list[row]
        if logp is None or want[row] is None:
            out.append(SampledToken(tok))
            continue
        top = None
        if want[row] > 0:
            vals, idx = logp[row].topk(want[row])
            # tokens a constraint masked (-inf) were never candidates: they are not among the top logprobs
            top = [(i, v) for i, v in zip(idx.tolist(), vals.tolist(), strict=True) if v != float("-inf")]
        out.append(SampledToken(tok, max(float(logp[row, tok]), LOGPROB_FLOOR), top))
    return out
