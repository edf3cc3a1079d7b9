"""A small fake OpenAI server for the benchmark tests: deterministic timings, injectable failures, no model.

Chat and completions stream `max_tokens` chunks of " the" (one token each in SmolLM2's tokenizer): the first after
`ttft_s`, then one every `itl_s`. A behaviour per request comes from the body's `user` field, else from `plan`
(the i-th arriving request gets plan[i % len(plan)]), so a test can mix them:

    "fail-503"      503 with an OpenAI error envelope before anything is sent
    "fail-400"      400 invalid_request_error
    "midstream"     two chunks, then an error event
    "truncate"      two chunks, then the stream just ends (no finish_reason, no [DONE])
    "hang"          headers, then nothing for an hour (timeouts, the hard time bound)

POST /v1/embeddings answers 8-float vectors after `embed_s`. Counters of what arrived are kept for assertions.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from typing import Any

from aiohttp import web

WORD = " the"


class FakeOpenAI:
    def __init__(self, ttft_s: float = 0.05, itl_s: float = 0.01, embed_s: float = 0.005, usage: bool = True,
                 model: str = "fake-model", plan: list[str] | None = None):
        self.plan = plan or ["ok"]
        self.ttft_s, self.itl_s, self.embed_s, self.usage, self.model = ttft_s, itl_s, embed_s, usage, model
        self.seen: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.in_flight = self.max_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.port_override: int | None = None

    # ---- handlers --------------------------------------------------------------------------------------------

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    def _error(self, status: int, message: str, kind: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": None}},
                                 status=status)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body = await request.json()
        self.arrivals.append(time.perf_counter())
        self.bodies.append(body)
        mode = body.get("user") or self.plan[(len(self.bodies) - 1) % len(self.plan)]
        self.seen[mode] += 1
        if mode == "fail-503":
            return self._error(503, "engine queue is full", "service_unavailable")
        if mode == "fail-400":
            return self._error(400, "bad request", "invalid_request_error")
        n = int(body.get("max_tokens") or 16)
        prompt_tokens = len(str(body.get("messages") or body.get("prompt")).split())
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        obj = "chat.completion" if chat else "text_completion"
        if not body.get("stream"):
            await asyncio.sleep(self.ttft_s + self.itl_s * (n - 1))
            choice = ({"index": 0, "message": {"role": "assistant", "content": WORD * n}, "finish_reason": "length"}
                      if chat else {"index": 0, "text": WORD * n, "finish_reason": "length"})
            out = {"id": "x", "object": obj, "model": self.model, "choices": [choice]}
            if self.usage:
                out["usage"] = usage
            return web.json_response(out)

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def event(data: Any) -> None:
            await resp.write(f"data: {json.dumps(data)}\n\n".encode())

        def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
            c = ({"index": 0, "delta": {"content": text}, "finish_reason": finish} if chat
                 else {"index": 0, "text": text, "finish_reason": finish})
            return {"id": "x", "object": obj + (".chunk" if chat else ""), "model": self.model, "choices": [c]}

        if chat:
            await event({"id": "x", "object": "chat.completion.chunk", "model": self.model,
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        if mode == "hang":
            await asyncio.sleep(3600)
        t0 = time.perf_counter()
        for i in range(n):
            # absolute schedule: chunk i at ttft + i * itl from the start, so timings do not drift
            await asyncio.sleep(max(0.0, t0 + self.ttft_s + i * self.itl_s - time.perf_counter()))
            if mode in ("midstream", "truncate") and i == 2:
                if mode == "midstream":
                    await event({"error": {"message": "engine failed", "type": "server_error"}})
                return resp
            await event(chunk(WORD, "length" if i == n - 1 else None))
        if self.usage and (body.get("stream_options") or {}).get("include_usage"):
            await event({"id": "x", "object": obj, "model": self.model, "choices": [], "usage": usage})
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _tracked(self, request: web.Request, chat: bool) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._generate(request, chat)
        finally:
            self.in_flight -= 1

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._tracked(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._tracked(request, chat=False)

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.seen["embeddings"] += 1
        await asyncio.sleep(self.embed_s)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        n = sum(len(str(x).split()) for x in inputs)
        return web.json_response({"object": "list", "model": self.model,
                                  "data": [{"object": "embedding", "index": i, "embedding": [0.1] * 8}
                                           for i in range(len(inputs))],
                                  "usage": {"prompt_tokens": n, "total_tokens": n}})

    # ---- lifecycle: its own event loop in a thread -----------------------------------------------------------

    def start(self) -> FakeOpenAI:
        if self.port_override:
            self.port = self.port_override
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_get("/v1/models", self.models)
            app.router.add_post("/v1/chat/completions", self.chat)
            app.router.add_post("/v1/completions", self.completions)
            app.router.add_post("/v1/embeddings", self.embeddings)
            self._runner = web.AppRunner(app, shutdown_timeout=0.1)
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        async def shutdown() -> None:
            await self._runner.cleanup()
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:  # handlers still sleeping ("hang")
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def main() -> None:
    """`python tests/fake_openai.py PORT MODEL [TTFT_S ITL_S]`: serve until SIGTERM (a target for compare's tests)."""
    import signal
    import sys

    server = FakeOpenAI(model=sys.argv[2], ttft_s=float(sys.argv[3]) if len(sys.argv) > 3 else 0.02,
                        itl_s=float(sys.argv[4]) if len(sys.argv) > 4 else 0.005)
    server.port_override = int(sys.argv[1])
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
