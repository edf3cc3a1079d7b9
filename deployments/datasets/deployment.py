"""The DatasetIO deployment: Llama Stack datasets (register, list, get, unregister, iterrows, append-rows).

State is the shared SQL registry plus Parquet parts under the data directory, so replicas are interchangeable.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ray import serve

from serve.config import DatasetIOConfig
from serve.errors import InvalidRequestError


@serve.deployment
class DatasetIOServer:
    EXPOSED = {"register", "list", "get", "unregister", "iterrows", "append_rows"}

    def __init__(self, cfg: DatasetIOConfig, data_dir: str, database_url: str):
        import deployments.datasets.tables  # noqa: F401  (registers the table)
        from deployments.datasets.store import DatasetService
        from serve.storage import Database

        self.service = DatasetService(Database(database_url), Path(data_dir) / "datasets", cfg.allow_local_files)

    async def call(self, method: str, *args: Any) -> Any:
        if method not in self.EXPOSED:
            raise InvalidRequestError(f"unknown datasetio operation {method}")
        return await asyncio.to_thread(getattr(self.service, method), *args)  # disk and SQL work
