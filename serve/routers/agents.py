"""Llama Stack 0.2 agents, sessions and turns, run by the Agents deployment on the Responses loop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from serve.context import get_stack
from serve.protocol.agents import CreateAgentRequest, CreateSessionRequest, CreateTurnRequest, ResumeTurnRequest
from serve.protocol.llama_agents import (
    Agent,
    AgentCreateResponse,
    AgentTurnResponseStreamChunk,
    ListAgentsResponse,
    ListSessionsResponse,
    Session,
    SessionCreateResponse,
    StepResponse,
    Turn,
)
from serve.protocol.openapi_bodies import NULL_BODY, AsWrittenRoute, streaming_responses
from serve.protocol.provider_data import provider_data_of
from serve.sse import sse_response

router = APIRouter(route_class=AsWrittenRoute, tags=["agents"])
TURN_STREAM = streaming_responses(AgentTurnResponseStreamChunk)


@router.post("/agents", response_model=AgentCreateResponse)
async def create_agent(body: CreateAgentRequest) -> dict[str, Any]:
    stack = get_stack()
    stack.llm(body.agent_config.model, param="agent_config.model")
    return await stack.agents().create_agent.remote(body.agent_config)


@router.get("/agents", response_model=ListAgentsResponse)
async def list_agents(start_index: int | None = Query(None, ge=0), limit: int | None = None) -> dict[str, Any]:
    return await get_stack().agents().list_agents.remote(start_index, limit)


@router.get("/agents/{agent_id}", response_model=Agent)
async def get_agent(agent_id: str) -> dict[str, Any]:
    return await get_stack().agents().get_agent.remote(agent_id)


@router.delete("/agents/{agent_id}", responses=NULL_BODY)
async def delete_agent(agent_id: str) -> None:
    await get_stack().agents().delete_agent.remote(agent_id)


@router.post("/agents/{agent_id}/session", response_model=SessionCreateResponse)
async def create_session(agent_id: str, body: CreateSessionRequest) -> dict[str, Any]:
    return await get_stack().agents().create_session.remote(agent_id, body.session_name)


@router.get("/agents/{agent_id}/sessions", response_model=ListSessionsResponse)
async def list_sessions(agent_id: str, start_index: int | None = Query(None, ge=0),
                        limit: int | None = None) -> dict[str, Any]:
    return await get_stack().agents().list_sessions.remote(agent_id, start_index, limit)


@router.get("/agents/{agent_id}/session/{session_id}", response_model=Session)
async def get_session(agent_id: str, session_id: str, request: Request) -> dict[str, Any]:
    # llama-stack-client sends lists as `turn_ids[]=a&turn_ids[]=b`
    q = request.query_params
    turn_ids = [t for v in q.getlist("turn_ids[]") + q.getlist("turn_ids") for t in v.split(",") if t]
    return await get_stack().agents().get_session.remote(agent_id, session_id, turn_ids or None)


@router.delete("/agents/{agent_id}/session/{session_id}", responses=NULL_BODY)
async def delete_session(agent_id: str, session_id: str) -> None:
    await get_stack().agents().delete_session.remote(agent_id, session_id)


async def _turn(request: Request, agent_id: str, session_id: str, body: CreateTurnRequest | ResumeTurnRequest,
                turn_id: str | None = None):
    agents = get_stack().agents()
    keys = provider_data_of(request.headers)  # builtin::websearch may use the client's own key
    if not body.stream:
        return await agents.agent_turn_result.remote(agent_id, session_id, body, turn_id, keys)
    # no `data: [DONE]`: llama-stack-client 0.x cannot parse it, and the Llama Stack server does not send it
    return await sse_response(agents.options(stream=True).agent_turn.remote(agent_id, session_id, body, turn_id,
                                                                            keys), done_marker=False)


@router.post("/agents/{agent_id}/session/{session_id}/turn", response_model=Turn, responses=TURN_STREAM)
async def create_turn(agent_id: str, session_id: str, body: CreateTurnRequest, request: Request):
    return await _turn(request, agent_id, session_id, body)


@router.post("/agents/{agent_id}/session/{session_id}/turn/{turn_id}/resume", response_model=Turn,
             responses=TURN_STREAM)
async def resume_turn(agent_id: str, session_id: str, turn_id: str, body: ResumeTurnRequest, request: Request):
    return await _turn(request, agent_id, session_id, body, turn_id)


@router.get("/agents/{agent_id}/session/{session_id}/turn/{turn_id}", response_model=Turn)
async def get_turn(agent_id: str, session_id: str, turn_id: str) -> dict[str, Any]:
    return await get_stack().agents().get_turn.remote(agent_id, session_id, turn_id)


@router.get("/agents/{agent_id}/session/{session_id}/turn/{turn_id}/step/{step_id}", response_model=StepResponse)
async def get_step(agent_id: str, session_id: str, turn_id: str, step_id: str) -> dict[str, Any]:
    return await get_stack().agents().get_step.remote(agent_id, session_id, turn_id, step_id)
