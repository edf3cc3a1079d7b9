"""Llama Stack 0.2's native Inference API (`/v1/inference/...`): each route translates its body into the OpenAI
request the `/chat/completions`, `/completions` and `/embeddings` routes send (serve/llama_inference.py), calls the
same deployment method, and reshapes the answer. Streams end without `data: [DONE]`, as Llama Stack's do."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from serve import llama_inference as translate
from serve.context import get_stack
from serve.protocol import llama_inference as ls
from serve.protocol.openapi_bodies import streaming_responses
from serve.sse import sse_response

router = APIRouter(tags=["inference"])


async def _generate(req: Any, stream: bool, whole: Any, streamed: Any, events: Any, reshape: Any) -> Any:
    """Run `req` on an LLM deployment method (`whole`, or its streaming twin `streamed`) and answer in Llama Stack's
    shape: `reshape` of the whole answer, or SSE chunks translated by `events`."""
    if not stream:
        return reshape(await translate.answer(whole.remote(req)))
    return await sse_response(translate.stream(streamed.remote(req), events), done_marker=False)


@router.post("/chat-completion", response_model=ls.ChatCompletionResponse,
             responses=streaming_responses(ls.ChatCompletionResponseStreamChunk))
async def chat_completion(body: ls.LlamaChatCompletionRequest):
    llm = get_stack().llm(body.model_id, "model_id")
    req = translate.chat_request(body, body.messages, stream=body.stream)
    return await _generate(req, body.stream, llm.chat, llm.options(stream=True).chat_stream, translate.ChatEvents(),
                           translate.chat_response)


@router.post("/completion", response_model=ls.CompletionResponse,
             responses=streaming_responses(ls.CompletionResponseStreamChunk))
async def completion(body: ls.LlamaCompletionRequest):
    llm = get_stack().llm(body.model_id, "model_id")
    req = translate.completion_request(body, body.content, stream=body.stream)
    return await _generate(req, body.stream, llm.completion, llm.options(stream=True).completion_stream,
                           translate.CompletionEvents(), translate.completion_response)


@router.post("/batch-chat-completion", response_model=ls.BatchChatCompletionResponse)
async def batch_chat_completion(body: ls.BatchChatCompletionRequest) -> dict[str, Any]:
    llm = get_stack().llm(body.model_id, "model_id")
    reqs = [translate.chat_request(body, messages) for messages in body.messages_batch]  # all valid, or a 400
    answers = await asyncio.gather(*(translate.answer(llm.chat.remote(r)) for r in reqs))  # the engine batches them
    return {"batch": [translate.chat_response(a) for a in answers]}


@router.post("/batch-completion", response_model=ls.BatchCompletionResponse)
async def batch_completion(body: ls.BatchCompletionRequest) -> dict[str, Any]:
    llm = get_stack().llm(body.model_id, "model_id")
    reqs = [translate.completion_request(body, content) for content in body.content_batch]
    answers = await asyncio.gather(*(translate.answer(llm.completion.remote(r)) for r in reqs))
    return {"batch": [translate.completion_response(a) for a in answers]}


@router.post("/embeddings", response_model=ls.EmbeddingsResponse)
async def embeddings(body: ls.EmbeddingsRequest) -> dict[str, Any]:
    answer = await get_stack().embeddings(body.model_id, "model_id").embeddings.remote(
        translate.embeddings_request(body))
    return {"embeddings": [d["embedding"] for d in answer["data"]]}
