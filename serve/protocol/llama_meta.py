"""Llama Stack 0.2 stack-level responses: health, version, providers, routes."""

from __future__ import annotations

from typing import Literal

from serve.protocol.llama_common import LlamaObject, Metadata


class HealthInfo(LlamaObject):
    status: Literal["OK", "Error", "Not Implemented"]


class VersionInfo(LlamaObject):
    version: str


class ProviderInfo(LlamaObject):
    api: str
    provider_id: str
    provider_type: str
    config: Metadata
    health: Metadata


class ListProvidersResponse(LlamaObject):
    data: list[ProviderInfo]


class RouteInfo(LlamaObject):
    route: str
    method: str
    provider_types: list[str]


class ListRoutesResponse(LlamaObject):
    data: list[RouteInfo]
