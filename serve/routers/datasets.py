"""Llama Stack 0.2 DatasetIO: /datasets and /datasetio/{iterrows,append-rows} (served under /v1 and /v1beta)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serve.context import get_stack
from serve.protocol.datasets import (
    AppendRowsRequest,
    Dataset,
    IterrowsResponse,
    ListDatasetsResponse,
    RegisterDatasetRequest,
)
from serve.protocol.openapi_bodies import NULL_BODY, AsWrittenRoute

router = APIRouter(route_class=AsWrittenRoute, tags=["datasets"])


@router.post("/datasets", response_model=Dataset)
async def register_dataset(body: RegisterDatasetRequest) -> dict[str, Any]:
    return await get_stack().datasetio().register_dataset.remote(body)


@router.get("/datasets", response_model=ListDatasetsResponse)
async def list_datasets() -> dict[str, Any]:
    return {"data": await get_stack().datasetio().list_datasets.remote()}


@router.get("/datasets/{dataset_id:path}", response_model=Dataset)
async def get_dataset(dataset_id: str) -> dict[str, Any]:
    return await get_stack().datasetio().get_dataset.remote(dataset_id)


@router.delete("/datasets/{dataset_id:path}", responses=NULL_BODY)
async def unregister_dataset(dataset_id: str) -> None:
    await get_stack().datasetio().unregister_dataset.remote(dataset_id)


@router.get("/datasetio/iterrows/{dataset_id:path}", response_model=IterrowsResponse)
async def iterrows(dataset_id: str, start_index: int | None = None, limit: int | None = None) -> dict[str, Any]:
    return await get_stack().datasetio().iterrows.remote(dataset_id, start_index, limit)


@router.post("/datasetio/append-rows/{dataset_id:path}", responses=NULL_BODY)
async def append_rows(dataset_id: str, body: AppendRowsRequest) -> None:
    await get_stack().datasetio().append_rows.remote(dataset_id, body)
