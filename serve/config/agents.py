"""Agents, responses and tool runtime on the Agents deployment, with an optional web search provider."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serve.config.base import DeploymentOptions, _Strict, default_deployment


class WebSearchConfig(_Strict):
    provider: Literal["brave", "tavily"] = "brave"
    api_key: str | None = None  # default: BRAVE_API_KEY / TAVILY_API_KEY from the environment
    endpoint: str | None = None  # default: the provider's public API
    max_results: int = Field(default=5, ge=1, le=50)
    timeout_s: float = Field(default=15.0, gt=0)


class AgentsConfig(_Strict):
    enabled: bool = True
    web_search: WebSearchConfig | None = None
    tool_timeout_s: float = Field(default=60.0, gt=0)  # one MCP / web search call
    # a stored response still running when its replica stopped renewing for this long is marked failed
    lease_timeout_s: float = Field(default=30.0, gt=0)
    deployment: DeploymentOptions = default_deployment(num_cpus=0.1)
