"""The Agents deployment: runs Responses and serves Conversations, calling LLM, VectorIO and Safety handles.

Stateless: responses and conversations live in the shared SQL store, so any replica continues any chain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from serve.context import with_session
from serve.errors import ConflictError, InvalidRequestError, NotFoundError, to_api_error
from serve.protocol.agents import AgentConfig, CreateTurnRequest, ResumeTurnRequest
from serve.protocol.prompts import CreatePromptRequest, UpdatePromptRequest
from serve.protocol.provider_data import ProviderData
from serve.protocol.responses import CompactRequest, CreateResponseRequest
from serve.storage.leases import renew_while_held, sweep_forever
from serve.telemetry.agents import agent_response
from serve.telemetry.instrument import instrument_deployment

logger = logging.getLogger("stackserve.agents")


@serve.deployment
@instrument_deployment
class AgentsServer:
    def __init__(self, llm_handles: dict, vector_io: Any, safety: Any, database_url: str, config: Any = None):
        import deployments.agents.llama_tables  # noqa: F401  (registers the tables)
        import deployments.agents.tables  # noqa: F401
        from deployments.agents.prompts import PromptStore
        from deployments.agents.store import ConversationStore, ResponseStore
        from serve.storage import Database

        db = Database(database_url)
        self.responses = ResponseStore(db)
        self.conversations = ConversationStore(db)
        self.prompts = PromptStore(db)
        self.llms = llm_handles
        self.vector_io = vector_io
        self.safety = safety
        self.config = config  # serve.config.AgentsConfig (web search provider, tool timeouts)
        self._background: set[asyncio.Task] = set()  # background responses running on this replica
        self.runner = serve.get_replica_context().replica_id.unique_id
        self.lease_s = config.lease_timeout_s if config is not None else 30.0
        self._init_llama_stack(db)
        self._watcher = asyncio.get_running_loop().create_task(self._fail_orphans())

    async def health(self) -> dict[str, str]:
        """Provider health (/v1/providers): the database answers and the orphaned-response watcher runs."""
        from serve.health import run_checks, running

        return await run_checks(self.responses.db.ping, running(self._watcher, "the orphaned-response watcher"))

    async def _fail_orphans(self) -> None:
        """Forever: stored runs whose replica died (lease lapsed) become `failed`, not in progress forever."""
        async def sweep() -> None:
            for rid in await asyncio.to_thread(self.responses.fail_orphans):
                logger.warning("response %s failed: its replica stopped while running it", rid)

        await sweep_forever(sweep, self.lease_s / 3, "failing orphaned responses")

    def _init_llama_stack(self, db: Any) -> None:
        from deployments.agents.agent_turn import TurnRunner
        from deployments.agents.llama_agents import AgentStore
        from deployments.agents.tool_runtime import ToolRuntime
        from deployments.agents.toolgroups import ToolGroupRegistry

        self.toolgroups = ToolGroupRegistry(db, self.config.web_search if self.config is not None else None)
        self.tool_runtime = ToolRuntime(self.toolgroups, self.vector_io, self.config)
        self.agents = AgentStore(db)
        self.turns = TurnRunner(self.agents, self.toolgroups, self._prepare)

    # ---- stored Responses and Conversations ----------------------------------------------------------------------

    async def get_response(self, response_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.responses.get, response_id)

    async def list_responses(self, after: str | None, limit: int, order: str, model: str | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.responses.list, after, limit, order, model)

    async def delete_response(self, response_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.responses.delete, response_id)

    async def cancel_response(self, response_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.responses.cancel, response_id)

    async def list_input_items(self, response_id: str, after: str | None, before: str | None, limit: int,
                               order: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.responses.input_items, response_id, after, before, limit, order)

    async def create_conversation(self, items: list[dict] | None, metadata: dict | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.conversations.create, items, metadata)

    async def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.conversations.get, conversation_id)

    async def update_conversation(self, conversation_id: str, metadata: dict) -> dict[str, Any]:
        return await asyncio.to_thread(self.conversations.update, conversation_id, metadata)

    async def delete_conversation(self, conversation_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.conversations.delete, conversation_id)

    async def list_conversation_items(self, conversation_id: str, after: str | None, limit: int,
                                      order: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.conversations.list_items, conversation_id, after, limit, order)

    async def get_conversation_item(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.conversations.get_item, conversation_id, item_id)

    async def delete_conversation_item(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.conversations.delete_item, conversation_id, item_id)

    async def add_conversation_items(self, conversation_id: str, items: list[dict]) -> dict[str, Any]:
        from deployments.agents.items import normalize_input

        added = await asyncio.to_thread(self.conversations.append, conversation_id, normalize_input(items))
        return {"object": "list", "data": added, "first_id": added[0]["id"], "last_id": added[-1]["id"],
                "has_more": False}

    def _llm(self, model: str) -> Any:
        llm = self.llms.get(model)
        if llm is None:
            raise NotFoundError(f"The model '{model}' does not exist", param="model", code="model_not_found")
        return llm

    async def _prepare(self, req: CreateResponseRequest, history: list[dict] | None = None,
                       provider_data: ProviderData | None = None, session: str | None = None):
        """(ResponseRun, the input as stored items); `history` given: continue those items (Llama Stack turns);
        `provider_data`: the request's X-LlamaStack-Provider-Data (its web search key); `session`: the client's
        x-session-id, or a Llama Stack agent session's id."""
        from deployments.agents.hosted_tools import WEB_SEARCH_TYPES, HostedTools
        from deployments.agents.items import new_id, normalize_input
        from deployments.agents.orchestrator import ResponseRun
        from deployments.agents.tools.web_search import make_web_search

        llm = self._llm(req.model)
        prompt = None
        if req.prompt is not None:  # the stored prompt's text, variables filled in, leads the instructions
            text, prompt = await asyncio.to_thread(self.prompts.render, req.prompt)
            req = req.model_copy(update={"instructions": "\n\n".join(filter(None, [text, req.instructions]))})
        if any(t["type"] == "file_search" for t in req.tools) and self.vector_io is None:
            raise InvalidRequestError("file_search needs vector_io in the stack's config", param="tools")
        web_search = None
        if any(t["type"] in WEB_SEARCH_TYPES for t in req.tools):
            web_search = make_web_search(self.config.web_search if self.config else None, provider_data)
        if req.guardrails and self.safety is None:
            raise InvalidRequestError("guardrails need safety in the stack's config", param="guardrails")
        conv, chain = req.conversation_id(), None
        if history is None:
            history = []
            if req.previous_response_id:
                chain, history = await asyncio.to_thread(self.responses.chain, req.previous_response_id)
            if conv:
                history = await asyncio.to_thread(self.conversations.items, conv)
        items = normalize_input(req.input)
        if conv:  # checked before generating: the turn's items are appended to the conversation at its end
            ids = [it["id"] for it in items]
            taken = {it["id"] for it in history}.intersection(ids)
            if taken or len(set(ids)) != len(ids):
                raise ConflictError(f"item ids must be new to the conversation and unique: "
                                    f"{sorted(taken) or ids}", param="input")
        asked = {it["id"] for it in history if it.get("type") == "mcp_approval_request"}
        for it in items:
            if it["type"] == "mcp_approval_response" and it["approval_request_id"] not in asked:
                raise InvalidRequestError(f"no mcp_approval_request with id '{it['approval_request_id']}' in the "
                                          "previous response", param="input")
        rid = new_id("resp")
        # the model calls of one session, chain (named by its first response) or conversation go to one LLM
        # replica, where their shared prefix stays cached
        llm = with_session(llm, req.prompt_cache_key, session, chain or conv or rid)

        async def cancelled() -> bool:
            return req.store and await asyncio.to_thread(self.responses.status, rid) == "cancelled"

        hosted = HostedTools(req.tools, self.vector_io, web_search, self.config.tool_timeout_s if self.config else 60)
        run = ResponseRun(req, rid, history, items, llm, hosted, self.safety, cancelled)
        run.response["prompt"] = prompt
        return run, items

    @agent_response
    async def stream_response(self, req: CreateResponseRequest, prepared: Any = None,
                              provider_data: ProviderData | None = None, raise_bad_request: bool = False,
                              session: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Responses events; the response is stored (when `store`) as it starts and when it ends.
        `raise_bad_request`: a request the model refuses before any output (a prompt past its context) raises that
        error (a 400) and keeps nothing, instead of ending as a failed response."""
        run, items = prepared or await self._prepare(req, provider_data=provider_data, session=session)
        rid, final, lease = run.response["id"], None, None
        try:
            async for event in run.events():
                if event["type"] == "response.created" and req.store:
                    if req.background and await asyncio.to_thread(self.responses.status, rid) == "cancelled":
                        return  # cancelled while queued
                    await asyncio.to_thread(self.responses.save, event["response"], items, req.previous_response_id,
                                            (self.runner, self.lease_s))
                    lease = asyncio.get_running_loop().create_task(renew_while_held(
                        lambda: self.responses.renew(rid, self.runner, self.lease_s), self.lease_s))
                if event["type"] in ("response.completed", "response.incomplete", "response.failed",
                                     "response.cancelled"):
                    final = event["response"]
                yield event
        except Exception as e:
            err = to_api_error(e)
            if raise_bad_request and err.status_code < 500 and not run.out.output:
                if lease is not None:
                    await asyncio.to_thread(self.responses.delete, rid)
                raise err from None
            code = err.code if err.status_code < 500 and err.code else "server_error"
            final = {**run._snapshot(), "status": "failed", "error": {"code": code, "message": err.message}}
            yield {"type": "response.failed", "sequence_number": run.seq + 1, "response": final}
        finally:
            if lease is not None:
                lease.cancel()
            if final is not None:
                if req.store and final["status"] != "cancelled" and \
                        await asyncio.to_thread(self.responses.status, rid) != "cancelled":
                    await asyncio.to_thread(self.responses.save, final, items, req.previous_response_id)
                conv = req.conversation_id()
                if conv and final["status"] in ("completed", "incomplete"):
                    await asyncio.to_thread(self.conversations.append, conv, items + final["output"])

    async def create_response(self, req: CreateResponseRequest, provider_data: ProviderData | None = None,
                              session: str | None = None) -> dict[str, Any]:
        if req.background:
            return await self._start_background(req, provider_data, session)
        final = None
        async for event in self.stream_response(req, provider_data=provider_data, raise_bad_request=True,
                                                session=session):
            if "response" in event and event["type"] not in ("response.created", "response.in_progress"):
                final = event["response"]
        return final

    async def _start_background(self, req: CreateResponseRequest, provider_data: ProviderData | None,
                                session: str | None) -> dict[str, Any]:
        """Stores the response as queued and runs it on this replica; clients poll GET /responses/{id}.
        Bad input still fails here, before anything is stored."""
        prepared = await self._prepare(req, provider_data=provider_data, session=session)
        run, items = prepared
        queued = {**run._snapshot(), "status": "queued", "background": True}
        await asyncio.to_thread(self.responses.save, queued, items, req.previous_response_id,
                                (self.runner, self.lease_s))

        async def drain() -> None:
            async for _ in self.stream_response(req, prepared):
                pass

        task = asyncio.get_running_loop().create_task(drain())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return queued

    async def input_tokens(self, req: CreateResponseRequest,
                           provider_data: ProviderData | None = None) -> dict[str, Any]:
        """What the first model call of creating `req` would read, in tokens (nothing runs, nothing is kept)."""
        run, _ = await self._prepare(req, provider_data=provider_data)
        return {"object": "response.input_tokens", "input_tokens": await run.input_tokens()}

    async def compact_response(self, req: CompactRequest) -> dict[str, Any]:
        """The history of `req` (a stored chain, then its input) summarised into a compaction item."""
        from deployments.agents.compaction import compact
        from deployments.agents.items import normalize_input

        llm = self._llm(req.model)
        items = await asyncio.to_thread(self.responses.history, req.previous_response_id) \
            if req.previous_response_id else []
        items += normalize_input(req.input) if req.input else []
        return await compact(llm, req.model, items, req.instructions)

    # ---- stored prompts (/v1/prompts) ----------------------------------------------------------------------------

    async def create_prompt(self, req: CreatePromptRequest) -> dict[str, Any]:
        return await asyncio.to_thread(self.prompts.create, req)

    async def list_prompts(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.prompts.list)

    async def get_prompt(self, prompt_id: str, version: int | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.prompts.get, prompt_id, version)

    async def list_prompt_versions(self, prompt_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.prompts.versions, prompt_id)

    async def update_prompt(self, prompt_id: str, req: UpdatePromptRequest) -> dict[str, Any]:
        return await asyncio.to_thread(self.prompts.update, prompt_id, req)

    async def set_default_prompt_version(self, prompt_id: str, version: int) -> dict[str, Any]:
        return await asyncio.to_thread(self.prompts.set_default, prompt_id, version)

    async def delete_prompt(self, prompt_id: str) -> None:
        await asyncio.to_thread(self.prompts.delete, prompt_id)

    # ---- Llama Stack 0.2 agents ---------------------------------------------------------------------------------

    async def create_agent(self, config: AgentConfig) -> dict[str, Any]:
        """Checks the config as its turns will use it (model, tool groups, tool choice), then stores it."""
        if config.model not in self.llms:
            raise NotFoundError(f"The model '{config.model}' does not exist", param="agent_config.model",
                                code="model_not_found")
        await self.turns.check(config)
        return await asyncio.to_thread(self.agents.create_agent, config.model_dump(mode="json"))

    async def agent_turn(self, agent_id: str, session_id: str, body: CreateTurnRequest | ResumeTurnRequest,
                         turn_id: str | None = None,
                         provider_data: ProviderData | None = None) -> AsyncIterator[dict[str, Any]]:
        """Turn stream chunks of a new turn (CreateTurnRequest) or of a resumed one (turn_id, ResumeTurnRequest)."""
        turn = (self.turns.create(agent_id, session_id, body, provider_data) if turn_id is None
                else self.turns.resume(agent_id, session_id, turn_id, body, provider_data))
        async for c in turn:
            yield c

    async def agent_turn_result(self, agent_id: str, session_id: str, body: CreateTurnRequest | ResumeTurnRequest,
                                turn_id: str | None = None,
                                provider_data: ProviderData | None = None) -> dict[str, Any]:
        """The finished Turn (stream=false)."""
        last = None
        async for c in self.agent_turn(agent_id, session_id, body, turn_id, provider_data):
            last = c
        return last["event"]["payload"]["turn"]

    async def list_agents(self, start_index: int | None, limit: int | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.agents.list_agents, start_index, limit)

    async def get_agent(self, agent_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.agents.get_agent, agent_id)

    async def delete_agent(self, agent_id: str) -> None:
        await asyncio.to_thread(self.agents.delete_agent, agent_id)

    async def create_session(self, agent_id: str, session_name: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.agents.create_session, agent_id, session_name)

    async def get_session(self, agent_id: str, session_id: str, turn_ids: list[str] | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.agents.get_session, agent_id, session_id, turn_ids)

    async def list_sessions(self, agent_id: str, start_index: int | None, limit: int | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.agents.list_sessions, agent_id, start_index, limit)

    async def delete_session(self, agent_id: str, session_id: str) -> None:
        await asyncio.to_thread(self.agents.delete_session, agent_id, session_id)

    async def get_turn(self, agent_id: str, session_id: str, turn_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.agents.get_turn, agent_id, session_id, turn_id)

    async def get_step(self, agent_id: str, session_id: str, turn_id: str, step_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.agents.get_step, agent_id, session_id, turn_id, step_id)

    # ---- Llama Stack 0.2 tool groups and tool runtime ----------------------------------------------------------

    async def list_toolgroups(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.toolgroups.list)

    async def get_toolgroup(self, toolgroup_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.toolgroups.get, toolgroup_id)

    async def register_toolgroup(self, toolgroup_id: str, provider_id: str, mcp_uri: str | None,
                                 args: dict | None) -> None:
        await asyncio.to_thread(self.toolgroups.register, toolgroup_id, provider_id, mcp_uri, args)

    async def unregister_toolgroup(self, toolgroup_id: str) -> None:
        await asyncio.to_thread(self.toolgroups.unregister, toolgroup_id)

    async def list_tools(self, toolgroup_id: str | None) -> list[dict[str, Any]]:
        return await self.tool_runtime.list_tools(toolgroup_id)

    async def get_tool(self, tool_name: str) -> dict[str, Any]:
        return await self.tool_runtime.get_tool(tool_name)

    async def list_runtime_tools(self, tool_group_id: str | None, mcp_uri: str | None) -> list[dict[str, Any]]:
        return await self.tool_runtime.list_runtime_tools(tool_group_id, mcp_uri)

    async def invoke_tool(self, tool_name: str, kwargs: dict[str, Any],
                          provider_data: ProviderData | None = None) -> dict[str, Any]:
        return await self.tool_runtime.invoke(tool_name, kwargs, provider_data)
