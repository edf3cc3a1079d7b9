"""`coalesce`: LLM stream chunks travel in lists of whatever is ready, in order, with errors and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from deployments.inference.deployment import coalesce


async def _source(n: int, log: list, fail_at: int | None = None):
    try:
        for i in range(n):
            if i == fail_at:
                raise ValueError("boom")
            yield i
            await asyncio.sleep(0)
    finally:
        log.append("closed")


def test_order_kept_and_ready_items_travel_together():
    async def run():
        out = []
        async for batch in coalesce(_source(50, [])):
            out.append(batch)
            await asyncio.sleep(0.001)  # a slow consumer: items pile up
        return out

    batches = asyncio.run(run())
    assert [x for b in batches for x in b] == list(range(50))
    assert all(batches) and max(len(b) for b in batches) > 1


def test_errors_reach_the_consumer_after_earlier_items():
    async def run():
        seen = []
        with pytest.raises(ValueError, match="boom"):
            async for batch in coalesce(_source(10, [], fail_at=5)):
                seen += batch
        return seen

    assert asyncio.run(run()) == [0, 1, 2, 3, 4]


def test_closing_early_closes_the_source():
    async def run():
        log = []
        gen = coalesce(_source(10_000, log))
        await gen.__anext__()
        await gen.aclose()
        return log

    assert asyncio.run(run()) == ["closed"]
