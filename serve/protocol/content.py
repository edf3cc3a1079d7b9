"""Message content (a string, or a list of typed parts as OpenAI and Llama Stack send them) as plain text."""

from __future__ import annotations

from typing import Any

from serve.errors import InvalidRequestError

TEXT_PARTS = {"text", "input_text", "output_text"}


def content_text(content: Any, param: str = "content", sep: str = "") -> str:
    """The text of `content`: a string, a text part, or a list of strings and text/refusal parts joined by `sep`.
    Other parts (images, files) are a 400 naming `param`: nothing reads them as text, so none is dropped silently."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    out = []
    for part in content if isinstance(content, list) else [content]:
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(part, str):
            out.append(part)
        elif kind in TEXT_PARTS:
            out.append(str(part.get("text", "")))
        elif kind == "refusal":
            out.append(str(part.get("refusal", "")))
        else:
            shown = kind if isinstance(part, dict) else type(part).__name__
            raise InvalidRequestError(f"content of type {shown!r} is not supported (text only)", param=param)
    return sep.join(out)
