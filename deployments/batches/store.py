"""Batches in SQL: the batch objects, their per-line results, and the lease that says which replica runs a job.

Plain Python (blocking SQL): the deployment calls it from worker threads, Ray Data UDF actors call it directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from deployments.batches.lines import LineResult
from deployments.batches.tables import batch_results, batches
from serve.errors import InvalidRequestError, NotFoundError
from serve.pagination import paginate
from serve.storage import Database
from serve.storage.sql import owned, owner

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")  # a runner owns these
TERMINAL = ("completed", "failed", "expired", "cancelled")
TIMESTAMPS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
              "cancelled_at")


class BatchStore:
    def __init__(self, db: Database):
        self.db = db

    # ---- batch objects ----------------------------------------------------------------------------------------

    def insert(self, **values: Any) -> None:
        with self.db.begin() as c:
            c.execute(batches.insert().values(owner=owner(), **values))

    def row(self, batch_id: str) -> Any:
        return self.db.row_or_raise(batches, batch_id,
            NotFoundError(f"No batch with id '{batch_id}' found", param="batch_id", code="batch_not_found"))

    def _counts(self, batch_ids: list[str]) -> dict[str, dict[str, int]]:
        q = (sa.select(batch_results.c.batch_id, batch_results.c.ok, sa.func.count(),
                       sa.func.sum(batch_results.c.input_tokens), sa.func.sum(batch_results.c.output_tokens))
             .where(batch_results.c.batch_id.in_(batch_ids))
             .group_by(batch_results.c.batch_id, batch_results.c.ok))
        out: dict[str, dict[str, int]] = {b: {"completed": 0, "failed": 0, "input": 0, "output": 0} for b in batch_ids}
        with self.db.connect() as c:
            for bid, ok, n, tin, tout in c.execute(q):
                out[bid]["completed" if ok else "failed"] += n
                out[bid]["input"] += tin or 0
                out[bid]["output"] += tout or 0
        return out

    def _object(self, row: Any, counts: dict[str, int]) -> dict[str, Any]:
        obj = {"id": row.id, "object": "batch", "endpoint": row.endpoint, "input_file_id": row.input_file_id,
               "completion_window": row.completion_window, "status": row.status, "output_file_id": row.output_file_id,
               "error_file_id": row.error_file_id, "created_at": row.created_at, "expires_at": row.expires_at,
               "errors": {"object": "list", "data": row.errors} if row.errors else None,
               "request_counts": {"total": row.total, "completed": counts["completed"], "failed": counts["failed"]},
               "metadata": row.metadata, "model": row.model,
               "usage": {"input_tokens": counts["input"], "input_tokens_details": {"cached_tokens": 0},
                         "output_tokens": counts["output"], "output_tokens_details": {"reasoning_tokens": 0},
                         "total_tokens": counts["input"] + counts["output"]}}
        obj |= {k: getattr(row, k) for k in TIMESTAMPS}
        return obj

    def get(self, batch_id: str) -> dict[str, Any]:
        row = self.row(batch_id)
        return self._object(row, self._counts([batch_id])[batch_id])

    def list(self, after: str | None, limit: int) -> dict[str, Any]:
        with self.db.connect() as c:
            rows = list(c.execute(sa.select(batches).where(owned(batches)).order_by(batches.c.seq)))
        page = paginate([{"id": r.id, "row": r} for r in rows], after=after, limit=limit, order="desc")
        counts = self._counts([it["id"] for it in page["data"]])
        page["data"] = [self._object(it["row"], counts[it["id"]]) for it in page["data"]]
        return page

    def request_cancel(self, batch_id: str) -> dict[str, Any]:
        row = self.row(batch_id)
        if row.status in ("validating", "in_progress", "finalizing"):
            with self.db.begin() as c:
                c.execute(batches.update().where(batches.c.id == batch_id, batches.c.status == row.status)
                          .values(status="cancelling", cancelling_at=int(time.time())))
        elif row.status in ("completed", "failed", "expired"):
            raise InvalidRequestError(f"Cannot cancel a batch with status '{row.status}'", param="batch_id",
                                      code="batch_not_cancellable")
        return self.get(batch_id)

    def stop_requested(self, batch_id: str) -> bool:
        with self.db.connect() as c:
            status = c.execute(sa.select(batches.c.status).where(batches.c.id == batch_id)).scalar()
        return status is None or status in ("cancelling", "cancelled")

    def status(self, batch_id: str) -> str:
        return self.row(batch_id).status

    # ---- the runner's lease -----------------------------------------------------------------------------------

    def claim(self, batch_id: str, runner: str, lease_s: float) -> bool:
        """Take the job if no live runner holds it (or we already do)."""
        now = time.time()
        with self.db.begin() as c:
            done = c.execute(batches.update().where(
                batches.c.id == batch_id, batches.c.status.in_(ACTIVE),
                sa.or_(batches.c.runner.is_(None), batches.c.runner == runner, batches.c.lease_until < now),
            ).values(runner=runner, lease_until=now + lease_s))
        return done.rowcount == 1

    def renew(self, batch_id: str, runner: str, lease_s: float) -> bool:
        with self.db.begin() as c:
            done = c.execute(batches.update().where(batches.c.id == batch_id, batches.c.runner == runner,
                                                    batches.c.status.in_(ACTIVE))
                             .values(lease_until=time.time() + lease_s))
        return done.rowcount == 1

    def orphans(self) -> list[str]:
        """Active jobs that no runner holds: new ones, and those whose replica died."""
        with self.db.connect() as c:
            return list(c.execute(sa.select(batches.c.id).where(
                batches.c.status.in_(ACTIVE), batches.c.lease_until < time.time()).order_by(batches.c.seq)).scalars())

    def advance(self, batch_id: str, runner: str, status: str, **values: Any) -> bool:
        """Move the job on (only its runner may), stamping `<status>_at`; False if it was cancelled meanwhile."""
        stamp = {f"{status}_at": int(time.time())} if f"{status}_at" in TIMESTAMPS else {}
        with self.db.begin() as c:
            cond = [batches.c.id == batch_id, batches.c.runner == runner]
            if status not in ("cancelled", "failed", "expired"):
                cond.append(batches.c.status != "cancelling")
            done = c.execute(batches.update().where(*cond).values(status=status, **stamp, **values))
        return done.rowcount == 1

    # ---- per-line results -------------------------------------------------------------------------------------

    def save_results(self, batch_id: str, results: list[LineResult]) -> None:
        """Record finished lines; a line already recorded (a retried batch) keeps its first result."""
        rows = [{"batch_id": batch_id, "line": r.line, "custom_id": r.custom_id, "ok": r.ok,
                 "record": json.dumps(r.record, separators=(",", ":")),
                 "input_tokens": r.input_tokens, "output_tokens": r.output_tokens}
                for r in results]
        if not rows:
            return
        done = self.done_lines(batch_id)
        rows = [r for r in rows if r["line"] not in done]
        try:
            with self.db.begin() as c:
                if rows:
                    c.execute(batch_results.insert(), rows)
        except IntegrityError:  # a stale runner raced us: insert what is still missing, one by one
            for r in rows:
                try:
                    with self.db.begin() as c:
                        c.execute(batch_results.insert(), [r])
                except IntegrityError:
                    pass

    def done_lines(self, batch_id: str) -> set[int]:
        with self.db.connect() as c:
            return set(c.execute(sa.select(batch_results.c.line).where(batch_results.c.batch_id == batch_id))
                       .scalars())

    def records(self, batch_id: str, ok: bool) -> Iterator[str]:
        with self.db.connect() as c:
            yield from c.execute(sa.select(batch_results.c.record).where(
                batch_results.c.batch_id == batch_id, batch_results.c.ok == ok).order_by(batch_results.c.line)
            ).scalars()
