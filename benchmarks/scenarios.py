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

    def route(self, opts: RequestOptions) -> str:
        """The path for this run (scenarios that target one resource fill its id in from `--extra-body`)."""
        try:
            return self.path.format(**opts.extra_body)
        except KeyError as e:
            raise ValueError(f"scenario {self.name!r} needs {e.args[0]!r} in --extra-body") from None

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


def _without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}


class VectorSearchScenario(Scenario):
    """POST /vector_stores/{id}/search with the work item's prompt as the query.
    `--extra-body '{"vector_store_id": "vs_...", "search_mode": "hybrid"}'`."""

    name = "vector-search"
    path = "/vector_stores/{vector_store_id}/search"
    generates = False

    def payload(self, item: WorkItem, opts: RequestOptions) -> dict[str, Any]:
        return {"query": item.prompt, "max_num_results": 10, **_without(opts.extra_body, "vector_store_id")}

    def parse(self, body: dict[str, Any]) -> Delta:
        if not isinstance(body.get("data"), list):
            raise ValueError("no search results in the response")
        return Delta("", None, True)


class RunShieldScenario(Scenario):
    """Llama Stack POST /safety/run-shield on the prompt as a user turn. `--extra-body '{"shield_id": "..."}'`
    (the base URL must be the server's /v1, where the Llama Stack routes live)."""

    name = "run-shield"
    path = "/safety/run-shield"
    generates = False

    def payload(self, item: WorkItem, opts: RequestOptions) -> dict[str, Any]:
        if "shield_id" not in opts.extra_body:
            raise ValueError("scenario 'run-shield' needs 'shield_id' in --extra-body")
        return {"messages": [{"role": "user", "content": item.prompt}], "params": {}, **opts.extra_body}

    def parse(self, body: dict[str, Any]) -> Delta:
        if "violation" not in body:
            raise ValueError("no violation field in the response")
        return Delta("", None, True)


def _responses_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    return {"prompt_tokens": usage.get("input_tokens"), "completion_tokens": usage.get("output_tokens"),
            "total_tokens": usage.get("total_tokens")}


class ResponsesScenario(Scenario):
    """POST /responses, streamed (typed events) or not; tools such as file_search come from `--extra-body`,
    e.g. '{"tools": [{"type": "file_search", "vector_store_ids": ["vs_..."]}], "tool_choice": "required"}'."""

    name = "responses"
    path = "/responses"
    streams = True

    def payload(self, item: WorkItem, opts: RequestOptions) -> dict[str, Any]:
        body = {"model": opts.model, "input": item.prompt, "max_output_tokens": item.output_tokens,
                "stream": opts.stream}
        if opts.temperature is not None:
            body["temperature"] = opts.temperature
        return {**body, **opts.extra_body}

    def parse(self, body: dict[str, Any]) -> Delta:
        if body.get("object") != "response":
            raise ValueError("not a response object")
        text = "".join(p.get("text", "") for it in body.get("output", []) if it.get("type") == "message"
                       for p in it.get("content", []) if p.get("type") == "output_text")
        return Delta(text, _responses_usage(body.get("usage")), True)

    def parse_event(self, event: dict[str, Any]) -> Delta:
        kind = event.get("type", "")
        if kind == "response.output_text.delta":
            return Delta(event.get("delta", ""))
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            return Delta("", _responses_usage((event.get("response") or {}).get("usage")), True)
        return Delta()


SCENARIOS: dict[str, type[Scenario]] = {s.name: s for s in (
    ChatScenario, CompletionsScenario, EmbeddingsScenario, VectorSearchScenario, RunShieldScenario, ResponsesScenario)}
