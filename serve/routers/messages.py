"""Anthropic's Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`): each route translates its body into
the chat request `/chat/completions` sends (serve/anthropic_messages.py), calls the same LLM deployment method, and
reshapes the answer. Errors on these routes come in Anthropic's shape (serve/errors.py), streams as its named
events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from serve import anthropic_messages as translate
from serve.context import SESSION_HEADER, get_stack, with_session
from serve.protocol import anthropic_messages as am
from serve.protocol.openapi_bodies import streaming_responses
from serve.sse import sse_response

router = APIRouter(tags=["messages"])


@router.post("/messages", response_model=am.Message, responses=streaming_responses(am.StreamEvent))
async def create_message(body: am.MessageCreateRequest, request: Request) -> Any:
    llm = with_session(get_stack().llm(body.model), request.headers.get(SESSION_HEADER))
    req = translate.chat_request(body)
    if not body.stream:
        return translate.message(await translate.answer(llm.chat.remote(req)))
    return await sse_response(translate.stream(llm.options(stream=True).chat_stream.remote(req)), shape="anthropic")


@router.post("/messages/count_tokens", response_model=am.MessageTokensCount)
async def count_tokens(body: am.MessageCountTokensRequest) -> dict[str, int]:
    llm = get_stack().llm(body.model)
    return {"input_tokens": await translate.answer(llm.count_tokens.remote(translate.prompt_request(body)))}
