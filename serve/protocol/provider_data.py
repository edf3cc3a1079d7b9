"""`X-LlamaStack-Provider-Data`: per-request provider settings, a JSON object a Llama Stack client sends as a header.

Read here: the web search keys (`tavily_search_api_key`, `brave_search_api_key`), which let a client use
`builtin::websearch` / the `web_search` tool with its own key. Routers parse the header and pass the result to the
Agents deployment as an argument: it never enters a request body, a stored object or the trace context.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serve.errors import InvalidRequestError

HEADER = "X-LlamaStack-Provider-Data"


class ProviderData(BaseModel):
    """The keys we read; other providers' entries (Llama Stack has many) are ignored. Keys stay out of reprs."""

    model_config = ConfigDict(extra="ignore")

    tavily_search_api_key: str | None = Field(default=None, repr=False)
    brave_search_api_key: str | None = Field(default=None, repr=False)

    def search_key(self, provider: str) -> str | None:
        """The key for web search provider `provider` ("tavily", "brave"), if the client sent one."""
        return getattr(self, f"{provider}_search_api_key", None) or None


def _bad(msg: str) -> InvalidRequestError:
    return InvalidRequestError(f"the {HEADER} header {msg}", param=HEADER, code="invalid_provider_data")


def parse_provider_data(raw: str | None) -> ProviderData | None:
    """The header's value as ProviderData; None when absent. Not a JSON object, or a key that is not a string: 400."""
    if raw is None or not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise _bad("is not valid JSON") from None
    if not isinstance(data, dict):
        raise _bad("must be a JSON object")
    try:
        return ProviderData.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise _bad(f"has an invalid '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None


def provider_data_of(headers: Mapping[str, str]) -> ProviderData | None:
    """A request's ProviderData, from its (case-insensitive) headers."""
    return parse_provider_data(headers.get(HEADER))
