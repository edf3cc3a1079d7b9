"""Llama Stack 0.2 agent turns, run by the Responses loop.

A turn is one Responses run (store=False) over the session's history: the agent's instructions, sampling params,
max_infer_iters and tools become the request; earlier turns become input items. `builtin::rag` becomes a
file_search tool over the vector DBs in its args (vector DBs are vector stores here), MCP tool groups become mcp
tools, `builtin::websearch` the web_search tool, client tools function tools. The run's events are translated to
turn chunks (turn_events.py) and the turn is stored, so any replica can run the session's next turn or resume one.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from deployments.agents.llama_agents import AgentStore, now_iso
from deployments.agents.tool_runtime import BUILTIN_TOOLS
from deployments.agents.toolgroups import RAG_GROUP, WEB_SEARCH_GROUP, ToolGroupRegistry, split_toolgroup_name
from deployments.agents.turn_events import TurnEvents, chunk, step_complete
from deployments.vector_io.llama_stack import content_text
from serve.errors import InvalidRequestError, NotFoundError
from serve.protocol.agents import AgentConfig, AgentToolGroup, CreateTurnRequest, ResumeTurnRequest, ToolConfig
from serve.protocol.llama_inference import JSON_TYPES
from serve.protocol.responses import CreateResponseRequest

# ---- agent config -> Responses request ------------------------------------------------------------------------

def _client_tool(t: Any) -> dict[str, Any]:
    props = {p.name: {"type": JSON_TYPES.get(p.parameter_type, "string"), "description": p.description}
             for p in t.parameters}
    return {"type": "function", "name": t.name, "description": t.description or "",
            "parameters": {"type": "object", "properties": props,
                           "required": [p.name for p in t.parameters if p.required]}}


def agent_tools(config: AgentConfig, turn_groups: list[AgentToolGroup] | None,
                groups: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The Responses tools of a turn: the agent's and the turn's tool groups (with their args), client tools."""
    args: dict[str, dict] = {}
    names: list[str] = []
    for tg in list(config.toolgroups) + list(turn_groups or []):
        name = tg if isinstance(tg, str) else tg.name
        if not isinstance(tg, str):
            args[split_toolgroup_name(name)[0]] = tg.args
        if name not in names:
            names.append(name)
    tools = []
    for name in names:
        group_id, tool = split_toolgroup_name(name)
        group = groups.get(group_id)
        if group is None:
            raise NotFoundError(f"Tool group '{group_id}' not found", param="toolgroups", code="toolgroup_not_found")
        if group_id in BUILTIN_TOOLS and tool not in (None, *[d["name"] for d in BUILTIN_TOOLS[group_id]]):
            raise NotFoundError(f"Tool '{tool}' not found in tool group '{group_id}'", param="toolgroups",
                                code="tool_not_found")
        tools.append(_group_tool(group, tool, args.get(group_id) or {}))
    return tools + [_client_tool(t) for t in config.client_tools]


def _group_tool(group: dict[str, Any], tool: str | None, args: dict[str, Any]) -> dict[str, Any]:
    group_id = group["identifier"]
    if group_id == RAG_GROUP:
        ids = args.get("vector_db_ids")
        if not ids or not isinstance(ids, list):
            raise InvalidRequestError("builtin::rag needs args.vector_db_ids (the vector DBs to search)",
                                      param="toolgroups")
        limit = int((args.get("query_config") or {}).get("max_chunks", 5))
        return {"type": "file_search", "vector_store_ids": [str(i) for i in ids], "max_num_results": limit}
    if group_id == WEB_SEARCH_GROUP:
        return {"type": "web_search"}
    label = "".join(c if c.isalnum() or c in "_-" else "_" for c in group_id)
    mcp = {"type": "mcp", "server_label": label, "server_url": group["mcp_endpoint"]["uri"],
           "require_approval": "never"}
    return {**mcp, "allowed_tools": [tool]} if tool else mcp


def tool_choice(config: AgentConfig, override: ToolConfig | None, tools: list[dict[str, Any]]) -> Any:
    choice = (override.tool_choice if override else None) or (config.tool_config.tool_choice
                                                              if config.tool_config else None) or config.tool_choice
    if choice in (None, "auto", "required", "none"):
        return choice
    if choice == "knowledge_search" and any(t["type"] == "file_search" for t in tools):
        return {"type": "file_search"}
    if any(t["type"] == "function" and t["name"] == choice for t in tools):
        return {"type": "function", "name": choice}
    for t in tools:
        if t["type"] == "mcp" and choice in (t.get("allowed_tools") or [choice]):
            return {"type": "mcp", "server_label": t["server_label"], "name": choice}
    raise InvalidRequestError(f"tool_choice {choice!r} names no tool of this agent", param="tool_config.tool_choice")


