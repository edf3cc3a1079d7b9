"""Backpressure for request bodies on Serve's direct ingress (the `haproxy` data plane, serve/data_plane.py).

Ray Serve 2.60's direct-ingress replica reads the client's ASGI messages in its own event loop as fast as the
socket delivers them and queues them, without bound, for the app's loop (`ASGIDIReceiveProxy`): a 300 MiB upload
that the app spools to the blob store slower than it arrives grew the Ingress replica by ~160 MiB. This proxy keeps
Serve's behaviour (it reads on until the client disconnects, so a disconnect still cancels a running stream) but
holds at most `MAX_QUEUED_MESSAGES` body messages (uvicorn's are up to 64 KiB): the reader waits for the app before
it reads more, and the socket's flow control slows the client down instead.

`install()` swaps it in for the replica code of this process; the Ingress replica calls it when it starts. It
relies on Ray's private names, checked at install; a Ray that lacks them keeps its own proxy (logged).
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)

MAX_QUEUED_MESSAGES = 16


def _bounded_proxy_class() -> type:
    from ray.serve._private.direct_ingress_http_util import ASGIDIReceiveProxy

    class BoundedReceiveProxy(ASGIDIReceiveProxy):
        @property
        def queue(self) -> asyncio.Queue:  # created lazily, in the app's loop (the first put or get runs there)
            if self._queue is None:
                self._queue = asyncio.Queue(maxsize=MAX_QUEUED_MESSAGES)
            return self._queue

        async def _fetch_until_disconnect(self):
            while True:
                msg = await self._receive()
                if asyncio.get_running_loop() == self._user_event_loop:
                    await self.queue.put(msg)
                else:  # the app runs in its own loop: wait until it has taken room for this message
                    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.queue.put(msg),
                                                                               self._user_event_loop))
                if msg["type"] == "http.disconnect":
                    self._disconnect_message = msg
                    return None
                if msg["type"] == "websocket.disconnect":
                    self._disconnect_message = msg
                    return msg["code"]

    return BoundedReceiveProxy


def install() -> bool:
    """Use the bounded proxy for this process's direct-ingress requests; False where Ray's names differ."""
    try:
        from ray.serve._private import replica
        from ray.serve._private.direct_ingress_http_util import ASGIDIReceiveProxy
    except ImportError:
        logger.warning("Ray Serve has no direct-ingress receive proxy here: request bodies are not bounded")
        return False
    current = getattr(replica, "ASGIDIReceiveProxy", None)
    if getattr(current, "_stackserve_bounded", False):  # a second Ingress replica start in this process
        return True
    if current is not ASGIDIReceiveProxy or not hasattr(ASGIDIReceiveProxy, "_fetch_until_disconnect"):
        logger.warning("Ray Serve's direct-ingress receive proxy changed: request bodies are not bounded")
        return False
    bounded = _bounded_proxy_class()
    bounded._stackserve_bounded = True
    replica.ASGIDIReceiveProxy = bounded
    return True
