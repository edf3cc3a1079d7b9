"""OpenAI Responses and Conversations, run by the Agents deployment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from serve.context import SESSION_HEADER, get_stack
from serve.protocol.openai_responses import (
    CompactedResponse,
    Conversation,
    ConversationDeleted,
    ConversationItemList,
    InputTokenCount,
    Response,
    ResponseDeleted,
    ResponseItemList,
    ResponseList,
    ResponseStreamEvent,
    StoredItem,
)
from serve.protocol.openapi_bodies import streaming_responses
from serve.protocol.provider_data import provider_data_of
from serve.protocol.responses import (
    CompactRequest,
    ConversationItemsRequest,
    CreateConversationRequest,
    CreateResponseRequest,
    UpdateConversationRequest,
)
from serve.sse import sse_response

router = APIRouter(tags=["responses"])


@router.post("/responses", response_model=Response, responses=streaming_responses(ResponseStreamEvent))
async def create_response(body: CreateResponseRequest, request: Request):
    stack = get_stack()
    stack.llm(body.model)  # 404 before anything runs
    keys = provider_data_of(request.headers)  # a web_search tool may use the client's own key
    session = request.headers.get(SESSION_HEADER)  # the LLM calls' session, unless prompt_cache_key names one
    if not body.stream:
        return await stack.agents().create_response.remote(body, keys, session=session)
    return await sse_response(stack.agents().options(stream=True).stream_response.remote(
        body, None, keys, session=session), done_marker=False)


@router.post("/responses/input_tokens", response_model=InputTokenCount)
async def count_input_tokens(body: CreateResponseRequest, request: Request) -> dict[str, Any]:
    """The tokens the model would read first for a create of this body."""
    stack = get_stack()
    stack.llm(body.model)
    return await stack.agents().input_tokens.remote(body, provider_data_of(request.headers))


@router.post("/responses/compact", response_model=CompactedResponse)
async def compact_response(body: CompactRequest) -> dict[str, Any]:
    """The history summarised by the model into one compaction item, to send as input instead of it."""
    stack = get_stack()
    stack.llm(body.model)
    return await stack.agents().compact_response.remote(body)


@router.get("/responses", response_model=ResponseList)
async def list_responses(after: str | None = None, limit: int = Query(50, ge=1, le=100), order: str = "desc",
                         model: str | None = None) -> dict[str, Any]:
    return await get_stack().agents().list_responses.remote(after, limit, order, model)


@router.get("/responses/{response_id}", response_model=Response)
async def get_response(response_id: str) -> dict[str, Any]:
    return await get_stack().agents().get_response.remote(response_id)


@router.delete("/responses/{response_id}", response_model=ResponseDeleted)
async def delete_response(response_id: str) -> dict[str, Any]:
    return await get_stack().agents().delete_response.remote(response_id)


@router.post("/responses/{response_id}/cancel", response_model=Response)
async def cancel_response(response_id: str) -> dict[str, Any]:
    return await get_stack().agents().cancel_response.remote(response_id)


@router.get("/responses/{response_id}/input_items", response_model=ResponseItemList)
async def input_items(response_id: str, after: str | None = None, before: str | None = None,
                      limit: int = Query(20, ge=1, le=100), order: str = "desc") -> dict[str, Any]:
    return await get_stack().agents().list_input_items.remote(response_id, after, before, limit, order)


@router.post("/conversations", response_model=Conversation)
async def create_conversation(body: CreateConversationRequest) -> dict[str, Any]:
    return await get_stack().agents().create_conversation.remote(body.items, body.metadata)


@router.get("/conversations/{conversation_id}", response_model=Conversation)
async def get_conversation(conversation_id: str) -> dict[str, Any]:
    return await get_stack().agents().get_conversation.remote(conversation_id)


@router.post("/conversations/{conversation_id}", response_model=Conversation)
async def update_conversation(conversation_id: str, body: UpdateConversationRequest) -> dict[str, Any]:
    return await get_stack().agents().update_conversation.remote(conversation_id, body.metadata)


@router.delete("/conversations/{conversation_id}", response_model=ConversationDeleted)
async def delete_conversation(conversation_id: str) -> dict[str, Any]:
    return await get_stack().agents().delete_conversation.remote(conversation_id)


@router.get("/conversations/{conversation_id}/items", response_model=ConversationItemList)
async def list_items(conversation_id: str, after: str | None = None, limit: int = Query(20, ge=1, le=100),
                     order: str = "desc") -> dict[str, Any]:
    return await get_stack().agents().list_conversation_items.remote(conversation_id, after, limit, order)


@router.post("/conversations/{conversation_id}/items", response_model=ConversationItemList)
async def add_items(conversation_id: str, body: ConversationItemsRequest) -> dict[str, Any]:
    return await get_stack().agents().add_conversation_items.remote(conversation_id, body.items)


@router.get("/conversations/{conversation_id}/items/{item_id}", response_model=StoredItem)
async def get_item(conversation_id: str, item_id: str) -> dict[str, Any]:
    return await get_stack().agents().get_conversation_item.remote(conversation_id, item_id)


@router.delete("/conversations/{conversation_id}/items/{item_id}", response_model=Conversation)
async def delete_item(conversation_id: str, item_id: str) -> dict[str, Any]:
    return await get_stack().agents().delete_conversation_item.remote(conversation_id, item_id)
