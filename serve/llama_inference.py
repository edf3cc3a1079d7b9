"""Llama Stack 0.2's native Inference API as a translation of the OpenAI requests the LLM deployments serve.

A native request becomes the same `ChatCompletionRequest` / `CompletionRequest` / `EmbeddingRequest` the OpenAI
routes build, so both engines, structured output, forced tool calls, limits, telemetry and access control apply
unchanged; the OpenAI answer (or its chunks) is then reshaped into Llama Stack's. No generation happens here.
"""

from __future__ import annotations

import json
from typing import Any

from serve import translation
from serve.errors import InvalidRequestError
from serve.protocol import llama_inference as ls
from serve.protocol.content import content_text
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest
from serve.protocol.vector_io import EmbeddingRequest

STOP_REASONS = {"stop": "end_of_turn", "tool_calls": "end_of_message", "length": "out_of_tokens"}
# where an OpenAI request field came from in the Llama Stack request (for error messages)
SOURCES = {"temperature": "sampling_params.strategy.temperature", "top_p": "sampling_params.strategy.top_p",
           "top_k": "sampling_params.strategy.top_k", "max_tokens": "sampling_params.max_tokens",
           "stop": "sampling_params.stop", "repetition_penalty": "sampling_params.repetition_penalty",
           "top_logprobs": "logprobs.top_k", "logprobs": "logprobs.top_k", "prompt": "content", "input": "contents",
           "tools": "tools", "tool_choice": "tool_config.tool_choice", "guided_grammar": "response_format.bnf"}


def _llama_param(param: str) -> str:
    head, *rest = param.split(".")
    return ".".join([SOURCES.get(head, head), *rest])


async def answer(call: Any) -> Any:
    """Await a deployment call; its errors name the Llama Stack field (`max_tokens` -> `sampling_params.max_tokens`)."""
    return await translation.answer(call, _llama_param)


def _build(request_type: type, **fields: Any) -> Any:
    return translation.build(request_type, _llama_param, **fields)


def stream(source: Any, events: ChatEvents | CompletionEvents) -> translation.TranslatedStream:
    """A streaming deployment call's chunks as Llama Stack's, with renamed errors."""
    return translation.TranslatedStream(source, events, _llama_param)


# ---- requests -------------------------------------------------------------------------------------------------

def sampling_fields(params: ls.SamplingParams | None) -> dict[str, Any]:
    """SamplingParams -> OpenAI sampling fields. Llama Stack's default strategy is greedy; max_tokens 0 or absent
    leaves the budget to the model's default (engine.default_max_tokens)."""
    params = params or ls.SamplingParams()
    s = params.strategy
    out: dict[str, Any] = {"temperature": 0.0}
    if isinstance(s, ls.TopPStrategy):
        out = {"temperature": 1.0 if s.temperature is None else s.temperature, "top_p": s.top_p}
    elif isinstance(s, ls.TopKStrategy):
        out = {"temperature": 1.0, "top_k": s.top_k}
    if params.max_tokens:
        out["max_tokens"] = params.max_tokens
    if params.repetition_penalty is not None and params.repetition_penalty != 1.0:
        out["repetition_penalty"] = params.repetition_penalty
    if params.stop:
        out["stop"] = params.stop
    return out


def _grammar_text(bnf: dict[str, Any] | str) -> str:
    """A `grammar` response format as EBNF text: the grammar itself, or a mapping of rule names to productions
    (which must define `root`)."""
    if isinstance(bnf, str):
        return bnf
    if "root" not in bnf or not all(isinstance(v, str) for v in bnf.values()):
        raise InvalidRequestError("response_format.bnf must be a grammar string or a mapping of rule names to "
                                  "productions that defines 'root'", param="response_format.bnf")
    return "\n".join(f"{name} ::= {body}" for name, body in bnf.items())


def format_fields(fmt: ls.JsonSchemaResponseFormat | ls.GrammarResponseFormat | None) -> dict[str, Any]:
    if fmt is None:
        return {}
    if isinstance(fmt, ls.JsonSchemaResponseFormat):
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "response", "schema": fmt.json_schema}}}
    return {"guided_grammar": _grammar_text(fmt.bnf)}


def openai_tool(t: ls.ToolDefinition) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required = []
    for name, p in (t.parameters or {}).items():
        prop: dict[str, Any] = {"type": ls.JSON_TYPES.get(p.param_type.split("[")[0].strip().lower(), "string")}
        if p.description:
            prop["description"] = p.description
        if p.default is not None:
            prop["default"] = p.default
        props[name] = prop
        if p.required is not False:
            required.append(name)
    return {"type": "function", "function": {"name": t.tool_name, "description": t.description or "",
                                             "parameters": {"type": "object", "properties": props,
                                                            "required": required}}}


