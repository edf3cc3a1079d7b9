"""One benchmark request over aiohttp: send, read the (SSE) response, time every content chunk, classify failures.

Timing follows the usual serving-benchmark definitions: TTFT is the time to the first chunk carrying output text,
ITLs are the gaps between later content chunks (a chunk holding several tokens is one gap), E2E is the time to the
end of the response. Failures are typed so a report can say what went wrong, not only how often:

    http_<status>           the server answered an error status (its message is kept)
    stream_error            an error event arrived after the stream had started
    incomplete_stream       the stream ended without a finish_reason or [DONE]
    timeout                 the per-request timeout expired
    connection_error        could not connect, or the server dropped the connection
    invalid_response        the body was not the JSON the scenario expects
    aborted_at_time_limit   still running when the run's hard time bound expired (cancelled by us)
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from benchmarks.scenarios import RequestOptions, Scenario
from benchmarks.workloads import WorkItem


@dataclass
class RequestResult:
    index: int
    expected_input_tokens: int
    expected_output_tokens: int
    scheduled: float | None = None  # intended send time, perf_counter (open loop only)
    start: float = 0.0  # perf_counter at send
    end: float = 0.0
    ok: bool = False
    error_type: str | None = None
    error: str | None = None
    ttft: float | None = None  # seconds
    itl: list[float] = field(default_factory=list)  # seconds
    chunks: int = 0
    text: str = ""
    usage: dict[str, Any] | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    token_source: str | None = None  # "usage" | "tokenizer"
    warmup: bool = False

    @property
    def e2e(self) -> float:
        return self.end - self.start

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first: (E2E - TTFT) / (output tokens - 1)."""
        if self.ttft is None or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)

    def fail(self, kind: str, message: str) -> RequestResult:
        self.ok, self.error_type, self.error = False, kind, message[:500]
        return self


def _error_message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
        err = body.get("error", body) if isinstance(body, dict) else body
        return str(err.get("message", err) if isinstance(err, dict) else err)
    except (ValueError, RecursionError):
        return raw.decode("utf-8", "replace")


async def _read_stream(resp: aiohttp.ClientResponse, scenario: Scenario, r: RequestResult) -> None:
    last = r.start
    finished = done = False
    texts: list[str] = []
    buf = b""
    async for raw in resp.content:
        buf += raw
        if not buf.endswith(b"\n"):
            continue  # a line longer than the reader's chunk: wait for its end
        line, buf = buf.strip(), b""
        if not line.startswith(b"data:"):
            continue  # blank separators, comments (": ping"), "event:" lines
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        now = time.perf_counter()
        event = json.loads(data)
        if isinstance(event, dict) and "error" in event and not event.get("choices"):
            r.fail("stream_error", _error_message(data))
            return
        delta = scenario.parse_event(event)
        if delta.usage:
            r.usage = delta.usage
        finished = finished or delta.finished
        if delta.text:
            r.chunks += 1
            texts.append(delta.text)
            if r.ttft is None:
                r.ttft = now - r.start
            else:
                r.itl.append(now - last)
            last = now
    r.text = "".join(texts)
    if not (finished or done):
        r.fail("incomplete_stream", "the stream ended without a finish_reason or [DONE]")
        return
    r.ok = True


async def send(session: aiohttp.ClientSession, url: str, scenario: Scenario, item: WorkItem, opts: RequestOptions,
               r: RequestResult, timeout_s: float, headers: dict[str, str] | None = None) -> RequestResult:
    """Send one request for `item`, filling in `r` (also when cancelled: then `aborted_at_time_limit`)."""
    stream = opts.stream and scenario.streams
    body = scenario.payload(item, RequestOptions(**{**vars(opts), "stream": stream}))
    r.start = time.perf_counter()
    try:
        async with session.post(url, json=body, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                return r.fail(f"http_{resp.status}", _error_message(await resp.read()))
            if stream:
                await _read_stream(resp, scenario, r)
            else:
                delta = scenario.parse(await resp.json(content_type=None))  # no TTFT/ITL without streaming
                r.text, r.usage, r.ok = delta.text, delta.usage, True
            return r
    except asyncio.CancelledError:
        r.fail("aborted_at_time_limit", "cancelled when the run's time bound expired")
        raise
    except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041  (aiohttp raises either, depending on version)
        return r.fail("timeout", f"no complete response within {timeout_s:g}s")
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
        return r.fail("connection_error", f"{type(e).__name__}: {e}")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        return r.fail("invalid_response", f"{type(e).__name__}: {e}")
    finally:
        r.end = time.perf_counter()
