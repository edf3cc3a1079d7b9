"""Handles for the engine the Ingress hosts (`in_ingress`): the same calling surface as a Ray Serve
DeploymentHandle, so every caller keeps one way to reach a model (`handle.chat.remote(req)`,
`handle.options(stream=True).chat_stream.remote(req)`).

- `LocalHandle`: inside the Ingress replica, calls the replica's own `LLMEndpoints` methods in-process. The router's
  request reaches the engine with no handle hop, and a stream's chunks are written to the HTTP response as the
  engine yields them, not relayed through a second deployment.
- `IngressHandle`: what other deployments (Agents, Safety, Batches) hold for that model. The graph binds the Ingress
  last (it takes every other deployment's handle), so they cannot be given its handle when they are bound; this one
  looks the Ingress up by name in the caller's own application on first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


class LocalStream:
    """A streaming call's results, as a DeploymentResponseGenerator gives them: async iteration and `cancel()`."""

    def __init__(self, source: AsyncIterator[Any]):
        self._source = source
        self._closing: asyncio.Task | None = None  # held: the loop keeps only a weak reference to a task

    def __aiter__(self) -> LocalStream:
        return self

    async def __anext__(self) -> Any:
        return await self._source.__anext__()

    def cancel(self) -> None:
        """Stop the call (the engine frees the request); a no-op once it has ended."""
        close = getattr(self._source, "aclose", None)
        if close is not None and self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(close())


class _LocalMethod:
    def __init__(self, fn: Any, stream: bool):
        self._fn = fn
        self._stream = stream

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Starts the call now, as `DeploymentHandle.remote` does: a task to await, or a `LocalStream`."""
        if self._stream:
            return LocalStream(self._fn(*args, **kwargs))
        return asyncio.ensure_future(self._fn(*args, **kwargs))


class LocalHandle:
    """A DeploymentHandle's surface over `target`, an object in this process. `options(stream=...)` is honoured;
    the routing options (`session_id`, ...) mean nothing in-process and are ignored."""

    def __init__(self, target: Any, stream: bool = False):
        self._target = target
        self._stream = stream

    def options(self, *, stream: bool | None = None, **_routing: Any) -> LocalHandle:
        return LocalHandle(self._target, self._stream if stream is None else stream)

    def __getattr__(self, name: str) -> _LocalMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return _LocalMethod(getattr(self._target, name), self._stream)


class IngressHandle:
    """The Ingress deployment's handle in the caller's application, looked up on first use (inside a replica)."""

    def __init__(self, handle: Any = None):
        self._handle = handle

    def _resolved(self) -> Any:
        if self._handle is None:
            from ray import serve

            self._handle = serve.get_deployment_handle("Ingress", serve.get_replica_context().app_name)
        return self._handle

    def options(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolved().options(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._resolved(), name)

    def __reduce__(self):
        """Sent on from a replica (Batches hands its handles to Ray Data's workers, which are no replicas): as the
        resolved handle. Pickled on the driver (the graph's bind arguments): as the name it will look up."""
        if self._handle is None:
            try:
                self._resolved()
            except Exception:  # noqa: BLE001  (not in a replica: resolve where it is used)
                pass
        return IngressHandle, (self._handle,)
