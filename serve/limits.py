"""Request limits in the ingress. Per principal: a rate (token bucket, requests per minute) and a number of
requests in flight (a streamed response counts until its last byte); over either limit, 429 with Retry-After.
Per request: a timeout until the response starts (`RequestTimeout`, 504).

A `PrincipalLimiter` counts for one process: in each ingress replica (`server.limits_scope: replica`, no shared
state on the request path: with N replicas a principal may get up to N times the configured figures), or inside the
application's one limiter actor that every replica asks (`shared`, serve/shared_limits.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from serve.errors import RateLimitError, RequestTimeoutError, error_body, error_shape
from serve.principal import Principal


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    in_flight: int = 0


@dataclass
class PrincipalLimiter:
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def acquire(self, principal: Principal) -> bool:
        """Count one request in, or raise RateLimitError. True when the caller must `release` it later."""
        limits = principal.limits
        if limits is None or (limits.requests_per_minute is None and limits.max_concurrent_requests is None):
            return False
        now = self.clock()
        rpm = limits.requests_per_minute
        b = self._buckets.get(principal.name)
        if b is None:
            b = self._buckets[principal.name] = _Bucket(tokens=float(rpm or 0), stamp=now)
        if rpm is not None:
            b.tokens = min(float(rpm), b.tokens + (now - b.stamp) * rpm / 60.0)
            b.stamp = now
            if b.tokens < 1.0:
                wait = math.ceil((1.0 - b.tokens) * 60.0 / rpm)
                raise RateLimitError(f"principal '{principal.name}' is over its limit of {rpm} requests per minute",
                                     code="rate_limit_exceeded", headers={"Retry-After": str(max(1, wait))})
        cap = limits.max_concurrent_requests
        if cap is not None and b.in_flight >= cap:
            raise RateLimitError(f"principal '{principal.name}' already has {cap} requests in progress (its limit)",
                                 code="concurrency_limit_exceeded", headers={"Retry-After": "1"})
        if rpm is not None:
            b.tokens -= 1.0
        b.in_flight += 1
        return True

    def release(self, principal: Principal) -> None:
        b = self._buckets.get(principal.name)
        if b is not None and b.in_flight > 0:
            b.in_flight -= 1


class RequestTimeout:
    """ASGI middleware: a request whose response has not started within `timeout_s()` seconds is cancelled (its
    handler, and through it the deployment calls it awaits) and answered 504. A response that has started (a
    stream) runs on: generation length is bounded by max_tokens, not by this timeout."""

    def __init__(self, app, timeout_s: Callable[[], float | None]):
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        timeout = self.timeout_s() if scope["type"] == "http" else None
        if not timeout:
            return await self.app(scope, receive, send)
        started = asyncio.Event()

        async def send_started(message) -> None:
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, send_started))
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if started.is_set() or task.done():
            return await task
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if started.is_set():  # it started while being cancelled: nothing more can be sent
            return
        err = RequestTimeoutError(f"the request did not complete within the server's timeout of {timeout:g} s",
                                  code="request_timeout")
        status, shaped = error_body(err, error_shape(scope))
        body = json.dumps(shaped).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
