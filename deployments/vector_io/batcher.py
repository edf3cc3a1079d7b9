"""An in-replica dynamic batcher: concurrent callers' items go out in one call (VectorIO's query embeddings).

Each search needs one query embedding; sent one by one, every search pays a handle call to the Embeddings
deployment (a few ms of Ray Serve's own CPU on a 2-core box, more than MiniLM spends on one short query). The
batcher keeps at most `max_in_flight` calls running: while one runs, new items queue, and the next call takes all of
them (up to `max_batch_size`). So a lone search goes out at once (no added wait at c=1) and under load the
batches grow with the load. `wait_timeout_s` > 0 also holds every batch open that long for more items;
`busy_wait_s` holds it open only while the batcher is busy (its previous call carried more than one request): a lone
caller still goes at once, and under load fewer, larger calls cost less CPU per item.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Pending(Generic[T, R]):
    items: list[T]
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # the caller's context (its trace span among others): a batch's call runs in its first caller's, so the call
    # shows in that request's trace
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


class AsyncBatcher(Generic[T, R]):
    """`submit(items)` -> `run(all queued items)[its slice]`; `run` must return one result per item, in order."""

    def __init__(self, run: Callable[[list[T]], Awaitable[Sequence[R]]], max_batch_size: int = 64,
                 wait_timeout_s: float = 0.0, max_in_flight: int = 1, busy_wait_s: float = 0.0):
        if max_batch_size < 1 or max_in_flight < 1 or wait_timeout_s < 0 or busy_wait_s < 0:
            raise ValueError("max_batch_size and max_in_flight must be >= 1, wait_timeout_s and busy_wait_s >= 0")
        self._run = run
        self.max_batch_size = max_batch_size
        self.wait_timeout_s = wait_timeout_s
        self.busy_wait_s = busy_wait_s
        self._last_requests = 0  # requests in the latest call
        self._max_in_flight = max_in_flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[_Pending[T, R]] = []
        self._loop_task: asyncio.Task | None = None
        self._calls: set[asyncio.Task] = set()
        self.batch_sizes: list[int] = []  # items per call, the latest 1000 (stats and tests)

    def _bind(self) -> None:
        """The queue, semaphore and event belong to the loop that uses them: used from another loop (each
        `asyncio.run` outside Serve, e.g. the offline batch CLI's actor), the batcher starts afresh there."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._queue, self._loop_task = loop, [], None
            self._slots = asyncio.Semaphore(self._max_in_flight)
            self._wakeup = asyncio.Event()

    async def submit(self, items: list[T]) -> list[R]:
        if not items:
            return []
        self._bind()
        pending: _Pending[T, R] = _Pending(list(items))
        self._queue.append(pending)
        self._wakeup.set()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._dispatch_forever())
        return await pending.future

    async def _dispatch_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            await self._slots.acquire()  # a free slot first: items keep queueing while every slot is busy
            wait = self.wait_timeout_s or (self.busy_wait_s if self._last_requests > 1 else 0.0)
            if wait > 0 and self._queued() < self.max_batch_size:
                await asyncio.sleep(wait)
            batch = self._take()
            if not self._queue:
                self._wakeup.clear()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._call(batch), context=batch[0].context)
            self._calls.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._calls.discard)

    def _queued(self) -> int:
        return sum(len(p.items) for p in self._queue)

    def _take(self) -> list[_Pending[T, R]]:
        """Queued requests up to max_batch_size items (a request is never split; one larger than the limit goes
        out alone)."""
        batch, n = [], 0
        while self._queue and (not batch or n + len(self._queue[0].items) <= self.max_batch_size):
            p = self._queue.pop(0)
            batch.append(p)
            n += len(p.items)
        self._last_requests = len(batch) or self._last_requests
        return batch

    async def _call(self, batch: list[_Pending[T, R]]) -> None:
        try:
            items = [x for p in batch for x in p.items]
            self.batch_sizes = [*self.batch_sizes[-999:], len(items)]
            results = list(await self._run(items))
            if len(results) != len(items):
                raise RuntimeError(f"the batch function returned {len(results)} results for {len(items)} items")
            i = 0
            for p in batch:
                if not p.future.done():
                    p.future.set_result(results[i:i + len(p.items)])
                i += len(p.items)
        except BaseException as e:  # every caller of the batch sees its error (cancellation included)
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e if isinstance(e, Exception) else RuntimeError("batch cancelled"))
            if not isinstance(e, Exception):
                raise
        finally:
            self._slots.release()


class BatchedEmbedder:
    """`embed(model_id, texts)` with an AsyncBatcher per model in front: concurrent callers' texts share calls of
    at most `max_batch_size` texts (a caller's longer list is split into such pieces, sent concurrently)."""

    def __init__(self, embed: Callable[[str, list[str]], Awaitable[np.ndarray]], max_batch_size: int,
                 wait_timeout_s: float = 0.0, max_in_flight: int = 1, busy_wait_s: float = 0.0):
        self._embed = embed
        self.max_batch_size = max_batch_size
        self._options = (max_batch_size, wait_timeout_s, max_in_flight, busy_wait_s)
        self.batchers: dict[str, AsyncBatcher[str, np.ndarray]] = {}

    def _batcher(self, model_id: str) -> AsyncBatcher[str, np.ndarray]:
        if model_id not in self.batchers:
            async def run(texts: list[str]) -> np.ndarray:
                return np.asarray(await self._embed(model_id, texts), dtype=np.float32)

            self.batchers[model_id] = AsyncBatcher(run, *self._options)
        return self.batchers[model_id]

    async def __call__(self, model_id: str, texts: list[str]) -> np.ndarray:
        """[len(texts), dim] float32, in the order of `texts`."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        step = self.max_batch_size
        parts = await asyncio.gather(*[self._batcher(model_id).submit(texts[i:i + step])
                                       for i in range(0, len(texts), step)])
        return np.stack([row for part in parts for row in part])
