"""serve/local_handle.py: the in-process handle the Ingress uses for the engine it hosts behaves as a Serve handle
does for its callers (calls start at `.remote`, streams iterate and cancel, errors raise as they were raised)."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from serve.local_handle import IngressHandle, LocalHandle


class Target:
    def __init__(self):
        self.started = 0
        self.closed = False

    async def echo(self, x: int) -> int:
        self.started += 1
        await asyncio.sleep(0)
        return x

    async def fail(self) -> None:
        raise ValueError("bad input")

    async def count(self, n: int):
        try:
            for i in range(n):
                yield [i]
                await asyncio.sleep(0)
        finally:
            self.closed = True


def test_calls_start_at_remote_and_stream_options_carry():
    async def main():
        t = Target()
        h = LocalHandle(t).options(session_id="s1")  # routing options mean nothing in-process
        call = h.echo.remote(7)
        await asyncio.sleep(0)
        assert t.started == 1  # started before anyone awaits it, as a DeploymentResponse is
        assert await call == 7
        with pytest.raises(ValueError, match="bad input"):
            await h.fail.remote()
        stream = h.options(stream=True).count.remote(3)
        assert [x async for x in stream] == [[0], [1], [2]]
        assert t.closed

    asyncio.run(main())


def test_cancel_closes_the_stream():
    async def main():
        t = Target()
        stream = LocalHandle(t, stream=True).count.remote(100)
        assert await stream.__anext__() == [0]
        stream.cancel()
        await asyncio.sleep(0.01)
        assert t.closed

    asyncio.run(main())


def test_private_names_are_not_forwarded():
    with pytest.raises(AttributeError):
        LocalHandle(Target())._secret  # noqa: B018
    with pytest.raises(AttributeError):
        IngressHandle()._secret  # noqa: B018


def test_ingress_handle_pickles_unresolved_outside_a_replica():
    h = pickle.loads(pickle.dumps(IngressHandle()))
    assert isinstance(h, IngressHandle) and h._handle is None
