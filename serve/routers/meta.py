"""Stack-level routes: health, version, route inspection, providers (Llama Stack 0.2 shapes)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request

from serve import providers
from serve.context import get_stack
from serve.errors import NotFoundError
from serve.protocol.llama_meta import HealthInfo, ListProvidersResponse, ListRoutesResponse, ProviderInfo, VersionInfo
from serve.protocol.openapi_bodies import AsWrittenRoute

try:
    VERSION = version("stackserve")
except PackageNotFoundError:  # running from a source tree without install
    VERSION = "0.0.0"

router = APIRouter(route_class=AsWrittenRoute, tags=["stack"])


@router.get("/health", response_model=HealthInfo)
async def health() -> dict[str, str]:
    """OK when every provider's deployment reports OK in time (the reasons of an Error: GET /v1/providers)."""
    return await get_stack().health_probe.get()


@router.get("/version", response_model=VersionInfo)
async def get_version() -> dict[str, str]:
    return {"version": VERSION}


@router.get("/providers", response_model=ListProvidersResponse)
async def list_providers() -> dict[str, Any]:
    return {"data": await providers.list_providers(get_stack())}


@router.get("/providers/{provider_id}", response_model=ProviderInfo)
async def get_provider(provider_id: str) -> dict[str, Any]:
    for p in await providers.list_providers(get_stack()):
        if p["provider_id"] == provider_id:
            return p
    raise NotFoundError(f"provider '{provider_id}' not found", param="provider_id")


@router.get("/inspect/routes", response_model=ListRoutesResponse)
async def list_routes(request: Request) -> dict[str, Any]:
    running = await providers.list_providers(get_stack(), health=False)
    data = []
    for route in request.app.routes:
        methods = sorted(getattr(route, "methods", None) or [])
        path = getattr(route, "path", "")
        if not path.startswith("/v1") or not methods:
            continue
        types = providers.route_provider_types(running, list(getattr(route, "tags", None) or []))
        data += [{"route": path, "method": m, "provider_types": types} for m in methods if m != "HEAD"]
    return {"data": data}
