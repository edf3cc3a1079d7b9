"""POST /moderations body: OpenAI's `CreateModerationResponse` (plus Llama Stack's user_message/metadata)."""

from __future__ import annotations

from typing import Any

from serve.protocol.openai_common import OpenAIObject


class ModerationResult(OpenAIObject):
    flagged: bool
    categories: dict[str, bool]  # every OpenAI category key (hate, ..., violence/graphic), plus shield-specific ones
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]
    user_message: str | None = None
    metadata: dict[str, Any] = {}


class ModerationResponse(OpenAIObject):
    id: str
    model: str
    results: list[ModerationResult]
