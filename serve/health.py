"""Provider health, Llama Stack's shape: `{"status": "OK"}` or `{"status": "Error", "message": ...}`.

Each service deployment has a typed `health()` method that runs its own checks (`run_checks`: its database
answers, its engine loop is alive, ...) and returns a report. The ingress asks with `ask` and a short timeout: a
replica that cannot answer in time, or is gone, is an Error too. No Ray or FastAPI here: deployments, the ingress
and unit tests all import it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from serve.errors import unwrap

OK = "OK"
ERROR = "Error"
Report = dict[str, str]  # {"status": OK | ERROR, "message": ... (with ERROR)}


def ok() -> Report:
    return {"status": OK}


def error(message: str) -> Report:
    return {"status": ERROR, "message": message}


def _describe(exc: BaseException) -> str:
    exc = unwrap(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def run_checks(*checks: Callable[[], Any]) -> Report:
    """The first failing check's exception as an Error, else OK. A check raises when unhealthy; plain functions
    (a database query) run in a worker thread."""
    for check in checks:
        try:
            if inspect.iscoroutinefunction(check):
                await check()
            else:
                await asyncio.to_thread(check)
        except Exception as e:  # noqa: BLE001  (the report is the answer)
            return error(_describe(e))
    return ok()


def running(task: asyncio.Task, what: str) -> Callable[[], Awaitable[None]]:
    """A check that fails once `task`, a replica's background loop, has stopped."""

    async def check() -> None:
        if task.done():
            exc = None if task.cancelled() else task.exception()
            raise RuntimeError(f"{what} stopped" + (f": {exc!r}" if exc else ""))

    return check


async def ask(call: Callable[[], Any], timeout_s: float) -> Report:
    """Ask a deployment for its report: `call()` starts the handle call (`handle.health.remote`). No answer within
    `timeout_s`, or a failed call (replica dead, method missing), is an Error naming why."""
    response = None

    async def answer() -> Any:
        nonlocal response
        response = call()
        return await response

    try:
        report = await asyncio.wait_for(answer(), timeout_s)
    except TimeoutError:
        cancel = getattr(response, "cancel", None)
        if cancel is not None:
            cancel()
        return error(f"no answer within {timeout_s:g} s")
    except Exception as e:  # noqa: BLE001
        return error(_describe(e))
    if not isinstance(report, dict) or report.get("status") not in (OK, ERROR):
        return error(f"unexpected health report {report!r}")
    return report


def worst(reports: dict[str, Report]) -> Report:
    """One report for several deployments (the models of one inference provider): OK only if all are, else the
    failures, each named."""
    failed = [f"{name}: {r.get('message', r['status'])}" for name, r in reports.items() if r["status"] != OK]
    return error("; ".join(failed)) if failed else ok()


class SharedProbe:
    """At most one round of probes per `ttl_s`: concurrent or back-to-back callers share the running or last
    round (`/v1/health` is open to anyone, and each round fans out to every deployment)."""

    def __init__(self, probe: Callable[[], Awaitable[Any]], ttl_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.probe = probe
        self.ttl_s = ttl_s
        self.clock = clock
        self._task: asyncio.Task | None = None
        self._started = 0.0

    async def get(self) -> Any:
        now = self.clock()
        if self._task is None or (self._task.done() and now - self._started >= self.ttl_s):
            self._task = asyncio.ensure_future(self.probe())
            self._started = now
        return await asyncio.shield(self._task)
