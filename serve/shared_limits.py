"""Principal limits that hold across ingress replicas (`server.limits_scope: shared`).

One named Ray actor per Serve application holds the buckets (the same `PrincipalLimiter` a replica uses on its
own); each ingress replica asks it once per request (`acquire`, one round trip) and tells it when the response has
ended (`release`, not awaited). The actor is detached, so it outlives the replica that happened to create it; every
replica finds it by name (`get_if_exists`). Its cost per request is measured in benchmarks/shared_limiter.py.
"""

from __future__ import annotations

from typing import Any, Protocol

from serve.errors import RateLimitError
from serve.limits import PrincipalLimiter
from serve.principal import Principal

ACTOR_PREFIX = "stackserve-limiter"


class Limiter(Protocol):
    """What the ingress guard (serve/app.py) counts requests with."""

    async def acquire(self, principal: Principal) -> bool:
        """Count one request in, or raise RateLimitError; True when `release` must follow."""

    def release(self, principal: Principal) -> None: ...


class ReplicaLimiter:
    """`limits_scope: replica`: buckets in this process (N ingress replicas admit up to N times the limits)."""

    def __init__(self, limiter: PrincipalLimiter | None = None):
        self.limiter = limiter or PrincipalLimiter()

    async def acquire(self, principal: Principal) -> bool:
        return self.limiter.acquire(principal)

    def release(self, principal: Principal) -> None:
        self.limiter.release(principal)


class LimiterActor:
    """The body of the shared actor: a PrincipalLimiter behind two calls. A refusal comes back as the error
    object (raised by the caller), not as an actor failure. The methods are async with no await inside: they run
    one at a time on the actor's event loop (no interleaving within a call), without a thread hop per call
    (measured: ~400 vs ~340 acquires/s at c=32 with a threaded actor on the loaded 2-core box)."""

    def __init__(self) -> None:
        self.limiter = PrincipalLimiter()

    async def acquire(self, principal: Principal) -> bool | RateLimitError:
        try:
            return self.limiter.acquire(principal)
        except RateLimitError as e:
            return e

    async def release(self, principal: Principal) -> None:
        self.limiter.release(principal)


def limiter_actor(app_name: str) -> Any:
    """The application's limiter actor, created by whichever replica asks first."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=-1)(LimiterActor)
    return actor.options(name=f"{ACTOR_PREFIX}-{app_name}", get_if_exists=True, lifetime="detached").remote()


class SharedLimiter:
    """`limits_scope: shared`: the buckets live in the application's limiter actor."""

    def __init__(self, app_name: str, actor: Any = None):
        self.app_name = app_name
        self.actor = actor if actor is not None else limiter_actor(app_name)

    async def acquire(self, principal: Principal) -> bool:
        limits = principal.limits
        if limits is None or (limits.requests_per_minute is None and limits.max_concurrent_requests is None):
            return False  # nothing to count: no round trip
        answer = await self.actor.acquire.remote(principal)
        if isinstance(answer, RateLimitError):
            raise answer
        return answer

    def release(self, principal: Principal) -> None:
        self.actor.release.remote(principal)  # fire and forget: the response is already sent
