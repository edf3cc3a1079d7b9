"""serve/bounded_receive.py: Serve's direct-ingress receive proxy, bounded. The reader (Serve's loop) stops reading
the client's body while the app (its own loop, in another thread, as Serve runs user code) is behind, and a
disconnect still reaches the app."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serve import bounded_receive


@pytest.fixture
def app_loop():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _client(n_chunks: int, read: list[int]):
    async def receive():
        read[0] += 1
        if read[0] <= n_chunks:
            return {"type": "http.request", "body": b"x" * 65536, "more_body": read[0] < n_chunks}
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}
    return receive


def _reading(app_loop, n_chunks: int, read: list[int]):
    """A bounded proxy over a client of `n_chunks` body messages, its reader started (call in Serve's loop)."""
    proxy = bounded_receive._bounded_proxy_class()({"type": "http"}, _client(n_chunks, read), app_loop)
    return proxy, proxy.fetch_until_disconnect_task()


def test_the_reader_waits_for_the_app(app_loop):
    read = [0]

    async def scenario():
        proxy, task = _reading(app_loop, 200, read)
        await asyncio.sleep(0.5)  # the app has not read anything yet
        held = read[0]
        got = [await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(proxy(), app_loop)) for _ in range(200)]
        last = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(proxy(), app_loop))
        await asyncio.wait_for(task, 5)
        return held, got, last

    held, got, last = asyncio.run(scenario())
    assert held <= bounded_receive.MAX_QUEUED_MESSAGES + 2  # not 200: the body waits in the socket, not in memory
    assert sum(len(m["body"]) for m in got) == 200 * 65536 and not got[-1]["more_body"]
    assert last == {"type": "http.disconnect"}


def test_a_cancelled_request_stops_the_reader(app_loop):
    read = [0]

    async def scenario():
        _, task = _reading(app_loop, 100, read)
        await asyncio.sleep(0.3)
        task.cancel()  # Serve cancels the reader when the request ends
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert read[0] <= bounded_receive.MAX_QUEUED_MESSAGES + 2


def test_install_swaps_serves_proxy():
    from ray.serve._private import replica

    original = replica.ASGIDIReceiveProxy
    try:
        assert bounded_receive.install() and replica.ASGIDIReceiveProxy._stackserve_bounded
        assert bounded_receive.install()  # idempotent: a second replica start in one process
    finally:
        replica.ASGIDIReceiveProxy = original
