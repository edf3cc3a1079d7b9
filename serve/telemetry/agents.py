"""Agent spans: `invoke_agent <model>` around one Responses run, an `agent.iteration` span per model call of
the loop (what the iteration calls, the model and its tools, nests under it), `execute_tool <name>` per tool.

The iteration hook is one call at the top of the loop (`agent_iteration(n)`): it closes the previous iteration's
span and opens the next; the run's decorator closes the last one. Both live in the run's own task, so the
context they attach is detached where it was attached.
"""

from __future__ import annotations

import functools
from contextlib import aclosing
from contextvars import ContextVar
from typing import Any

from opentelemetry import context, trace

from serve.telemetry import tracing

_run: ContextVar[_AgentRun | None] = ContextVar("stackserve_agent_run", default=None)


class _AgentRun:
    """One traced run: its span (current while the run's events are produced) and the open iteration span.
    (The decorator below only calls this class's methods: Ray pickles the decorated method by value, and a
    module global it named directly would be copied, not shared.)"""

    def __init__(self, span: trace.Span):
        self.span = span
        self.iteration: trace.Span | None = None
        self.token = None

    @classmethod
    def start(cls, req: Any) -> _AgentRun:
        attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": req.model}
        if req.max_output_tokens is not None:
            attrs["gen_ai.request.max_tokens"] = req.max_output_tokens
        run = cls(tracing.start_span(f"invoke_agent {req.model}", attributes=attrs))
        run.span_token = context.attach(trace.set_span_in_context(run.span))
        run.run_token = _run.set(run)
        return run

    def end(self) -> None:
        self.end_iteration()
        _run.reset(self.run_token)
        context.detach(self.span_token)
        self.span.end()

    def next_iteration(self, n: int) -> None:
        self.end_iteration()
        self.iteration = tracing.start_span("agent.iteration", attributes={"stackserve.iteration": n},
                                            context=trace.set_span_in_context(self.span))
        self.token = context.attach(trace.set_span_in_context(self.iteration))

    def end_iteration(self) -> None:
        if self.iteration is not None:
            context.detach(self.token)
            self.iteration.end()
            self.iteration = self.token = None

    def observe(self, event: dict[str, Any]) -> None:
        response = event.get("response")
        if response is None:
            return
        self.span.set_attribute("gen_ai.response.id", response["id"])
        if event["type"] in ("response.completed", "response.incomplete", "response.failed", "response.cancelled"):
            self.span.set_attribute("stackserve.status", response["status"])
            usage = response.get("usage") or {}
            if usage:
                self.span.set_attributes({"gen_ai.usage.input_tokens": usage["input_tokens"],
                                          "gen_ai.usage.output_tokens": usage["output_tokens"]})
            if response["status"] == "failed":
                self.span.set_status(trace.Status(trace.StatusCode.ERROR, str(response.get("error"))))


def agent_response(method):
    """Decorate the agents deployment's event stream `(self, req) -> events` with the run's span."""

    @functools.wraps(method)
    async def events(self, req, *args, **kwargs):
        if not tracing.enabled():
            async with aclosing(method(self, req, *args, **kwargs)) as inner:
                async for event in inner:
                    yield event
            return
        run = _AgentRun.start(req)
        try:
            async with aclosing(method(self, req, *args, **kwargs)) as inner:
                async for event in inner:
                    run.observe(event)
                    yield event
        except Exception as e:
            tracing.set_error(run.span, e)
            raise
        finally:
            run.end()

    return events


def agent_iteration(n: int) -> None:
    """Called at the top of each loop iteration of a traced run; a no-op otherwise."""
    run = _run.get()
    if run is not None:
        run.next_iteration(n)


def tool_span(name: str):
    """Decorate an async tool call with `execute_tool <name>`."""
    return tracing.traced(f"execute_tool {name}", attributes={"gen_ai.operation.name": "execute_tool",
                                                              "gen_ai.tool.name": name})
