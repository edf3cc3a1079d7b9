"""Scenarios: what one benchmark request is (route, JSON body) and how its response reads (text, usage).

The load generator, metrics and reports are scenario-agnostic; a new endpoint is one small subclass registered in
`SCENARIOS`: its route, `payload()` for a work item, and how to read a full response body (and, if it streams,
an SSE event). Token counts come from the server's `usage` where it sends one, else from the tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from benchmarks.workloads import WorkItem


@dataclass
class RequestOptions:
    """Per-run request settings shared by every scenario."""

    model: str
    stream: bool = True
    ignore_eos: bool = True
    temperature: float | None = 0.0
    extra_body: dict[str, Any] = field(default_factory=dict)


@dataclass
class Delta:
    """What one SSE event carried: new output text, usage if present, whether it ended a choice."""

    text: str = ""
    usage: dict[str, Any] | None = None
    finished: bool = False


class Scenario:
    """A request type. Subclasses set `name`, `path` and `streams`, and implement `payload` and `parse`."""

    name: ClassVar[str]
    path: ClassVar[str]  # appended to the OpenAI base URL
    streams: ClassVar[bool] = False  # whether the endpoint can stream (SSE)
    generates: ClassVar[bool] = True  # produces output tokens (TTFT/TPOT/ITL make sense)

    def payload(self, item: WorkItem, opts: RequestOptions) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, body: dict[str, Any]) -> Delta:
        """A full (non-streamed) response body."""
        raise NotImplementedError

    def parse_event(self, event: dict[str, Any]) -> Delta:
        """One streamed SSE event (already JSON-decoded; `[DONE]` never reaches here)."""
        raise NotImplementedError

    def _sampling(self, item: WorkItem, opts: RequestOptions) -> dict[str, Any]:
        body: dict[str, Any] = {"model": opts.model, "max_tokens": item.output_tokens, "stream": opts.stream}
        if opts.temperature is not None:
            body["temperature"] = opts.temperature
        if opts.stream:
            body["stream_options"] = {"include_usage": True}
        if opts.ignore_eos:
            body["ignore_eos"] = True  # vLLM-style extension: exactly max_tokens tokens (stackserve, vLLM accept it)
        return {**body, **opts.extra_body}


def _finished(choices: list[dict[str, Any]]) -> bool:
    return any(c.get("finish_reason") for c in choices)


class ChatScenario(Scenario):
    name = "chat"
    path = "/chat/completions"
    streams = True

    def payload(self, item: WorkItem, opts: RequestOptions) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": item.prompt}], **self._sampling(item, opts)}

    def parse(self, body: dict[str, Any]) -> Delta:
        choices = body.get("choices") or []
        text = "".join((c.get("message") or {}).get("content") or "" for c in choices)
        return Delta(text, body.get("usage"), _finished(choices))

    def parse_event(self, event: dict[str, Any]) -> Delta:
        choices = event.get("choices") or []
        text = "".join((c.get("delta") or {}).get("content") or "" for c in choices)
        return Delta(text, event.get("usage"), _finished(choices))


class CompletionsScenario(Scenario):
    name = "completions"
    path = "/completions"
    streams = True

    def payload(self, item: WorkItem, opts: RequestOptions) -> dict[str, Any]:
        return {"prompt": item.prompt, **self._sampling(item, opts)}

    def parse(self, body: dict[str, Any]) -> Delta:
        choices = body.get("choices") or []
        return Delta("".join(c.get("text") or "" for c in choices), body.get("usage"), _finished(choices))

    parse_event = parse  # a completions chunk has the same shape as the full body


class EmbeddingsScenario(Scenario):
    """POST /embeddings in the OpenAI shape: one input string per request, float vectors back."""

    name = "embeddings"
    path = "/embeddings"
    streams = False
    generates = False

    def payload(self, item: WorkItem, opts: RequestOptions) -> dict[str, Any]:
        return {"model": opts.model, "input": item.prompt, "encoding_format": "float", **opts.extra_body}

    def parse(self, body: dict[str, Any]) -> Delta:
        data = body.get("data")
        if not isinstance(data, list) or not data or not isinstance(data[0].get("embedding"), list):
            raise ValueError("no embedding in the response")
        return Delta("", body.get("usage"), True)


SCENARIOS: dict[str, type[Scenario]] = {s.name: s for s in (ChatScenario, CompletionsScenario, EmbeddingsScenario)}
