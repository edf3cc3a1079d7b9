"""Leases on rows of the shared database: work (a batch job, a file's ingestion, a stored response run) is held by
the replica running it, which renews the lease; every replica sweeps for work whose lease lapsed (its replica died).
The rows and their conditional UPDATEs live with each store; these are the two loops they all run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("stackserve.leases")


async def renew_while_held(renew: Callable[[], bool], lease_s: float) -> None:
    """Every lease_s / 3, run the blocking `renew` in a worker thread; return once it reports the lease lost.
    Cancel the task when the work is done."""
    while True:
        await asyncio.sleep(lease_s / 3)
        if not await asyncio.to_thread(renew):
            return


async def sweep_forever(sweep: Callable[[], Awaitable[Any]], period_s: float, what: str) -> None:
    """Run `sweep` every period_s for the replica's lifetime; a failed sweep is logged and the next one runs."""
    while True:
        try:
            await sweep()
        except Exception:
            logger.exception("%s failed", what)
        await asyncio.sleep(period_s)
