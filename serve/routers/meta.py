"""Stack-level routes: health, version, route inspection, providers (Llama Stack 0.2 shapes)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request

from serve.context import get_stack
from serve.errors import NotFoundError
from serve.nodes import NODES
from serve.protocol.llama_meta import HealthInfo, ListProvidersResponse, ListRoutesResponse, ProviderInfo, VersionInfo
from serve.protocol.openapi_bodies import AsWrittenRoute

try:
    VERSION = version("stackserve")
except PackageNotFoundError:  # running from a source tree without install
    VERSION = "0.0.0"

router = APIRouter(route_class=AsWrittenRoute, tags=["stack"])


@router.get("/health", response_model=HealthInfo)
async def health() -> dict[str, str]:
    return {"status": "OK"}


@router.get("/version", response_model=VersionInfo)
async def get_version() -> dict[str, str]:
    return {"version": VERSION}


async def _providers() -> list[dict[str, Any]]:
    stack = get_stack()
    seen: dict[str, dict[str, Any]] = {}
    for m in stack.models.values():
        pid = m.config.provider
        if m.model_type == "llm":
            if not m.info:  # the engine that really runs reports its provider type once it has loaded
                m.info.update(await m.handle.model_info.remote())
            ptype = m.info["provider_type"]
        else:
            ptype = "inline::sentence-transformers"
        entry = seen.setdefault(pid, {"api": "inference", "provider_id": pid, "provider_type": ptype,
                                      "config": {"models": []}, "health": {"status": "OK"}})
        entry["config"]["models"].append(m.config.model_id)
    out = list(seen.values())
    for node in NODES:
        if stack.has(node.name):
            out += node.providers(stack.config)
    return out


@router.get("/providers", response_model=ListProvidersResponse)
async def list_providers() -> dict[str, Any]:
    return {"data": await _providers()}


@router.get("/providers/{provider_id}", response_model=ProviderInfo)
async def get_provider(provider_id: str) -> dict[str, Any]:
    for p in await _providers():
        if p["provider_id"] == provider_id:
            return p
    raise NotFoundError(f"provider '{provider_id}' not found", param="provider_id")


@router.get("/inspect/routes", response_model=ListRoutesResponse)
async def list_routes(request: Request) -> dict[str, Any]:
    types = sorted({p["provider_type"] for p in await _providers()})
    data = []
    for route in request.app.routes:
        methods = sorted(getattr(route, "methods", None) or [])
        path = getattr(route, "path", "")
        if not path.startswith("/v1") or not methods:
            continue
        for method in methods:
            if method != "HEAD":
                data.append({"route": path, "method": method,
                             "provider_types": types if "completions" in path else []})
    return {"data": data}
