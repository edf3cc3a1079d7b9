"""Llama Stack 0.2 DatasetIO: /datasets and /datasetio/{iterrows,append-rows} (served under /v1 and /v1beta)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serve.context import get_stack
from serve.protocol.datasets import AppendRowsRequest, RegisterDatasetRequest

router = APIRouter(tags=["datasets"])


async def _call(method: str, *args: Any) -> Any:
    return await get_stack().datasetio_handle().call.remote(method, *args)


@router.post("/datasets")
async def register_dataset(body: RegisterDatasetRequest) -> dict[str, Any]:
    return await _call("register", body)


@router.get("/datasets")
async def list_datasets() -> dict[str, Any]:
    return {"data": await _call("list")}


@router.get("/datasets/{dataset_id:path}")
async def get_dataset(dataset_id: str) -> dict[str, Any]:
    return await _call("get", dataset_id)


@router.delete("/datasets/{dataset_id:path}")
async def unregister_dataset(dataset_id: str) -> None:
    await _call("unregister", dataset_id)


@router.get("/datasetio/iterrows/{dataset_id:path}")
async def iterrows(dataset_id: str, start_index: int | None = None, limit: int | None = None) -> dict[str, Any]:
    return await _call("iterrows", dataset_id, start_index, limit)


@router.post("/datasetio/append-rows/{dataset_id:path}")
async def append_rows(dataset_id: str, body: AppendRowsRequest) -> None:
    await _call("append_rows", dataset_id, body)
