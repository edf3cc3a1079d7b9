"""POST /chat/completions and /completions: validated by the protocol models, run on the model's LLM deployment."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serve.context import SESSION_HEADER, get_stack, with_session
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest
from serve.protocol.openai_completions import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
)
from serve.protocol.openapi_bodies import streaming_responses
from serve.sse import sse_response

router = APIRouter(tags=["inference"])


def _wants_done_marker(request: Request) -> bool:
    # llama-stack-client 0.x's SSE reader json-decodes every event and fails on `data: [DONE]`;
    # the Llama Stack server never sends it to them, so neither do we.
    return "LlamaStackClient/Python 0." not in request.headers.get("user-agent", "")


@router.post("/chat/completions", response_model=ChatCompletion, responses=streaming_responses(ChatCompletionChunk))
async def chat_completions(body: ChatCompletionRequest, request: Request):
    llm = with_session(get_stack().llm(body.model), request.headers.get(SESSION_HEADER))
    if not body.stream:
        return await llm.chat.remote(body)
    # validation errors raise before any header is sent
    return await sse_response(llm.options(stream=True).chat_stream.remote(body), _wants_done_marker(request))


@router.post("/completions", response_model=Completion, responses=streaming_responses(CompletionChunk))
async def completions(body: CompletionRequest, request: Request):
    llm = with_session(get_stack().llm(body.model), request.headers.get(SESSION_HEADER))
    if not body.stream:
        return await llm.completion.remote(body)
    return await sse_response(llm.options(stream=True).completion_stream.remote(body), _wants_done_marker(request))
