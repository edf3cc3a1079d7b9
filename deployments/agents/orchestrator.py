"""The Responses loop: model call -> tools -> model call ..., as one stream of typed Responses events.

Non-streaming requests consume the same stream and return the final response, so both paths share one loop.
The loop is bounded (max_infer_iters, max_tool_calls, max_output_tokens) and a failing tool becomes an error
result the model sees, never a crash. The chat fits the model's context as the request asks (context_window.py):
compaction once before the first model call, truncation before each. Cancellation is read from the store between
iterations and, every CANCEL_POLL_S, while the model streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from deployments.agents.context_window import ContextWindow, split_context
from deployments.agents.hosted_tools import HostedTools
from deployments.agents.items import compaction_item, new_id, refusal_item, to_chat_messages, visible_items
from deployments.agents.model_call import (
    CANCEL_POLL_S,
    CancelPoll,
    ModelOutput,
    chunks,
    response_format,
    tool_choice,
)
from deployments.agents.response_events import ResponseEvents
from deployments.agents.tool_steps import ToolSteps
from deployments.agents.tools.hosted import CallContext
from serve.protocol.openai_chat import ChatCompletionRequest
from serve.protocol.responses import CreateResponseRequest
from serve.telemetry.agents import agent_iteration


class ResponseRun:
    cancel_poll_s = CANCEL_POLL_S

    def __init__(self, req: CreateResponseRequest, response_id: str, history: list[dict], input_items: list[dict],
                 llm: Any, hosted: HostedTools, safety: Any, is_cancelled: Callable[[], Any]):
        self.req = req
        self.llm = llm
        self.hosted = hosted
        self.safety = safety
        self.is_cancelled = is_cancelled
        self.history = history
        self.input_items = input_items
        self.out = ResponseEvents(req, response_id)
        self.user_text = "\n".join(m["content"] for m in to_chat_messages(input_items)
                                   if m["role"] == "user" and m["content"])
        self.tools = ToolSteps(self.out, hosted, CallContext(self.user_text.strip(), list(req.include or [])))
        self.messages: list[dict] = []  # the chat so far, as the model sees it
        self.window = ContextWindow(llm, req.model)
        self.earlier: tuple[int, int] = (0, 0)  # messages[start:end]: the earlier items, which may be dropped
        self.compaction_tokens = 0  # output tokens of the compaction summary (not the answer's budget)
        self.chat_tools: list[dict] = []
        self.fmt: dict | None = None
        self.tool_calls_made = 0
        self.ending: tuple[str, str | None] | None = None  # (status, incomplete reason) once the run is over

    # what the deployment reads: the response so far, the last sequence number, a snapshot for failures
    @property
    def response(self) -> dict[str, Any]:
        return self.out.response

    @property
    def seq(self) -> int:
        return self.out.seq

    def _snapshot(self) -> dict[str, Any]:
        return self.out.snapshot()

    # ---- the loop ---------------------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """created, in_progress; input guardrails; tools prepared; then steps until one ends the run (an answer,
        a hand-back to the client, a cancel, a spent budget) or max_infer_iters runs out; the final event."""
        yield self.out.event("response.created", response=self.out.snapshot())
        yield self.out.event("response.in_progress", response=self.out.snapshot())
        async for e in self._guard_input():
            yield e
        if self.ending is None:
            async for e in self._prepare_tools():
                yield e
            async for e in self._compact():
                yield e
        for iteration in range(self.req.max_infer_iters):
            if self.ending is not None:
                break
            async for e in self._step(iteration):
                yield e
        yield self.out.finish(*(self.ending or ("incomplete", "max_infer_iters")))

    async def _step(self, iteration: int) -> AsyncIterator[dict[str, Any]]:
        """One model call, then either a round of tool calls (the loop goes on) or the answer (it ends)."""
        agent_iteration(iteration)
        if await self.is_cancelled():
            self._end("cancelled")
            return
        budget = self._token_budget()
        if budget is not None and budget <= 0:
            self._end("incomplete", "max_output_tokens")
            return
        await self._truncate(iteration, budget)
        gen = ModelOutput(new_id("msg"), buffered=bool(self.req.guardrails))
        async for e in self._generate(iteration, budget, gen):
            yield e
        if self.ending is not None:  # cancelled while it streamed
            return
        calls = gen.tool_calls()
        async for e in (self._run_tools(calls) if calls else self._answer(gen)):
            yield e

    def _end(self, status: str, reason: str | None = None) -> None:
        self.ending = (status, reason)

    # ---- the steps --------------------------------------------------------------------------------------------

    async def _guard_input(self) -> AsyncIterator[dict[str, Any]]:
        """Input guardrails: a flagged user message is answered with a refusal, and the run ends."""
        refusal = await self._violation(self.user_text, "user") if self.user_text and self.req.guardrails else None
        if refusal:
            for e in self._refuse(refusal):
                yield e

    async def _prepare_tools(self, run_approved: bool = True) -> AsyncIterator[dict[str, Any]]:
        """The chat so far; MCP servers list their tools; approved MCP calls of the previous response run."""
        system = [{"role": "system", "content": self.req.instructions}] if self.req.instructions else []
        earlier, newest = split_context(self.history, self.input_items)
        self.messages = system + to_chat_messages(earlier)
        self.earlier = (len(system), len(self.messages))
        self.messages += to_chat_messages(newest)
        for server in self.hosted.mcp_servers():
            async for e in self.tools.list_mcp_tools(server):
                yield e
        if run_approved:
            async for e in self.tools.answer_approvals(self.history, self.input_items, self.messages):
                yield e
        self.chat_tools, self.fmt = self.hosted.chat_tools(), response_format(self.req)

    async def _compact(self) -> AsyncIterator[dict[str, Any]]:
        """Server-side compaction: past the request's threshold, the model summarises the chain into a compaction
        item (the response's output says so), and the earlier items make way for its summary."""
        threshold, (start, end) = self.req.compact_threshold(), self.earlier
        if threshold is None or start == end:
            return
        budget = self._token_budget()
        limit = threshold or await self.window.length() - await self.window.reserve(budget)
        if await self.window.count(self._chat_request(0, budget)) <= limit:
            return
        summary, usage = await self.window.summarize(visible_items(self.history + self.input_items))
        if not summary:
            return  # the model wrote nothing: nothing to stand for the history, which stays
        self.out.count_usage(usage)
        self.compaction_tokens = usage["completion_tokens"]
        item = compaction_item(summary)
        self.messages[start:end] = to_chat_messages([item])
        self.earlier = (start, start + 1)
        for e in self.out.item(item):
            yield e

    async def input_tokens(self) -> int:
        """The first model call's prompt in tokens, truncated as the request asks (no compaction: that is a model
        call of its own; approved MCP calls are not run)."""
        async for _ in self._prepare_tools(run_approved=False):
            pass
        budget = self._token_budget()
        await self._truncate(0, budget)
        return await self.window.count(self._chat_request(0, budget))

    async def _truncate(self, iteration: int, budget: int | None) -> None:
        """truncation "auto": the oldest earlier messages go until the next model call fits the context."""
        if self.req.truncation == "auto":
            self.earlier = (self.earlier[0], await self.window.truncate(
                self.messages, self.earlier, lambda msgs: self._chat_request(iteration, budget, msgs), budget))

    def _token_budget(self) -> int | None:
        """max_tokens for the next model call: what max_output_tokens leaves (None: no limit)."""
        if self.req.max_output_tokens is None:
            return None
        return self.req.max_output_tokens - (self.out.usage["output_tokens"] - self.compaction_tokens)

    def _chat_request(self, iteration: int, budget: int | None,
                      messages: list[dict] | None = None) -> ChatCompletionRequest:
        tools, limit = self.chat_tools, self.req.max_tool_calls
        allow_tools = tools and (limit is None or self.tool_calls_made < limit)
        choice = tool_choice(self.req, self.hosted, iteration) if allow_tools else ("none" if tools else None)
        logprobs = "message.output_text.logprobs" in (self.req.include or [])
        return ChatCompletionRequest(
            model=self.req.model, messages=self.messages if messages is None else messages,
            temperature=self.req.temperature, top_p=self.req.top_p, seed=self.req.seed, max_tokens=budget,
            tools=tools or None, tool_choice=choice, parallel_tool_calls=self.req.parallel_tool_calls,
            logprobs=logprobs, top_logprobs=self.req.top_logprobs if logprobs else None,
            response_format=self.fmt, stream=True, stream_options={"include_usage": True})

    async def _generate(self, iteration: int, budget: int | None, gen: ModelOutput) -> AsyncIterator[dict[str, Any]]:
        """One streamed model call, folded into `gen`; its text reaches the client as it comes unless output
        guardrails hold it back. A cancel stops the generation mid-stream too."""
        stream = self.llm.options(stream=True).chat_stream.remote(self._chat_request(iteration, budget))
        poll = CancelPoll(self.is_cancelled, self.cancel_poll_s)
        async for chunk in chunks(stream):
            if await poll.cancelled():
                stream.cancel()
                self._end("cancelled")
                return
            self.out.count_usage(chunk.get("usage"))
            for piece, logprobs in gen.fold(chunk):
                if not gen.buffered:
                    for e in self._show_text(gen, piece, logprobs):
                        yield e

    def _show_text(self, gen: ModelOutput, piece: str, logprobs: list[dict]) -> list[dict[str, Any]]:
        """The message item opens with the first piece of text; each piece is a delta."""
        events = [] if gen.shown else self.out.open_message(gen.msg_id)
        gen.shown = True
        return events + [self.out.text_delta(gen.msg_id, piece, logprobs)]

    async def _run_tools(self, calls: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Hosted tools run and the loop goes on; calls the client answers end the response (completed)."""
        self.tool_calls_made += len(calls)
        async for e in self.tools.run(calls, self.messages):
            yield e
        if self.tools.handed_back:
            self._end("completed")

    async def _answer(self, gen: ModelOutput) -> AsyncIterator[dict[str, Any]]:
        """The model answered in text: output guardrails judge held-back text, then the message closes."""
        if gen.buffered and gen.text:
            refusal = await self._violation(gen.text, "assistant")
            if refusal:
                for e in self._refuse(refusal):
                    yield e
                return
            for e in self._show_text(gen, gen.text, gen.logprobs):
                yield e
        events = [] if gen.shown else self.out.open_message(gen.msg_id)
        for e in events + self.out.close_message(gen.msg_id, gen.text, gen.logprobs):
            yield e
        self._end(*(("incomplete", "max_output_tokens") if gen.finish == "length" else ("completed", None)))

    async def _violation(self, text: str, role: str) -> str | None:
        """The first guardrail that flags `text`: its message to the user (None: every shield passed)."""
        for g in self.req.guardrails or []:
            shield = g if isinstance(g, str) else g.get("id") or g.get("shield_id")
            r = await self.safety.run_shield.remote(shield, [{"role": role, "content": text}], {})
            if r["violation"]:
                return r["violation"]["user_message"] or "This request violates a safety policy."
        return None

    def _refuse(self, message: str) -> list[dict[str, Any]]:
        self._end("completed")
        return self.out.item(refusal_item(message))