def _tool_choice(body: ls.LlamaChatCompletionRequest | ls.BatchChatCompletionRequest) -> Any:
    config = body.tool_config
    choice = config.tool_choice if config is not None and "tool_choice" in config.model_fields_set else None
    choice = choice or getattr(body, "tool_choice", None) or "auto"
    if choice in ("auto", "required", "none"):
        return choice
    if choice not in {t.tool_name for t in body.tools or []}:
        raise InvalidRequestError(f"tool_choice names tool {choice!r}, which is not in tools",
                                  param="tool_config.tool_choice")
    return {"type": "function", "function": {"name": choice}}


def _content(content: Any, param: str) -> str | list[dict[str, Any]]:
    """Llama Stack content as OpenAI message content: text stays text, images become image_url parts (which a
    text-only model refuses with a 400 naming the message)."""
    if isinstance(content, str):
        return content
    items = content if isinstance(content, list) else [content]
    parts: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, str):
            parts.append({"type": "text", "text": item})
        elif item.type == "text":
            parts.append({"type": "text", "text": item.text})
        else:
            url = item.image.url.uri if item.image.url else f"data:image/png;base64,{item.image.data}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def _arguments(call: ls.CallInMessage) -> str:
    if call.arguments_json:
        return call.arguments_json
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)


def openai_message(m: Any, i: int) -> dict[str, Any]:
    param = f"messages.{i}.content"
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.call_id, "content": _content(m.content, param)}
    if m.role == "assistant":
        calls = [{"id": c.call_id, "type": "function", "function": {"name": c.tool_name, "arguments": _arguments(c)}}
                 for c in m.tool_calls or []]
        return {"role": "assistant", "content": _content(m.content, param) or None, "tool_calls": calls or None}
    content = _content(m.content, param)
    if m.role == "user" and m.context is not None:  # retrieved context rides after the question, as text
        content = f"{content_text(content, param)}\n\n{content_text(_content(m.context, param), param)}"
    return {"role": m.role, "content": content}


def chat_request(body: ls.LlamaChatCompletionRequest | ls.BatchChatCompletionRequest, messages: list[Any],
                 stream: bool = False) -> ChatCompletionRequest:
    fields: dict[str, Any] = {**sampling_fields(body.sampling_params), **format_fields(body.response_format)}
    if body.tools:
        fields["tools"] = [openai_tool(t) for t in body.tools]
        fields["tool_choice"] = _tool_choice(body)
        if body.tool_config is not None and body.tool_config.system_message_behavior:
            fields["system_message_behavior"] = body.tool_config.system_message_behavior
    if body.logprobs is not None:
        fields.update(logprobs=True, top_logprobs=body.logprobs.top_k or 0)
    return _build(ChatCompletionRequest, model=body.model_id,
                  messages=[openai_message(m, i) for i, m in enumerate(messages)], stream=stream,
                  stream_options={"include_usage": True} if stream else None, **fields)


def completion_request(body: ls.LlamaCompletionRequest | ls.BatchCompletionRequest, content: Any,
                       stream: bool = False) -> CompletionRequest:
    fields: dict[str, Any] = {"max_tokens": None, **sampling_fields(body.sampling_params),
                              **format_fields(body.response_format)}
    if body.logprobs is not None:
        fields["logprobs"] = body.logprobs.top_k or 0
    return _build(CompletionRequest, model=body.model_id, prompt=content_text(_content(content, "content"), "content"),
                  stream=stream, stream_options={"include_usage": True} if stream else None, **fields)


def embeddings_request(body: ls.EmbeddingsRequest) -> EmbeddingRequest:
    texts = [c if isinstance(c, str) else content_text(c.model_dump(), f"contents.{i}")
             for i, c in enumerate(body.contents)]
    return _build(EmbeddingRequest, model=body.model_id, input=texts, dimensions=body.output_dimension)


# ---- responses ------------------------------------------------------------------------------------------------

