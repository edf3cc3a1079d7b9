"""Anthropic's Messages API as a translation of the OpenAI chat requests the LLM deployments serve.

A Messages request becomes the same `ChatCompletionRequest` the `/chat/completions` route sends, so both engines,
grammar-constrained tool calls, stop strings, limits, telemetry and access control apply unchanged; the OpenAI
answer (or its chunks) is then reshaped into Anthropic's `Message` (or its stream events). No generation happens
here.
"""

from __future__ import annotations

import json
from typing import Any

from serve import translation
from serve.errors import InvalidRequestError
from serve.ids import new_id
from serve.protocol import anthropic_messages as am
from serve.protocol.openai_chat import ChatCompletionRequest
from serve.protocol.openai_completions import cached_tokens

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# OpenAI request fields by the Messages API's names, for error messages
SOURCES = {"stop": "stop_sequences", "max_completion_tokens": "max_tokens", "user": "metadata.user_id",
           "parallel_tool_calls": "tool_choice.disable_parallel_tool_use"}
FUNCTION_FIELDS = {"name": "name", "parameters": "input_schema", "description": "description"}


def anthropic_param(param: str) -> str:
    """An OpenAI request's field path as the Messages API names it (`stop` -> `stop_sequences`,
    `tools.0.function.parameters` -> `tools.0.input_schema`); message indexes differ, so `messages.*` is
    `messages`."""
    head, *rest = param.split(".")
    if head == "messages":
        return "messages"
    if head == "tools" and len(rest) >= 3 and rest[1] == "function":
        return ".".join(["tools", rest[0], FUNCTION_FIELDS.get(rest[2], rest[2]), *rest[3:]])
    if head == "response_format":  # response_format.json_schema.schema.x -> output_config.format.schema.x
        return ".".join(["output_config.format", *rest[1:]])
    return ".".join([SOURCES.get(head, head), *rest])


async def answer(call: Any) -> Any:
    """Await a deployment call; its errors name the Messages API's fields."""
    return await translation.answer(call, anthropic_param)


def stream(source: Any) -> translation.TranslatedStream:
    """A streaming `chat_stream` call's chunks as Anthropic's stream events, with renamed errors."""
    return translation.TranslatedStream(source, MessageEvents(), anthropic_param)


# ---- requests -------------------------------------------------------------------------------------------------

def _parts(blocks: list[am.TextBlockParam]) -> list[dict[str, str]]:
    return [{"type": "text", "text": b.text} for b in blocks]


def _tool_result(block: am.ToolResultBlockParam, seen: set[str], param: str) -> dict[str, Any]:
    if block.tool_use_id not in seen:
        raise InvalidRequestError(f"tool_result names tool_use_id {block.tool_use_id!r}, which no earlier tool_use "
                                  "block has", param=f"{param}.tool_use_id")
    text = "".join(b.text for b in block.content)
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": f"Error: {text}" if block.is_error else text}


def _user_messages(m: am.MessageParam, seen: set[str], param: str) -> list[dict[str, Any]]:
    """One user turn as OpenAI messages: each tool_result a `tool` message, each run of text a `user` message, in
    the order they come."""
    out: list[dict[str, Any]] = []
    for j, block in enumerate(m.content):
        if isinstance(block, am.ToolResultBlockParam):
            out.append(_tool_result(block, seen, f"{param}.{j}"))
        elif isinstance(block, am.TextBlockParam):
            if out and out[-1]["role"] == "user":
                out[-1]["content"] += _parts([block])
            else:
                out.append({"role": "user", "content": _parts([block])})
        else:
            raise InvalidRequestError("tool_use blocks belong in assistant messages", param=f"{param}.{j}")
    return out


def _assistant_message(m: am.MessageParam, seen: set[str], param: str) -> dict[str, Any]:
    text, calls = [], []
    for j, block in enumerate(m.content):
        if isinstance(block, am.ToolUseBlockParam):
            seen.add(block.id)
            calls.append({"id": block.id, "type": "function",
                          "function": {"name": block.name, "arguments": json.dumps(block.input)}})
        elif isinstance(block, am.TextBlockParam):
            text.append(block.text)
        else:
            raise InvalidRequestError("tool_result blocks belong in user messages", param=f"{param}.{j}")
    return {"role": "assistant", "content": "".join(text) or None, "tool_calls": calls or None}


def openai_messages(body: am.MessageCountTokensRequest) -> list[dict[str, Any]]:
    """The system prompt and the turns as OpenAI chat messages."""
    out: list[dict[str, Any]] = [{"role": "system", "content": _parts(body.system)}] if body.system else []
    seen: set[str] = set()  # tool_use ids so far: a tool_result must answer one of them
    for i, m in enumerate(body.messages):
        param = f"messages.{i}.content"
        if m.role == "user":
            out += _user_messages(m, seen, param)
        elif m.role == "assistant":
            out.append(_assistant_message(m, seen, param))
        elif all(isinstance(b, am.TextBlockParam) for b in m.content):
            out.append({"role": "system", "content": _parts(m.content)})
        else:
            raise InvalidRequestError("system messages hold text blocks only", param=param)
    if body.messages[-1].role == "assistant":
        raise InvalidRequestError("a final assistant message (prefill) is not supported: end with a user message",
                                  param=f"messages.{len(body.messages) - 1}")
    return out


def _tool_choice(choice: Any) -> str | dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, am.ToolChoiceTool):
        return {"type": "function", "function": {"name": choice.name}}
    return TOOL_CHOICES[choice.type]


