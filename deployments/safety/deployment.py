"""The Safety deployment: runs shields. Llama Guard calls its guard model's LLM deployment through a handle."""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from serve.errors import APIError, InvalidRequestError, NotFoundError
from serve.protocol.content import content_text
from serve.telemetry.instrument import instrument_deployment
from serve.telemetry.metrics import observe_shield
from serve.telemetry.tracing import traced


@serve.deployment
@instrument_deployment
class SafetyServer:
    def __init__(self, shields: list[dict], llm_handles: dict, database_url: str):
        from deployments.safety.registry import ShieldRegistry
        from serve.storage import Database

        self.registry = ShieldRegistry(Database(database_url))
        for s in shields:
            self.registry.upsert_from_config(s["shield_id"], s["provider_id"], s.get("provider_shield_id"),
                                             s.get("params") or {})
        self.llms = llm_handles
        self._prompt_guards: dict[str, Any] = {}

    async def health(self) -> dict[str, str]:
        """Provider health (/v1/providers): the shield registry's database answers."""
        from serve.health import run_checks

        return await run_checks(self.registry.db.ping)

    # ---- registry ---------------------------------------------------------------------------------------------

    async def list_shields(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.registry.list)

    async def get_shield(self, shield_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.registry.get, shield_id)

    async def register_shield(self, shield_id: str, provider_id: str | None, resource: str | None,
                              params: dict) -> dict[str, Any]:
        provider = provider_id or ("llama-guard" if resource in self.llms else None)
        if provider is None:
            raise InvalidRequestError("provider_id is required (llama-guard, prompt-guard, code-scanner)",
                                      param="provider_id")
        if provider == "llama-guard" and resource not in self.llms:
            raise InvalidRequestError(f"llama-guard shields run on a served model; '{resource}' is not one "
                                      f"({', '.join(self.llms)})", param="provider_shield_id")
        return await asyncio.to_thread(self.registry.register, shield_id, provider, resource, params or {})

    async def delete_shield(self, shield_id: str) -> None:
        await asyncio.to_thread(self.registry.delete, shield_id)

    # ---- running ----------------------------------------------------------------------------------------------

    async def run_shield(self, shield_id: str, messages: list[dict[str, Any]], params: dict | None) -> dict:
        """Llama Stack run-shield: {"violation": None | {violation_level, user_message, metadata}}."""
        result = await self._run(shield_id, messages, params or {})
        if result["flagged"]:
            return {"violation": {"violation_level": "error", "user_message": result["user_message"],
                                  "metadata": result["metadata"]}}
        return {"violation": None}

    async def moderate(self, shield_id: str, texts: list[str]) -> list[dict[str, Any]]:
        """One result per input text, as a user turn."""
        return await asyncio.gather(*[self._run(shield_id, [{"role": "user", "content": t}], {}) for t in texts])

    @traced("safety.run_shield", record=("shield_id",), latency=observe_shield,
            observe=lambda span, r: span.set_attribute("stackserve.flagged", r["flagged"]))
    async def _run(self, shield_id: str, messages: list[dict[str, Any]], params: dict) -> dict[str, Any]:
        if not messages:
            raise InvalidRequestError("messages must not be empty", param="messages")
        msgs = [{"role": m.get("role", "user"), "content": content_text(m.get("content"), "messages")}
                for m in messages]
        row = await asyncio.to_thread(self.registry.row, shield_id)
        cfg = {**(row.params or {}), **params}
        if row.provider_id == "llama-guard":
            return await self._llama_guard(row.provider_resource_id, msgs, cfg)
        if row.provider_id == "prompt-guard":
            return await self._prompt_guard(row.id, row.provider_resource_id, msgs, cfg)
        if row.provider_id == "code-scanner":
            return await self._code_scanner(msgs)
        raise NotFoundError(f"shield provider '{row.provider_id}' is not available")

    async def _llama_guard(self, model_id: str, msgs: list[dict], cfg: dict) -> dict[str, Any]:
        from deployments.safety.llama_guard import (
            CATEGORIES,
            USER_MESSAGE,
            VERDICT_REGEX,
            VerdictError,
            build_prompt,
            category_codes,
            parse_verdict,
        )
        from serve.protocol.openai_chat import ChatCompletionRequest

        handle = self.llms.get(model_id)
        if handle is None:
            raise NotFoundError(f"the shield's model '{model_id}' is not served", code="model_not_found")
        codes = category_codes(model_id)
        excluded = list(cfg.get("excluded_categories") or [])
        prompt = build_prompt([m for m in msgs if m["role"] in ("user", "assistant")] or msgs, codes, excluded)
        req = ChatCompletionRequest(model=model_id, messages=[{"role": "user", "content": prompt}], temperature=0,
                                    max_tokens=int(cfg.get("max_tokens", 24)), guided_regex=VERDICT_REGEX)
        out = await handle.chat.remote(req)
        try:
            verdict = parse_verdict(out["choices"][0]["message"]["content"] or "", codes, excluded)
        except VerdictError as e:  # never read an unparseable verdict as "safe"
            raise APIError(f"shield failed: {e}", code="invalid_verdict") from None
        flagged = {c: CATEGORIES[c] for c in verdict.categories}
        return {"flagged": not verdict.safe, "user_message": USER_MESSAGE if not verdict.safe else None,
                "codes": verdict.categories,
                "metadata": {"violation_type": ",".join(verdict.categories)} if not verdict.safe else {},
                "categories": {name: code in flagged for code, name in CATEGORIES.items() if code in codes}}

    async def _prompt_guard(self, shield_id: str, model_dir: str, msgs: list[dict], cfg: dict) -> dict[str, Any]:
        from deployments.safety.prompt_guard import PromptGuardClassifier, is_violation

        clf = self._prompt_guards.get(shield_id)
        if clf is None:
            clf = self._prompt_guards[shield_id] = await asyncio.to_thread(PromptGuardClassifier, model_dir)
        mode = cfg.get("mode", "jailbreak")
        if mode not in ("jailbreak", "injection"):
            raise InvalidRequestError("prompt-guard mode must be jailbreak or injection", param="params.mode")
        scores = await asyncio.to_thread(clf.scores, msgs[-1]["content"])
        flagged, score = is_violation(scores, mode, float(cfg.get("threshold", 0.9)))
        name = "Jailbreak" if mode == "jailbreak" else "Prompt Injection"
        return {"flagged": flagged, "user_message": "Sorry, I can't process this request." if flagged else None,
                "codes": [mode] if flagged else [],
                "metadata": {"violation_type": mode, "score": score, "scores": scores} if flagged else {},
                "categories": {name: flagged}, "scores": {name: score}}

    async def _code_scanner(self, msgs: list[dict]) -> dict[str, Any]:
        from deployments.safety.code_scanner import scan

        found = await scan(msgs[-1]["content"])
        return {"flagged": found is not None,
                "user_message": "Sorry, the code contains insecure patterns." if found else None,
                "codes": ["insecure_code"] if found else [],
                "metadata": {"violation_type": "insecure_code", **found} if found else {},
                "categories": {"Insecure Code": found is not None}}