def sampling(params: dict[str, Any] | None) -> dict[str, Any]:
    """SamplingParams -> temperature / top_p / max_output_tokens (Llama Stack's default strategy is greedy)."""
    params = params or {}
    strategy = params.get("strategy") or {"type": "greedy"}
    out: dict[str, Any] = {"temperature": 0.0} if strategy.get("type") == "greedy" else {}
    if strategy.get("type") == "top_p":
        out = {"temperature": strategy.get("temperature"), "top_p": strategy.get("top_p")}
    if params.get("max_tokens"):
        out["max_output_tokens"] = params["max_tokens"]  # the turn's budget, across its model calls
    return {k: v for k, v in out.items() if v is not None}


def text_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if not response_format:
        return None
    if response_format.get("type") == "json_schema":
        return {"format": {"type": "json_schema", "name": "response", "schema": response_format.get("json_schema"),
                           "strict": True}}
    raise InvalidRequestError(f"response_format type {response_format.get('type')!r} is not supported "
                              "(json_schema only)", param="agent_config.response_format")


# ---- messages and turns -> Responses items -------------------------------------------------------------------

def with_documents(messages: list[dict[str, Any]], documents: list[Any] | None) -> list[dict[str, Any]]:
    """Text documents attached to a turn are appended to its last message, as Llama Stack does."""
    if not documents:
        return messages
    texts = []
    for i, doc in enumerate(documents):
        if not doc.mime_type.startswith("text/"):
            raise InvalidRequestError(f"document mime_type {doc.mime_type!r} is not supported (text/* only)",
                                      param=f"documents.{i}.mime_type")
        if isinstance(doc.content, dict) and "uri" in doc.content:
            raise InvalidRequestError("documents given by URL are not supported; send their text",
                                      param=f"documents.{i}.content")
        texts.append(content_text(doc.content, f"documents.{i}.content"))
    last = messages[-1]
    joined = content_text(last["content"], f"messages.{len(messages) - 1}.content") + "\n\n" + "\n".join(texts)
    return messages[:-1] + [{**last, "content": joined}]


def message_items(messages: list[dict[str, Any]], skip_calls: set[str] = frozenset()) -> list[dict[str, Any]]:
    items = []
    for i, m in enumerate(messages):
        text = content_text(m["content"], f"messages.{i}.content")
        if m["role"] == "tool":
            if m["call_id"] not in skip_calls:
                items.append({"type": "function_call_output", "call_id": m["call_id"], "output": text})
        else:
            items.append({"type": "message", "role": "user", "content": text})
    return items


