"""Stack-level routes: health, version, route inspection, providers (Llama Stack 0.2 shapes)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request

from serve.context import get_stack
from serve.errors import NotFoundError
from serve.protocol.llama_meta import HealthInfo, ListProvidersResponse, ListRoutesResponse, ProviderInfo, VersionInfo
from serve.protocol.openapi_bodies import AsWrittenRoute

try:
    VERSION = version("stackserve")
except PackageNotFoundError:  # running from a source tree without install
    VERSION = "0.0.0"

router = APIRouter(route_class=AsWrittenRoute, tags=["stack"])

PROVIDER_TYPES = {"meta-reference": "inline::meta-reference", "vllm": "inline::vllm", "scripted": "inline::scripted"}


@router.get("/health", response_model=HealthInfo)
async def health() -> dict[str, str]:
    return {"status": "OK"}


@router.get("/version", response_model=VersionInfo)
async def get_version() -> dict[str, str]:
    return {"version": VERSION}


def _providers() -> list[dict[str, Any]]:
    stack = get_stack()
    seen: dict[str, dict[str, Any]] = {}
    for m in stack.models.values():
        pid = m.config.provider
        ptype = (PROVIDER_TYPES[m.config.engine.type] if m.model_type == "llm"
                 else "inline::sentence-transformers")
        entry = seen.setdefault(pid, {"api": "inference", "provider_id": pid, "provider_type": ptype,
                                      "config": {"models": []}, "health": {"status": "OK"}})
        entry["config"]["models"].append(m.config.model_id)
    out = list(seen.values())
    if stack.has("VectorIO"):
        index = stack.config.vector_io.index
        out.append({"api": "vector_io", "provider_id": "faiss", "provider_type": "inline::faiss",
                    "config": {"index": index.type, "device": index.device}, "health": {"status": "OK"}})
        out.append({"api": "files", "provider_id": "localfs", "provider_type": "inline::localfs",
                    "config": {}, "health": {"status": "OK"}})
        out.append({"api": "tool_runtime", "provider_id": "rag-runtime", "provider_type": "inline::rag-runtime",
                    "config": {}, "health": {"status": "OK"}})
    if stack.has("DatasetIO"):
        out.append({"api": "datasetio", "provider_id": "parquet", "provider_type": "inline::localfs", "config": {},
                    "health": {"status": "OK"}})
    if stack.has("Batches"):
        out.append({"api": "batches", "provider_id": "ray-data", "provider_type": "inline::reference", "config": {},
                    "health": {"status": "OK"}})
    if stack.has("Safety"):
        for pid in sorted({s.provider_id for s in stack.config.safety.shields} | {"llama-guard", "code-scanner"}):
            out.append({"api": "safety", "provider_id": pid, "provider_type": f"inline::{pid}", "config": {},
                        "health": {"status": "OK"}})
    return out


@router.get("/providers", response_model=ListProvidersResponse)
async def list_providers() -> dict[str, Any]:
    return {"data": _providers()}


@router.get("/providers/{provider_id}", response_model=ProviderInfo)
async def get_provider(provider_id: str) -> dict[str, Any]:
    for p in _providers():
        if p["provider_id"] == provider_id:
            return p
    raise NotFoundError(f"provider '{provider_id}' not found", param="provider_id")


@router.get("/inspect/routes", response_model=ListRoutesResponse)
async def list_routes(request: Request) -> dict[str, Any]:
    types = sorted({p["provider_type"] for p in _providers()})
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
