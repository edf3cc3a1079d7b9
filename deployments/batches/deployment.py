"""The Batches deployment: the OpenAI Batch API (create, get, list, cancel) and the jobs behind it.

Jobs run on Ray Data with UDF actors that call the model deployments' handles (see jobs.py); batch state, per-line
results and leases live in SQL, and input/output files in the files store, so replicas are interchangeable and a
restarted replica's jobs are resumed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ray import serve

from serve.config import StackConfig
from serve.errors import InvalidRequestError
from serve.ids import new_id
from serve.protocol.batches import CreateBatchRequest
from serve.telemetry.instrument import instrument_deployment

WINDOW_S = {"24h": 24 * 3600}


@serve.deployment
@instrument_deployment
class BatchesServer:
    def __init__(self, config: StackConfig, llm_handles: dict, embedding_handles: dict):
        import deployments.batches.tables  # noqa: F401  (registers the tables)
        import deployments.vector_io.tables  # noqa: F401
        from deployments.batches.jobs import BatchJobs, ModelTargets
        from deployments.batches.store import BatchStore
        from deployments.vector_io.files import FileService
        from serve.storage import Database, open_blob_store

        cfg = config.batches
        db = Database(config.database_url())
        self.store = BatchStore(db)
        # input files obey the upload limit; outputs are as large as the results are
        self.files = FileService(db, open_blob_store(config.blob_url(), db), max_bytes=1 << 40)
        targets = ModelTargets(
            types={m.model_id: "llm" for m in config.models}
            | {m.model_id: "embedding" for m in config.embedding_models},
            handles={**llm_handles, **embedding_handles},
            capacity={m.model_id: m.engine.max_num_seqs * _replicas(m.deployment) for m in config.models}
            | {m.model_id: m.max_batch_size * _replicas(m.deployment) for m in config.embedding_models})
        self.lease_s = cfg.lease_timeout_s
        self.runner = serve.get_replica_context().replica_id.unique_id
        self.jobs = BatchJobs(self.store, self.files, cfg, targets, config.database_url(), self.runner)
        self._watcher = asyncio.get_running_loop().create_task(self.jobs.watch())

    async def create_batch(self, req: CreateBatchRequest) -> dict[str, Any]:
        from deployments.batches.lines import endpoint_for

        endpoint_for(req.endpoint)
        if req.completion_window not in WINDOW_S:
            raise InvalidRequestError("completion_window must be '24h'", param="completion_window")
        info = await asyncio.to_thread(self.files.get, req.input_file_id)
        if info["purpose"] != "batch":
            raise InvalidRequestError(f"the input file must be uploaded with purpose 'batch', not "
                                      f"'{info['purpose']}'", param="input_file_id", code="invalid_input_file")
        now = int(time.time())
        batch_id = new_id("batch")
        await asyncio.to_thread(self.store.insert, id=batch_id, status="validating", endpoint=req.endpoint,
                                input_file_id=req.input_file_id, completion_window=req.completion_window,
                                metadata=req.metadata, created_at=now, expires_at=now + WINDOW_S[req.completion_window],
                                runner=self.runner, lease_until=time.time() + self.lease_s)
        self.jobs.start(batch_id)
        return await asyncio.to_thread(self.store.get, batch_id)

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.get, batch_id)

    async def list_batches(self, after: str | None, limit: int) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.list, after, limit)

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.request_cancel, batch_id)

    async def check_health(self) -> None:
        if self._watcher.done():
            raise RuntimeError(f"the batch watcher stopped: {self._watcher.exception()!r}")

    async def health(self) -> dict[str, str]:
        """Provider health (/v1/providers): the job store's database answers and the batch watcher runs."""
        from serve.health import run_checks, running

        return await run_checks(self.store.db.ping, running(self._watcher, "the batch watcher"))


def _replicas(deployment: Any) -> int:
    if isinstance(deployment.num_replicas, int):
        return deployment.num_replicas
    return int((deployment.autoscaling_config or {}).get("max_replicas", 1))