def _tool_fields(body: am.MessageCountTokensRequest) -> dict[str, Any]:
    """tools and tool_choice (any: required, tool: that function; the default is auto) as OpenAI's."""
    choice = _tool_choice(body.tool_choice)
    fields: dict[str, Any] = {}
    if body.tools:
        fields["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                             "parameters": t.input_schema}} for t in body.tools]
        fields["tool_choice"] = choice or "auto"
    elif choice not in (None, "auto", "none"):
        fields["tool_choice"] = choice  # any / tool without tools: the OpenAI layer's 400
    disable = getattr(body.tool_choice, "disable_parallel_tool_use", None)
    if disable is not None:
        fields["parallel_tool_calls"] = not disable
    return fields


def prompt_request(body: am.MessageCountTokensRequest) -> ChatCompletionRequest:
    """The chat request whose prompt is the Messages request's (what count_tokens measures)."""
    return translation.build(ChatCompletionRequest, anthropic_param, model=body.model,
                             messages=openai_messages(body), **_tool_fields(body))


def chat_request(body: am.MessageCreateRequest) -> ChatCompletionRequest:
    fields = {k: v for k, v in (("temperature", body.temperature), ("top_p", body.top_p), ("top_k", body.top_k),
                                ("stop", body.stop_sequences or None)) if v is not None}
    if body.metadata is not None and body.metadata.user_id:
        fields["user"] = body.metadata.user_id
    if body.output_config is not None and body.output_config.format is not None:
        fields["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": body.output_config.format.schema_}}
    if body.stream:  # usage on every chunk: message_start carries the prompt's token count
        fields["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    return translation.build(ChatCompletionRequest, anthropic_param, model=body.model,
                             messages=openai_messages(body), max_tokens=body.max_tokens, stream=body.stream,
                             **_tool_fields(body), **fields)


# ---- responses ------------------------------------------------------------------------------------------------

def _usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic counts cache reads apart from `input_tokens` (their sum is the prompt). The engines cache every
    prompt's full blocks automatically, so no tokens are billed as a cache write: that count is 0."""
    usage = usage or {"prompt_tokens": 0, "completion_tokens": 0}
    cached = cached_tokens(usage)
    return {"input_tokens": usage["prompt_tokens"] - cached, "output_tokens": usage["completion_tokens"],
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def _stop(choice: dict[str, Any]) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) of an OpenAI choice: a stop string it ended on is named in `stop_reason`."""
    if choice.get("stop_reason"):
        return "stop_sequence", choice["stop_reason"]
    return STOP_REASONS.get(choice.get("finish_reason"), "end_turn"), None


def tool_use_id(call_id: str) -> str:
    return "toolu_" + call_id.removeprefix("call_")


def _tool_use(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_use_id(call_id), "name": name, "input": json.loads(arguments or "{}")}


def message(resp: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion as an Anthropic Message: a text block (if any text), then one tool_use block per
    call."""
    choice = resp["choices"][0]
    msg = choice["message"]
    content = [{"type": "text", "text": msg["content"]}] if msg.get("content") else []
    content += [_tool_use(c["id"], c["function"]["name"], c["function"]["arguments"])
                for c in msg.get("tool_calls") or []]
    stop_reason, stop_sequence = _stop(choice)
    return {"id": new_id("msg"), "type": "message", "role": "assistant", "content": content, "model": resp["model"],
            "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": _usage(resp.get("usage"))}


class MessageEvents:
    """OpenAI chat chunks (with usage on each, `continuous_usage_stats`) -> Anthropic's stream events:
    `message_start` and a `ping`, then per content block `content_block_start`, its `content_block_delta`s
    (`text_delta`, or the call's `input_json_delta`) and `content_block_stop`, then `message_delta` (stop reason,
    output tokens) and `message_stop`."""

    def __init__(self) -> None:
        self.id = new_id("msg")
        self.usage: dict[str, Any] | None = None
        self.started = False
        self.blocks = 0  # content blocks started so far
        self.open: str | None = None  # the type of the block taking deltas
        self.stop: tuple[str, str | None] = ("end_turn", None)

    def start(self) -> list[dict[str, Any]]:
        return []  # message_start waits for the first chunk: its usage has the prompt's token count

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        self.usage = chunk.get("usage") or self.usage
        out = [] if self.started else self._message_start(chunk["model"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self.open != "text":
                    out += self._open({"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": delta["content"]}))
            for tc in delta.get("tool_calls") or []:
                fn = tc.get("function") or {}
                if tc.get("id"):
                    out += self._open({"type": "tool_use", "id": tool_use_id(tc["id"]), "name": fn.get("name", ""),
                                       "input": {}})
                if fn.get("arguments"):
                    out.append(self._delta({"type": "input_json_delta", "partial_json": fn["arguments"]}))
            if choice.get("finish_reason"):
                out += self._close()
                self.stop = _stop(choice)
        return out

    def end(self) -> list[dict[str, Any]]:
        usage = _usage(self.usage)
        stop_reason, stop_sequence = self.stop
        return [*self._close(),
                {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                 "usage": usage},
                {"type": "message_stop"}]

    def _message_start(self, model: str) -> list[dict[str, Any]]:
        self.started = True
        start = {"id": self.id, "type": "message", "role": "assistant", "content": [], "model": model,
                 "stop_reason": None, "stop_sequence": None, "usage": _usage(self.usage)}
        return [{"type": "message_start", "message": start}, {"type": "ping"}]

    def _open(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._close()
        self.open = block["type"]
        self.blocks += 1
        return [*out, {"type": "content_block_start", "index": self.blocks - 1, "content_block": block}]

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self.blocks - 1, "delta": delta}

    def _close(self) -> list[dict[str, Any]]:
        if self.open is None:
            return []
        self.open = None
        return [{"type": "content_block_stop", "index": self.blocks - 1}]
