"""Tool calling over any chat template: tool specs, the prompt convention, the call schema and the output parser.

Templates that render `tools` themselves get them; templates without tool support (SmolLM2's ChatML) get a
Llama 3.x-style JSON convention: the functions are described in a system message and a call is a JSON object
`{"name": ..., "parameters": {...}}` (a list of them for parallel calls). Parsing accepts both that form and
`<tool_call>{...}</tool_call>` blocks (Hermes/Qwen templates).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from serve.errors import InvalidRequestError
from serve.ids import new_id

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)

TOOLS_PROMPT = (
    "You have access to the following functions. To call a function, reply with only a JSON object of the form "
    '{{"name": <function name>, "parameters": <object of argument names and values>}} and nothing else; to call '
    "several, reply with a JSON list of such objects. If no function fits, answer normally.\n\nFunctions:\n{functions}"
)


@dataclass
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]

    def as_openai(self) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


def parse_tools(tools: list[dict[str, Any]] | None) -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    for i, t in enumerate(tools or []):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
            raise InvalidRequestError("only tools of type 'function' with a 'function' object are supported",
                                      param=f"tools.{i}")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidRequestError("function names must match ^[A-Za-z0-9_-]{1,64}$",
                                      param=f"tools.{i}.function.name")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise InvalidRequestError("function parameters must be a JSON schema object",
                                      param=f"tools.{i}.function.parameters")
        specs.append(ToolSpec(name, str(fn.get("description") or ""), params))
    if len({s.name for s in specs}) != len(specs):
        raise InvalidRequestError("function names must be unique", param="tools")
    return specs


def resolve_tool_choice(choice: str | dict[str, Any] | None, specs: list[ToolSpec]) -> tuple[str, str | None]:
    """('none' | 'auto' | 'required' | 'named', function name for 'named')."""
    if choice is None:
        return ("auto" if specs else "none"), None
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequestError("tool_choice must be none, auto, required or a function", param="tool_choice")
        if choice != "none" and not specs:
            raise InvalidRequestError(f"tool_choice '{choice}' needs tools", param="tool_choice")
        return choice, None
    fn = choice.get("function") if isinstance(choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or not isinstance(name, str) or not name:
        raise InvalidRequestError('tool_choice must look like {"type": "function", "function": {"name": ...}}',
                                  param="tool_choice")
    if name not in {s.name for s in specs}:
        raise InvalidRequestError(f"tool_choice names function '{name}', which is not in tools", param="tool_choice")
    return "named", name


def call_schema(specs: list[ToolSpec], mode: str, name: str | None) -> dict[str, Any]:
    """JSON schema of one well-formed call (named: that function; required: any of them)."""
    def one(s: ToolSpec) -> dict[str, Any]:
        return {"type": "object", "properties": {"name": {"const": s.name}, "parameters": s.parameters},
                "required": ["name", "parameters"], "additionalProperties": False}

    chosen = [s for s in specs if mode != "named" or s.name == name]
    return one(chosen[0]) if len(chosen) == 1 else {"anyOf": [one(s) for s in chosen]}


def template_supports_tools(tokenizer: Any) -> bool:
    return "tools" in (getattr(tokenizer, "chat_template", None) or "")


def tools_system_prompt(specs: list[ToolSpec]) -> str:
    functions = "\n".join(json.dumps(s.as_openai()["function"]) for s in specs)
    return TOOLS_PROMPT.format(functions=functions)


def history_for_template(messages: list[dict[str, Any]], native: bool) -> list[dict[str, Any]]:
    """Assistant tool calls and tool results in a form the template renders."""
    out = []
    for m in messages:
        calls = m.get("tool_calls")
        if m["role"] == "assistant" and calls:
            parsed = [_call_dict(c) for c in calls]
            if native:
                m = {**m, "content": m.get("content") or "",
                     "tool_calls": [{"type": "function", "id": c.get("id"),
                                     "function": {"name": p["name"], "arguments": p["parameters"]}}
                                    for c, p in zip(calls, parsed, strict=True)]}
            else:
                body = parsed[0] if len(parsed) == 1 else parsed
                m = {"role": "assistant", "content": json.dumps(body)}
        elif m["role"] == "tool" and not native:
            m = {"role": "tool", "content": m.get("content") or ""}
        out.append(m)
    return out


def _call_dict(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    if not isinstance(fn, dict):
        raise InvalidRequestError("an assistant tool call's 'function' must be an object", param="messages")
    args = fn.get("arguments")
    if isinstance(args, str):
        args = _json(args) if args.strip() else {}
        if args is _NOT_JSON:
            raise InvalidRequestError("tool call arguments in the conversation must be JSON", param="messages")
    return {"name": fn.get("name"), "parameters": args or {}}


_NOT_JSON = object()


def _json(text: str) -> Any:
    """json.loads, or _NOT_JSON for text that is not JSON or nests deeper than the parser's stack."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return _NOT_JSON


def parse_tool_calls(text: str, specs: list[ToolSpec]) -> list[dict[str, Any]] | None:
    """OpenAI tool_calls from model output, or None when the output is not a call of a known function. The output
    must start with the call (after whitespace), as ToolCallStream decides when streaming: text before a
    `<tool_call>` block makes it an answer in both modes."""
    names = {s.name for s in specs}
    if text.lstrip().startswith("<tool_call>"):
        candidates = [_json(t) for t in _TAGGED.findall(text)]
    else:
        body = _json(text.strip())
        candidates = body if isinstance(body, list) else [body]
    calls = []
    for c in candidates:
        if not isinstance(c, dict) or c.get("name") not in names:
            return None
        args = c.get("parameters", c.get("arguments", {}))
        if not isinstance(args, dict):
            return None
        calls.append({"id": new_id("call"), "type": "function",
                      "function": {"name": c["name"], "arguments": json.dumps(args)}})
    return calls or None
