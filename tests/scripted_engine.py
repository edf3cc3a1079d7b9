"""A scripted engine for tests and benchmarks: answers by rules on the prompt text instead of a model.

For where the model's output is the variable under test (a guard that must say `unsafe\\nS1,S10`), while everything
around it (the OpenAI layer, the deployment, the handles) stays real. Rules are tried in order; the first whose
`if_contains` is in the decoded prompt (or has none) gives the reply. It honours what the OpenAI layer asks of an
engine: max_tokens, stop token ids, and (unless `constrained` is off) a request's token constraint (structured
output, forced tool calls): the reply's tokens are emitted while the constraint allows them, then the constraint's
own closing path. With `constrained` off it answers its script whatever the grammar, like an engine that ignores
grammars, so a caller's handling of output it did not ask for can be tested.

Inject it with `build_graph(config, engines={model_id: ScriptedEngineFactory(rules)})`; `shipped()` makes Ray
pickle this module by value, since replicas cannot import `tests`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deployments.inference.engine import EngineOutput, EngineRequest, EngineStats
from deployments.inference.sampling import SampledToken, SamplingParams


class ScriptedEngine:
    provider_type = "inline::scripted"

    def __init__(self, tokenizer: Any, rules: list[dict[str, str]], max_model_len: int = 4096,
                 logprob: float = -0.5, constrained: bool = True):
        self.tokenizer = tokenizer
        self.rules = rules
        self.constrained = constrained
        self.max_model_len = max_model_len
        self.vocab_size = len(tokenizer)
        self.eos_token_ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self.logprob = logprob  # every scripted token's logprob, when asked for
        self._stats = EngineStats()

    def reply(self, prompt: str) -> str:
        for rule in self.rules:
            if rule.get("if_contains") is None or rule["if_contains"] in prompt:
                return rule["reply"]
        return ""

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        p = request.params
        script = list(self.tokenizer.encode(self.reply(self.tokenizer.decode(request.prompt_token_ids)),
                                            add_special_tokens=False))
        n = len(request.prompt_token_ids)
        emitted = 0
        for tok in self._tokens(script, p):
            emitted += 1
            self._stats.generated_tokens += 1
            reason = self._finish(tok, p, emitted)
            yield EngineOutput([self._sampled(tok, p)], reason, n)
            if reason is not None:
                return
        yield EngineOutput([], "stop", n)

    def _tokens(self, script: list[int], p: SamplingParams):
        """The script's tokens; under a constraint, each is checked against the constraint's token bitmask and,
        once one is refused (or the budget runs low), the constraint's shortest completion follows instead."""
        if p.constraint is None or not self.constrained:
            yield from script
            return
        logits = torch.zeros(self.vocab_size)
        emitted = 0
        for tok in script:
            remaining = p.max_tokens - emitted
            logits.zero_()
            p.constraint.apply(logits, remaining)
            if logits[tok] == float("-inf") or p.constraint.confirm(tok, remaining) != tok:
                break
            p.constraint.advance(tok)
            emitted += 1
            yield tok
            if p.constraint.is_terminated():
                return
        for tok in p.constraint.closing_path(limit=p.max_tokens - emitted) or []:
            p.constraint.advance(tok)
            yield tok

    def _finish(self, tok: int, p: SamplingParams, emitted: int) -> str | None:
        stops = p.stop_token_ids if p.ignore_eos else [*self.eos_token_ids, *p.stop_token_ids]
        if tok in stops or (self.constrained and p.constraint is not None and p.constraint.is_terminated()):
            return "stop"
        return "length" if emitted >= p.max_tokens else None

    def _sampled(self, tok: int, p: SamplingParams) -> SampledToken:
        if p.logprobs is None:
            return SampledToken(tok)
        return SampledToken(tok, self.logprob, [(tok, self.logprob)][: p.logprobs])

    def stats(self) -> EngineStats:
        return self._stats

    async def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


@dataclass
class ScriptedEngineFactory:
    """An engine factory for `build_graph(..., engines=...)` (picklable: plain data)."""

    rules: list[dict[str, str]] = field(default_factory=list)
    max_model_len: int = 4096
    constrained: bool = True

    def __call__(self, checkpoint: Path, tokenizer: Any, model: Any) -> ScriptedEngine:
        return ScriptedEngine(tokenizer, self.rules, self.max_model_len, constrained=self.constrained)


def shipped(factory: ScriptedEngineFactory) -> ScriptedEngineFactory:
    """`factory`, with this module registered to be pickled by value: Ray replicas unpickle the factory without
    importing `tests` (not an installed package)."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return factory
