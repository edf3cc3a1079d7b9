"""Web search providers behind one interface: Brave- and Tavily-style HTTP APIs, keyed by an API key.

The key is the request's own when the client sends one (`X-LlamaStack-Provider-Data`: `{"tavily_search_api_key":
...}` / `brave_search_api_key`, as Llama Stack reads it), else the config's (`agents.web_search.api_key`), else the
environment's (TAVILY_API_KEY or TAVILY_SEARCH_API_KEY, BRAVE_API_KEY or BRAVE_SEARCH_API_KEY); without one, a
request that asks for web search is refused with a 400.
"""

from __future__ import annotations

import os
from typing import Any

from serve.errors import InvalidRequestError

from .mcp import ToolError

PROVIDERS = {
    # provider: (default endpoint, environment variables with the key: ours, then Llama Stack's name)
    "brave": ("https://api.search.brave.com/res/v1/web/search", ("BRAVE_API_KEY", "BRAVE_SEARCH_API_KEY")),
    "tavily": ("https://api.tavily.com/search", ("TAVILY_API_KEY", "TAVILY_SEARCH_API_KEY")),
}


class WebSearchProvider:
    def __init__(self, provider: str, api_key: str, endpoint: str | None = None, max_results: int = 5,
                 timeout_s: float = 15.0):
        self.provider = provider
        self.api_key = api_key
        self.endpoint = endpoint or PROVIDERS[provider][0]
        self.max_results = max_results
        self.timeout_s = timeout_s

    async def search(self, query: str, max_results: int | None = None) -> list[dict[str, Any]]:
        """[{title, url, content}] for the query, best first."""
        import httpx

        n = max_results or self.max_results
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                if self.provider == "brave":
                    r = await http.get(self.endpoint, params={"q": query, "count": n},
                                       headers={"X-Subscription-Token": self.api_key, "Accept": "application/json"})
                    r.raise_for_status()
                    hits = (r.json().get("web") or {}).get("results") or []
                    return [{"title": h.get("title", ""), "url": h.get("url", ""),
                             "content": h.get("description", "")} for h in hits[:n]]
                r = await http.post(self.endpoint, json={"query": query, "max_results": n},
                                    headers={"Authorization": f"Bearer {self.api_key}"})
                r.raise_for_status()
                return [{"title": h.get("title", ""), "url": h.get("url", ""), "content": h.get("content", "")}
                        for h in (r.json().get("results") or [])[:n]]
        except httpx.HTTPStatusError as e:
            raise ToolError(f"web search ({self.provider}) answered HTTP {e.response.status_code}") from None
        except (httpx.HTTPError, ValueError) as e:
            raise ToolError(f"web search ({self.provider}) failed: {type(e).__name__}: {e}") from None


def search_key(config: Any, provider_data: Any = None) -> str | None:
    """The request's own key (ProviderData), else the config's, else the environment's."""
    own = provider_data.search_key(config.provider) if provider_data is not None else None
    env = next((os.environ[v] for v in PROVIDERS[config.provider][1] if os.environ.get(v)), None)
    return own or config.api_key or env


def make_web_search(config: Any | None, provider_data: Any = None, param: str = "tools") -> WebSearchProvider:
    """The configured provider with the key to use (`provider_data`: serve.protocol.provider_data.ProviderData of
    the request); a 400 naming what is missing when web search is not set up or no key is at hand."""
    if config is None:
        raise InvalidRequestError("web_search is not configured on this server (agents.web_search in the config)",
                                  param=param, code="web_search_not_configured")
    key = search_key(config, provider_data)
    if not key:
        raise InvalidRequestError(
            f"web search ({config.provider}) needs an API key: send {{\"{config.provider}_search_api_key\": ...}} in "
            f"the X-LlamaStack-Provider-Data header, or set agents.web_search.api_key or "
            f"{' / '.join(PROVIDERS[config.provider][1])} on the server", param=param, code="web_search_key_missing")
    return WebSearchProvider(config.provider, key, config.endpoint, config.max_results, config.timeout_s)


def results_text(results: list[dict[str, Any]]) -> str:
    if not results:
        return "No web results."
    return "\n\n".join(f"[{i + 1}] {r['title']} ({r['url']})\n{r['content']}" for i, r in enumerate(results))
