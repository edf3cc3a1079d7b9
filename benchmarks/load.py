"""Load modes: closed loop at a fixed concurrency, and open loop with Poisson (or burstier, gamma) arrivals.

Every run has an optional warm-up (requests whose results are dropped), stops issuing after a request count or a
duration, and has a hard bound on its wall time: whatever is still in flight then is cancelled and counted as
`aborted_at_time_limit`, so a stuck server cannot hang a sweep.

Open loop: inter-arrival gaps are gamma(shape=burstiness, scale=1/(rate*burstiness)), mean 1/rate. Burstiness 1 is
a Poisson process (exponential gaps); below 1 arrivals bunch up, above 1 they are more regular. Requests are sent
at their scheduled times whatever the server does (optionally capped by `max_concurrency`); the lag between the
schedule and the actual send is recorded, so a client that could not keep up shows in the results.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from benchmarks.client import RequestResult, send
from benchmarks.scenarios import RequestOptions, Scenario
from benchmarks.workloads import WorkItem


@dataclass
class LoadSpec:
    mode: str  # "concurrency" | "rate"
    value: float  # concurrent requests, or requests per second (inf: all at once)
    num_requests: int | None = None  # stop issuing after this many ...
    duration_s: float | None = None  # ... or after this long (whichever comes first)
    warmup_requests: int = 0
    max_time_s: float = 600.0  # hard bound on the whole run, warm-up included
    request_timeout_s: float = 300.0
    burstiness: float = 1.0
    max_concurrency: int | None = None  # open loop: cap on requests in flight
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("concurrency", "rate"):
            raise ValueError(f"unknown load mode {self.mode!r}")
        if self.num_requests is None and self.duration_s is None:
            raise ValueError("give a request count or a duration")
        if self.mode == "concurrency" and (self.value < 1 or self.value != int(self.value)):
            raise ValueError("concurrency must be a positive integer")
        if self.mode == "rate" and not self.value > 0:
            raise ValueError("rate must be positive")
        if self.mode == "rate" and math.isinf(self.value) and self.num_requests is None:
            raise ValueError("an infinite rate needs a request count")
        if self.burstiness <= 0:
            raise ValueError("burstiness must be positive")

    @property
    def label(self) -> str:
        if self.mode == "concurrency":
            return f"c={int(self.value)}"
        return f"rate={'inf' if math.isinf(self.value) else f'{self.value:g}'}"


@dataclass
class RunOutcome:
    results: list[RequestResult]  # the measured requests, in issue order
    warmup: list[RequestResult]
    started: float  # perf_counter at the first measured send
    finished: float  # perf_counter when the last measured request ended (or was aborted)
    hit_time_limit: bool = False
    wall_s: float = 0.0  # the whole run, warm-up included
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return max(self.finished - self.started, 1e-9)


def arrival_times(rate: float, burstiness: float, rng: np.random.Generator) -> Iterator[float]:
    """Send offsets in seconds: 0, then cumulative gamma gaps with mean 1/rate (all 0 for an infinite rate)."""
    t = 0.0
    while True:
        yield t
        if not math.isinf(rate):
            t += float(rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness)))


class LoadGenerator:
    """Runs one LoadSpec against one endpoint with one scenario."""

    def __init__(self, url: str, scenario: Scenario, opts: RequestOptions, headers: dict[str, str] | None = None,
                 on_done: Callable[[RequestResult], None] | None = None):
        self.url, self.scenario, self.opts, self.headers = url, scenario, opts, headers
        self.on_done = on_done or (lambda r: None)
        self._tasks: list[asyncio.Task] = []

    async def _one(self, session: aiohttp.ClientSession, r: RequestResult, item: WorkItem, timeout_s: float,
                   sem: asyncio.Semaphore | None = None) -> None:
        if sem is None:
            await send(session, self.url, self.scenario, item, self.opts, r, timeout_s, self.headers)
        else:
            async with sem:
                await send(session, self.url, self.scenario, item, self.opts, r, timeout_s, self.headers)
        self.on_done(r)

    async def _closed(self, session: aiohttp.ClientSession, items: list[WorkItem], concurrency: int,
                      count: int | None, stop_at: float, timeout_s: float, results: list[RequestResult],
                      warmup: bool = False) -> None:
        async def worker() -> None:
            while (count is None or len(results) < count) and time.perf_counter() < stop_at:
                item = items[len(results) % len(items)]
                r = RequestResult(len(results), item.input_tokens, item.output_tokens, warmup=warmup)
                results.append(r)
                await self._one(session, r, item, timeout_s)

        self._tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.gather(*self._tasks)

    async def _open(self, session: aiohttp.ClientSession, items: list[WorkItem], spec: LoadSpec, stop_at: float,
                    results: list[RequestResult]) -> None:
        sem = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None
        start = time.perf_counter()
        self._tasks = []
        for k, offset in enumerate(arrival_times(spec.value, spec.burstiness, np.random.default_rng(spec.seed))):
            at = start + offset
            if (spec.num_requests is not None and k >= spec.num_requests) or at >= stop_at:
                break
            if (delay := at - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            item = items[k % len(items)]
            r = RequestResult(k, item.input_tokens, item.output_tokens, scheduled=at)
            results.append(r)
            self._tasks.append(asyncio.create_task(self._one(session, r, item, spec.request_timeout_s, sem)))
        await asyncio.gather(*self._tasks)

    async def _bounded(self, coro: Coroutine[Any, Any, None], deadline: float) -> bool:
        """Run `coro` until `deadline`; past it cancel it and every request task. True if the bound was hit."""
        main = asyncio.create_task(coro)
        done, _ = await asyncio.wait([main], timeout=max(0.0, deadline - time.perf_counter()))
        if main in done:
            main.result()
            return False
        for t in [main, *self._tasks]:
            t.cancel()
        await asyncio.gather(main, *self._tasks, return_exceptions=True)
        return True

    async def run(self, spec: LoadSpec, items: list[WorkItem],
                  warmup_items: list[WorkItem] | None = None) -> RunOutcome:
        """Warm up (results dropped), then the measured phase; all of it within `spec.max_time_s`."""
        t0 = time.perf_counter()
        deadline = t0 + spec.max_time_s
        warm: list[RequestResult] = []
        results: list[RequestResult] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            hit = False
            if spec.warmup_requests and warmup_items:
                conc = int(spec.value) if spec.mode == "concurrency" else 8
                hit = await self._bounded(self._closed(session, warmup_items, min(conc, spec.warmup_requests),
                                                       spec.warmup_requests, math.inf, spec.request_timeout_s, warm,
                                                       warmup=True), deadline)
            started = time.perf_counter()
            if not hit:
                stop_at = started + spec.duration_s if spec.duration_s is not None else math.inf
                if spec.mode == "concurrency":
                    coro = self._closed(session, items, int(spec.value), spec.num_requests, stop_at,
                                        spec.request_timeout_s, results)
                else:
                    coro = self._open(session, items, spec, stop_at, results)
                hit = await self._bounded(coro, deadline)
        finished = max([r.end for r in results if r.end] or [time.perf_counter()])
        out = RunOutcome(results, warm, started, finished, hit_time_limit=hit, wall_s=time.perf_counter() - t0)
        if hit:
            out.notes.append(f"hard time bound of {spec.max_time_s:g}s reached: in-flight requests were cancelled")
        if failed := [r for r in warm if not r.ok]:
            kinds = sorted({str(r.error_type) for r in failed})
            out.notes.append(f"{len(failed)} of {len(warm)} warm-up requests failed ({', '.join(kinds)})"
                             + ("; the time bound expired during warm-up: nothing was measured" if not results else ""))
        return out
