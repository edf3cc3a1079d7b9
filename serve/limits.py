"""Per-principal request limits in the ingress: a rate (token bucket, requests per minute) and a number of requests
in flight (a streamed response counts until its last byte). Over either limit: 429 with Retry-After.

Counted per ingress replica (no shared state on the request path): with N ingress replicas a principal may get up
to N times the configured figures; set them per replica, or run one ingress replica where the bound must be exact.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from serve.auth import Principal
from serve.errors import RateLimitError


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
