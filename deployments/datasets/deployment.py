"""The DatasetIO deployment: Llama Stack datasets (register, list, get, unregister, iterrows, append-rows).

State is the shared SQL registry plus Parquet parts in the blob store, so replicas are interchangeable.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from serve.config import DatasetIOConfig
from serve.protocol.datasets import AppendRowsRequest, RegisterDatasetRequest
from serve.telemetry.instrument import instrument_deployment


@serve.deployment
@instrument_deployment
class DatasetIOServer:
    def __init__(self, cfg: DatasetIOConfig, blob_url: str, database_url: str):
        import deployments.datasets.tables  # noqa: F401  (registers the table)
        from deployments.datasets.store import DatasetService
        from serve.storage import Database, open_blob_store

        db = Database(database_url)
        self.service = DatasetService(db, open_blob_store(blob_url, db), cfg.allow_local_files, cfg.huggingface)

    async def health(self) -> dict[str, str]:
        """Provider health (/v1/providers): the registry's database answers, the blob store can be written."""
        from serve.health import run_checks

        return await run_checks(self.service.check_storage)

    async def register_dataset(self, req: RegisterDatasetRequest) -> dict[str, Any]:
        return await asyncio.to_thread(self.service.register, req)  # disk and SQL work

    async def list_datasets(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.service.list)

    async def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.service.get, dataset_id)

    async def unregister_dataset(self, dataset_id: str) -> None:
        await asyncio.to_thread(self.service.unregister, dataset_id)

    async def iterrows(self, dataset_id: str, start_index: int | None, limit: int | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.service.iterrows, dataset_id, start_index, limit)

    async def append_rows(self, dataset_id: str, req: AppendRowsRequest) -> None:
        await asyncio.to_thread(self.service.append_rows, dataset_id, req)
