"""Batch API jobs inside a Batches replica: validate the input, run it on Ray Data, write the output files.

A job belongs to the replica holding its lease in SQL. Per-line results are written as lines finish, so a job
whose replica died is picked up by any replica once the lease runs out and runs only the lines still missing.
Cancelling (status `cancelling`, from any replica) stops the job's UDFs within a poll interval; the lines done by
then are delivered in the output files, as OpenAI does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from deployments.batches.lines import ParsedInput, RequestLine, error_result, parse_input
from deployments.batches.pipeline import run_lines
from deployments.batches.store import BatchStore
from deployments.batches.udf import ServeRequestsUDF
from deployments.vector_io.files import FileService
from serve.auth import acting_as
from serve.config import BatchesConfig
from serve.errors import APIError
from serve.storage.leases import renew_while_held, sweep_forever

logger = logging.getLogger("stackserve.batches")
MAX_REPORTED_ERRORS = 100


@dataclass
class ModelTargets:
    """What jobs may call: model id -> type ("llm" | "embedding"), handle, and requests it can run at once."""

    types: dict[str, str]
    handles: dict[str, Any]
    capacity: dict[str, int]


class BatchJobs:
    def __init__(self, store: BatchStore, files: FileService, cfg: BatchesConfig, targets: ModelTargets,
                 database_url: str, runner: str):
        self.store = store
        self.files = files
        self.cfg = cfg
        self.targets = targets
        self.database_url = database_url
        self.runner = runner
        self._tasks: dict[str, asyncio.Task] = {}
        self._lost: set[str] = set()

    def start(self, batch_id: str) -> None:
        if batch_id not in self._tasks:
            task = asyncio.get_running_loop().create_task(self._run(batch_id))
            self._tasks[batch_id] = task
            task.add_done_callback(lambda _: self._tasks.pop(batch_id, None))

    async def watch(self) -> None:
        """Forever: take over jobs that no live replica holds (this replica's restart included)."""
        async def sweep() -> None:
            for batch_id in await asyncio.to_thread(self.store.orphans):
                self.start(batch_id)

        await sweep_forever(sweep, self.cfg.lease_timeout_s / 3, "the batch watcher")

    async def _run(self, batch_id: str) -> None:
        if not await asyncio.to_thread(self.store.claim, batch_id, self.runner, self.cfg.lease_timeout_s):
            return
        renewer = asyncio.get_running_loop().create_task(self._renew(batch_id))
        try:
            owner = (await asyncio.to_thread(self.store.row, batch_id)).owner
            with acting_as(owner):  # a resumed job reads and writes files as the batch's owner
                await self._execute(batch_id)
        except Exception as e:
            logger.exception("batch %s failed", batch_id)
            err = e if isinstance(e, APIError) else APIError(f"the batch job failed: {type(e).__name__}")
            await asyncio.to_thread(self.store.advance, batch_id, self.runner, "failed",
                                    errors=[_error(err.code or "batch_failed", err.message)])
        finally:
            renewer.cancel()
            self._lost.discard(batch_id)

    async def _renew(self, batch_id: str) -> None:
        lease_s = self.cfg.lease_timeout_s
        await renew_while_held(lambda: self.store.renew(batch_id, self.runner, lease_s), lease_s)
        self._lost.add(batch_id)  # another replica took the job over

    async def _execute(self, batch_id: str) -> None:
        row = await asyncio.to_thread(self.store.row, batch_id)
        _, data = await asyncio.to_thread(self.files.content, row.input_file_id)
        parsed = await asyncio.to_thread(parse_input, data, row.endpoint, self.targets.types)
        if row.status == "validating" and not await self._validated(batch_id, parsed):
            if await asyncio.to_thread(self.store.status, batch_id) == "cancelling":
                await asyncio.to_thread(self._finish, batch_id, parsed)
            return
        done = await asyncio.to_thread(self.store.done_lines, batch_id)
        pending = [r for r in parsed.requests if r.line not in done]
        if pending and await asyncio.to_thread(self.store.status, batch_id) == "in_progress":
            await asyncio.to_thread(self._run_pipeline, batch_id, row.endpoint, row.expires_at, pending)
        if batch_id not in self._lost:
            await asyncio.to_thread(self._finish, batch_id, parsed)

    async def _validated(self, batch_id: str, parsed: ParsedInput) -> bool:
        errors = parsed.errors[:MAX_REPORTED_ERRORS] or None
        reason = None
        if parsed.total > self.cfg.max_input_lines:
            reason = [_error("too_many_requests", f"the input file has {parsed.total} requests; at most "
                             f"{self.cfg.max_input_lines} are allowed (batches.max_input_lines)")]
        elif not parsed.requests:
            reason = errors or [_error("empty_file", "the input file has no requests")]
        if reason is not None:
            await asyncio.to_thread(self.store.advance, batch_id, self.runner, "failed", errors=reason,
                                    total=parsed.total)
            return False
        await asyncio.to_thread(self.store.save_results, batch_id, parsed.failures)
        return await asyncio.to_thread(self.store.advance, batch_id, self.runner, "in_progress", total=parsed.total,
                                       errors=errors, model=parsed.requests[0].body.get("model"))

    def _concurrency(self, pending: list[RequestLine]) -> int:
        if self.cfg.max_concurrent_requests:
            return self.cfg.max_concurrent_requests
        models = {r.body.get("model") for r in pending}
        return 2 * sum(self.targets.capacity.get(m, 1) for m in models)

    def _run_pipeline(self, batch_id: str, endpoint: str, expires_at: int, pending: list[RequestLine]) -> None:
        udf_kwargs = {"endpoint": endpoint, "models": self.targets.types, "handles": self.targets.handles,
                      "database_url": self.database_url, "batch_id": batch_id}
        results = run_lines(pending, ServeRequestsUDF, udf_kwargs, concurrency=self._concurrency(pending),
                            lines_per_batch=self.cfg.lines_per_batch)
        try:
            for _ in results:  # the UDFs record results themselves; here we only watch
                if batch_id in self._lost or self.store.stop_requested(batch_id) or time.time() > expires_at:
                    break
        finally:
            results.close()

    def _finish(self, batch_id: str, parsed: ParsedInput) -> None:
        row = self.store.row(batch_id)
        if row.status == "cancelling":
            self.store.advance(batch_id, self.runner, "cancelled", **self._write_files(batch_id))
            return
        done = self.store.done_lines(batch_id)
        missing = [r for r in parsed.requests if r.line not in done]
        if missing and time.time() > row.expires_at:
            expired = APIError("the batch expired before this request ran", code="batch_expired")
            self.store.save_results(batch_id, [error_result(r.line, r.custom_id, expired) for r in missing])
            self.store.advance(batch_id, self.runner, "expired", **self._write_files(batch_id))
            return
        if missing:  # cancelled meanwhile, or the lease was lost: whoever holds the job finishes it
            return
        if self.store.advance(batch_id, self.runner, "finalizing"):
            self.store.advance(batch_id, self.runner, "completed", **self._write_files(batch_id))

    def _write_files(self, batch_id: str) -> dict[str, str | None]:
        ids: dict[str, str | None] = {}
        for ok, key, name in ((True, "output_file_id", "output"), (False, "error_file_id", "error")):
            records = list(self.store.records(batch_id, ok))
            lines = (f"{r}\n".encode() for r in records)  # streamed into the blob store, line by line
            ids[key] = self.files.create(f"{batch_id}_{name}.jsonl", "batch_output", lines,
                                         system=True)["id"] if records else None
        return ids


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": None}