def step_items(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for step in steps:
        if step["step_type"] == "inference":
            response = step["model_response"]
            for c in response.get("tool_calls") or []:
                args = c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"])
                items.append({"type": "function_call", "call_id": c["call_id"], "name": c["tool_name"],
                              "arguments": args})
            if not response.get("tool_calls"):
                text = content_text(response.get("content") or "", "content")
                items.append({"type": "message", "role": "assistant", "content": text})
        elif step["step_type"] == "tool_execution":
            items += [{"type": "function_call_output", "call_id": r["call_id"],
                       "output": content_text(r["content"], "tool_responses.content")}
                      for r in step["tool_responses"]]
        elif step["step_type"] == "shield_call" and step.get("violation"):
            items.append({"type": "message", "role": "assistant", "content": step["violation"]["user_message"]})
    return items


def turn_items(turn: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored turn as input items: its messages, then what each step said or returned."""
    answered = {r["call_id"] for s in turn["steps"] if s["step_type"] == "tool_execution"
                for r in s["tool_responses"]}
    return message_items(turn["input_messages"], answered) + step_items(turn["steps"])


# ---- the runner -------------------------------------------------------------------------------------------------

# (request, history items, the request's ProviderData, the agent session's id) -> (orchestrator ResponseRun, input
# items)
NewRun = Callable[[CreateResponseRequest, list[dict], Any, str], Awaitable[tuple[Any, list[dict]]]]


class TurnRunner:
    def __init__(self, store: AgentStore, registry: ToolGroupRegistry, new_run: NewRun):
        self.store = store
        self.registry = registry
        self.new_run = new_run

    async def check(self, config: AgentConfig) -> None:
        """Raises the error a turn of this agent would raise for its tools, tool choice or response format."""
        probe = [{"type": "message", "role": "user", "content": "probe"}]
        await self._request(config, probe, None, None, config.max_infer_iters, False)

    async def _request(self, config: AgentConfig, items: list[dict], turn_groups: list | None,
                       override: ToolConfig | None, iterations: int, resumed: bool) -> CreateResponseRequest:
        groups = {g["identifier"]: g for g in await asyncio.to_thread(self.registry.list)}
        tools = agent_tools(config, turn_groups, groups)
        choice = tool_choice(config, override, tools) if tools else None
        if resumed and choice not in (None, "auto", "none"):
            choice = "auto"  # a forced choice forces one round of calls per turn; the resume answers
        shields = list(dict.fromkeys(config.input_shields + config.output_shields))
        try:
            return CreateResponseRequest(
                model=config.model, input=items, instructions=config.instructions or None, tools=tools,
                tool_choice=choice, store=False, stream=True, include=["file_search_call.results"],
                guardrails=shields or None, max_infer_iters=max(1, iterations),
                text=text_format(config.response_format), **sampling(config.sampling_params))
        except ValidationError as e:  # e.g. a tool type the Responses loop does not run yet
            err = e.errors()[0]
            raise InvalidRequestError(f"this agent cannot run: {err['msg']}", param="agent_config") from None

    async def create(self, agent_id: str, session_id: str, body: CreateTurnRequest,
                     provider_data: Any = None) -> AsyncIterator[dict]:
        agent = await asyncio.to_thread(self.store.get_agent, agent_id)
        prior = await asyncio.to_thread(self.store.session_turns, agent_id, session_id)
        config = AgentConfig.model_validate(agent["agent_config"])
        messages = with_documents(body.messages, body.documents)
        items = message_items(messages)
        req = await self._request(config, items, body.toolgroups, body.tool_config, config.max_infer_iters, False)
        run, _ = await self.new_run(req, [it for t in prior for it in turn_items(t)], provider_data,
                                    session_id)  # the agent session stays on one LLM replica
        turn = {"turn_id": str(uuid.uuid4()), "session_id": session_id, "input_messages": messages, "steps": [],
                "output_message": None, "output_attachments": [], "started_at": now_iso(), "completed_at": None}
        yield chunk({"event_type": "turn_start", "turn_id": turn["turn_id"]})
        async for c in self._drive(run, turn, config):
            yield c

    async def resume(self, agent_id: str, session_id: str, turn_id: str, body: ResumeTurnRequest,
                     provider_data: Any = None) -> AsyncIterator[dict]:
        agent = await asyncio.to_thread(self.store.get_agent, agent_id)
        turn, pending = await asyncio.to_thread(self.store.pending_turn, agent_id, session_id, turn_id)
        if not pending:
            raise InvalidRequestError(f"turn '{turn_id}' is not waiting for tool responses", param="turn_id")
        answers = {r.call_id: r for r in body.tool_responses}
        waiting = [c["call_id"] for c in pending]
        if sorted(answers) != sorted(waiting):
            raise InvalidRequestError(f"tool_responses must answer exactly the pending calls {waiting}, got "
                                      f"{sorted(answers)}", param="tool_responses")
        config = AgentConfig.model_validate(agent["agent_config"])
        prior = [t for t in await asyncio.to_thread(self.store.session_turns, agent_id, session_id)
                 if t["turn_id"] != turn_id]
        step = {"step_id": str(uuid.uuid4()), "step_type": "tool_execution", "turn_id": turn_id,
                "tool_calls": pending, "tool_responses": [answers[c["call_id"]].model_dump() for c in pending],
                "started_at": turn["completed_at"], "completed_at": now_iso()}
        turn = {**turn, "steps": turn["steps"] + [step]}
        items = turn_items(turn)
        used = sum(s["step_type"] == "inference" for s in turn["steps"])
        req = await self._request(config, items, None, None, config.max_infer_iters - used, True)
        run, _ = await self.new_run(req, [it for t in prior for it in turn_items(t)], provider_data,
                                    session_id)  # the agent session stays on one LLM replica
        yield step_complete(step)
        async for c in self._drive(run, turn, config, resumed=True):
            yield c

    async def _drive(self, run: Any, turn: dict[str, Any], config: AgentConfig,
                     resumed: bool = False) -> AsyncIterator[dict]:
        max_infer_iters = config.max_infer_iters
        # a resumed turn's input (the client's tool outputs) was not the user's: only the output shields report
        events = TurnEvents(turn["turn_id"], bool(config.input_shields) and not resumed, bool(config.output_shields))
        async for event in run.events():
            for c in events.feed(event):
                yield c
        turn = {**turn, "steps": turn["steps"] + events.steps, "output_message": events.output_message,
                "completed_at": now_iso()}
        if events.pending and sum(s["step_type"] == "inference" for s in turn["steps"]) >= max_infer_iters:
            turn["output_message"]["stop_reason"] = "end_of_turn"  # as Llama Stack: clients stop resuming here
        await asyncio.to_thread(self.store.save_turn, turn, events.pending)
        kind = "turn_awaiting_input" if events.pending else "turn_complete"
        yield chunk({"event_type": kind, "turn": turn})
