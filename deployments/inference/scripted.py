"""A scripted engine: answers by rules on the prompt text instead of a model.

For tests and demos where the model's output is the variable under test (a guard that must say
`unsafe\\nS1,S10`), while everything around it — the deployment, the OpenAI layer, the handles — stays real.
Rules are tried in order; the first whose `if_contains` is in the decoded prompt (or has none) gives the reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from deployments.inference.engine import EngineOutput, EngineRequest, EngineStats
from deployments.inference.sampling import SampledToken


class ScriptedEngine:
    def __init__(self, tokenizer: Any, rules: list[dict[str, str]], max_model_len: int = 4096):
        self.tokenizer = tokenizer
        self.rules = rules
        self.max_model_len = max_model_len
        self.vocab_size = len(tokenizer)
        self.eos_token_ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self._stats = EngineStats()

    def _reply(self, prompt: str) -> str:
        for rule in self.rules:
            if rule.get("if_contains") is None or rule["if_contains"] in prompt:
                return rule["reply"]
        return ""

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        prompt = self.tokenizer.decode(request.prompt_token_ids)
        ids = list(self.tokenizer.encode(self._reply(prompt), add_special_tokens=False))
        ids = ids[: request.params.max_tokens]
        n = len(request.prompt_token_ids)
        for i, tok in enumerate(ids):
            last = i == len(ids) - 1
            reason = ("length" if len(ids) == request.params.max_tokens else "stop") if last else None
            self._stats.generated_tokens += 1
            yield EngineOutput([SampledToken(tok, 0.0, [])], reason, n)
        if not ids:
            yield EngineOutput([], "stop", n)

    def stats(self) -> EngineStats:
        return self._stats

    async def check_health(self) -> None:
        return None