def _metrics(usage: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    if not usage:
        return None
    return [{"metric": k, "value": usage[k], "unit": "tokens"}
            for k in ("prompt_tokens", "completion_tokens", "total_tokens")]


def _chat_logprobs(lp: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [{"logprobs_by_token": {t["token"]: t["logprob"] for t in tok.get("top_logprobs") or []}
             or {tok["token"]: tok["logprob"]}} for tok in (lp or {}).get("content") or []]


def _completion_logprobs(lp: dict[str, Any] | None) -> list[dict[str, Any]]:
    lp = lp or {}
    tops = lp.get("top_logprobs") or []
    return [{"logprobs_by_token": tops[i] if i < len(tops) and tops[i] else {tok: lp["token_logprobs"][i]}}
            for i, tok in enumerate(lp.get("tokens") or [])]


def tool_call(call_id: str, name: str, raw: str) -> dict[str, Any] | None:
    """A Llama Stack ToolCall from an OpenAI call, or None when its arguments are not a JSON object."""
    try:
        args = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return None
    if not isinstance(args, dict):
        return None
    return {"call_id": call_id, "tool_name": name, "arguments": args, "arguments_json": raw or "{}"}


def chat_response(resp: dict[str, Any]) -> dict[str, Any]:
    choice = resp["choices"][0]
    msg = choice["message"]
    calls = []
    for c in msg.get("tool_calls") or []:
        call = tool_call(c["id"], c["function"]["name"], c["function"]["arguments"])
        calls.append(call or {"call_id": c["id"], "tool_name": c["function"]["name"],
                              "arguments": c["function"]["arguments"]})
    out: dict[str, Any] = {"completion_message": {
        "role": "assistant", "content": msg.get("content") or "", "tool_calls": calls,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason"), "end_of_turn")}, "metrics": _metrics(
            resp.get("usage"))}
    if choice.get("logprobs"):
        out["logprobs"] = _chat_logprobs(choice["logprobs"])
    return out


def completion_response(resp: dict[str, Any]) -> dict[str, Any]:
    choice = resp["choices"][0]
    out = {"content": choice["text"], "stop_reason": STOP_REASONS.get(choice.get("finish_reason"), "end_of_turn"),
           "metrics": _metrics(resp.get("usage"))}
    if choice.get("logprobs"):
        out["logprobs"] = _completion_logprobs(choice["logprobs"])
    return out


class ChatEvents:
    """OpenAI chat chunks -> Llama Stack stream chunks: `start`, `progress` text and tool-call deltas (a call is
    `in_progress` while its arguments arrive and `succeeded`, or `failed` with its raw text, once whole), then
    `complete` with the stop reason and token metrics."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}
        self.stop_reason = "end_of_turn"
        self.usage: dict[str, Any] | None = None

    def start(self) -> list[dict[str, Any]]:
        return [_event("start", {"type": "text", "text": ""})]

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        self.usage = chunk.get("usage") or self.usage
        out = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            logprobs = _chat_logprobs(choice.get("logprobs"))
            if delta.get("content") or logprobs:
                out.append(_event("progress", {"type": "text", "text": delta.get("content") or ""},
                                  logprobs=logprobs or None))
            for tc in delta.get("tool_calls") or []:
                call = self.calls.setdefault(tc.get("index", 0), {"id": "", "name": "", "arguments": ""})
                fn = tc.get("function") or {}
                call["id"] = tc.get("id") or call["id"]
                call["name"] = fn.get("name") or call["name"]
                call["arguments"] += fn.get("arguments") or ""
                if fn.get("arguments"):
                    out.append(_event("progress", {"type": "tool_call", "tool_call": fn["arguments"],
                                                   "parse_status": "in_progress"}))
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_of_turn")
                out += self._parsed_calls()
        return out

    def _parsed_calls(self) -> list[dict[str, Any]]:
        out = []
        for c in self.calls.values():
            call = tool_call(c["id"], c["name"], c["arguments"])
            status = "succeeded" if call else "failed"
            out.append(_event("progress", {"type": "tool_call", "tool_call": call or c["arguments"] or c["name"],
                                           "parse_status": status}))
        self.calls.clear()
        return out

    def end(self) -> list[dict[str, Any]]:
        done = _event("complete", {"type": "text", "text": ""}, stop_reason=self.stop_reason)
        done["metrics"] = _metrics(self.usage)
        return [done]


class CompletionEvents:
    """OpenAI completion chunks -> Llama Stack completion stream chunks; token logprobs ride with their text."""

    def __init__(self) -> None:
        self.usage: dict[str, Any] | None = None
        self.stop_reason: str | None = None

    def start(self) -> list[dict[str, Any]]:
        return []

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        self.usage = chunk.get("usage") or self.usage
        out = []
        for choice in chunk.get("choices") or []:
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_of_turn")
            if choice.get("text"):
                logprobs = _completion_logprobs(choice.get("logprobs"))
                out.append({"delta": choice["text"], "logprobs": logprobs or None})
        return out

    def end(self) -> list[dict[str, Any]]:
        return [{"delta": "", "stop_reason": self.stop_reason or "end_of_turn", "metrics": _metrics(self.usage)}]


def _event(kind: str, delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"event": {"event_type": kind, "delta": delta, **{k: v for k, v in extra.items() if v is not None}}}
