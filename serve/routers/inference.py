"""POST /chat/completions and /completions: validated by the protocol models, run on the model's LLM deployment."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serve.context import get_stack
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest
from serve.sse import STREAMING_RESPONSES, sse_response

router = APIRouter(tags=["inference"])


def _wants_done_marker(request: Request) -> bool:
    # llama-stack-client 0.x's SSE reader json-decodes every event and fails on `data: [DONE]`;
    # the Llama Stack server never sends it to them, so neither do we.
    return "LlamaStackClient/Python 0." not in request.headers.get("user-agent", "")


async def _call(method: str, body: ChatCompletionRequest | CompletionRequest, request: Request):
    handle = get_stack().model(body.model, model_type="llm").handle
    if not body.stream:
        return await getattr(handle, method).remote(body)
    stream = getattr(handle.options(stream=True), f"{method}_stream").remote(body)
    return await sse_response(stream, _wants_done_marker(request))  # validation errors raise before any header


@router.post("/chat/completions", responses=STREAMING_RESPONSES)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    return await _call("chat", body, request)


@router.post("/completions", responses=STREAMING_RESPONSES)
async def completions(body: CompletionRequest, request: Request):
    return await _call("completion", body, request)
