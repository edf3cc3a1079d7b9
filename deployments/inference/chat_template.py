"""Chat prompts: OpenAI messages -> the model's chat template -> prompt token ids."""

from __future__ import annotations

from typing import Any

from serve.errors import InvalidRequestError
from serve.protocol.openai_chat import ChatMessage


def to_template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Plain dicts for a jinja chat template: text content, `developer` folded into `system`."""
    out = []
    for i, m in enumerate(messages):
        try:
            text = m.text()
        except ValueError as e:
            raise InvalidRequestError(str(e), param=f"messages.{i}.content") from None
        msg: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": text}
        if m.tool_calls:
            msg["tool_calls"] = m.tool_calls
        if m.tool_call_id:
            msg["tool_call_id"] = m.tool_call_id
        if m.name:
            msg["name"] = m.name
        out.append(msg)
    return out


def render_chat_prompt(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict] | None = None) -> str:
    """The prompt text for the next assistant turn, through the tokenizer's own chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidRequestError("this model has no chat template; use /v1/completions", param="messages")
    try:
        kwargs = {"tools": tools} if tools else {}
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
    except Exception as e:  # jinja raises TemplateError/TypeError for messages the template can't render
        raise InvalidRequestError(f"the chat template could not render these messages: {e}",
                                  param="messages") from None


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    # The template already carries BOS/special tokens; adding them again would double them.
    return list(tokenizer.encode(text, add_special_tokens=False))
