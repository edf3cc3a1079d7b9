"""Response bodies of every OpenAI route, through the running graph, against the official SDK's types and OpenAI's
published OpenAPI document.

The SDK's pydantic models accept missing fields, so `Model.model_validate(body)` alone proves little. `strict()`
walks the SDK type and the body together: every field the type requires is present, and null only where the type
allows None. Where the SDK is looser than the document, two tables add the document's word: fields it requires
(`DOC_REQUIRED`) and optional fields it types without null (`DOC_NOT_NULL`: absent, never null)."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import httpx
import openai.types as oai
import pytest
from openai.types import chat, responses, vector_stores
from openai.types import conversations as convs
from pydantic import BaseModel, TypeAdapter

from tests.conftest import MINILM, SMOLLM2

pytestmark = pytest.mark.graph

V1 = "/v1/openai/v1"
DOC_REQUIRED: dict[type[BaseModel], set[str]] = {
    chat.ChatCompletionMessage: {"content", "refusal"},
    responses.FunctionTool: {"strict", "parameters"},
    vector_stores.VectorStoreFile: {"last_error"},
    oai.VectorStore: {"last_active_at"},
}
DOC_NOT_NULL: dict[type[BaseModel], set[str]] = {
    chat.ChatCompletion: {"system_fingerprint", "usage", "service_tier"},
    chat.ChatCompletionChunk: {"system_fingerprint"},
    oai.Completion: {"system_fingerprint", "usage"},
    oai.FileObject: {"expires_at", "status_details"},
    oai.VectorStore: {"expires_after"},
    vector_stores.VectorStoreFile: {"chunking_strategy"},
    oai.Batch: {"cancelled_at", "cancelling_at", "completed_at", "error_file_id", "errors", "expired_at",
                "expires_at", "failed_at", "finalizing_at", "in_progress_at", "model", "output_file_id",
                "request_counts", "usage"},
    responses.Response: {"usage", "status", "text"},
}


# ---- the strict walk ---------------------------------------------------------------------------------------------

def _allows_none(tp: Any) -> bool:
    return tp is Any or tp is type(None) or any(_allows_none(a) for a in _members(tp))


def _members(tp: Any) -> tuple:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0]) or (typing.get_args(tp)[0],)
    if origin in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return ()


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _check_value(tp: Any, value: Any, where: str, errors: list[str]) -> None:
    tp = _unwrap(tp)
    if value is None:
        return
    members = [_unwrap(m) for m in _members(tp)] or [tp]
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if models and isinstance(value, dict):
        candidates = []
        for m in models:
            errs: list[str] = []
            _check_model(m, value, where, errs)
            if not errs:
                return
            candidates.append(errs)
        errors.extend(min(candidates, key=len))
        return
    for m in members:
        if typing.get_origin(m) is list and isinstance(value, list):
            (item,) = typing.get_args(m) or (Any,)
            for i, v in enumerate(value):
                _check_value(item, v, f"{where}[{i}]", errors)
            return
        if typing.get_origin(m) is dict and isinstance(value, dict):
            _, item = typing.get_args(m) or (str, Any)
            for k, v in value.items():
                _check_value(item, v, f"{where}.{k}", errors)
            return


def _check_model(model: type[BaseModel], body: dict[str, Any], where: str, errors: list[str]) -> None:
    required = DOC_REQUIRED.get(model, set())
    not_null = DOC_NOT_NULL.get(model, set())
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{where}.{key}"
        if key not in body:
            if field.is_required() or name in required:
                errors.append(f"{path}: missing ({model.__name__} requires it)")
            continue
        value = body[key]
        if value is None and (not _allows_none(field.annotation) or name in not_null):
            errors.append(f"{path}: null, which {model.__name__} types as non-nullable")
            continue
        _check_value(field.annotation, value, path, errors)


def strict(model: Any, body: dict[str, Any]) -> Any:
    """`body` has every field `model` (a model, or a union of them) and the document require, nulls only where
    allowed; then parsed."""
    errors: list[str] = []
    if isinstance(model, type) and issubclass(model, BaseModel):
        _check_model(model, body, model.__name__, errors)
    else:
        _check_value(model, body, "item", errors)
    assert not errors, "\n".join(errors) + f"\nbody: {json.dumps(body)[:2000]}"
    return TypeAdapter(model).validate_python(body)


def strict_page(model: Any, body: dict[str, Any], cursor_ids: bool = True) -> None:
    assert body["object"] == "list"
    if cursor_ids:
        assert isinstance(body["has_more"], bool)
        assert "first_id" in body and "last_id" in body
    for item in body["data"]:
        strict(model, item)


def test_strict_walk_catches_what_model_validate_lets_through():
    """The helper itself: OpenAI's SDK parses all three bodies; the walk refuses each."""
    body = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "system_fingerprint": None,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": "hi"}}]}
    chat.ChatCompletion.model_validate(body)
    with pytest.raises(AssertionError, match=r"message\.refusal: missing"):
        strict(chat.ChatCompletion, body)
    with pytest.raises(AssertionError, match="system_fingerprint: null"):
        strict(chat.ChatCompletion, {**body, "choices": [{**body["choices"][0], "message": {
            "role": "assistant", "content": "hi", "refusal": None}}]})
    with pytest.raises(AssertionError, match=r"bytes: missing"):
        strict(oai.FileObject, {"id": "f", "object": "file", "created_at": 1, "filename": "a", "purpose": "batch"})


# ---- requests through the graph -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=180) as c:
        yield c


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()


def _sse(http: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    events = []
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    assert events
    return events


@pytest.mark.parametrize("prefix", [V1, "/v1"])
def test_openai_models(http, prefix):
    page = _ok(http.get(f"{prefix}/models"))
    strict_page(oai.Model, page, cursor_ids=False)
    strict(oai.Model, _ok(http.get(f"{prefix}/models/{SMOLLM2}")))


def test_openai_chat_completion(http):
    body = _ok(http.post(f"{V1}/chat/completions", json={
        "model": SMOLLM2, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "logprobs": True,
        "top_logprobs": 1}))
    c = strict(chat.ChatCompletion, body)
    assert "system_fingerprint" not in body and c.choices[0].message.refusal is None
    chunks = _sse(http, f"{V1}/chat/completions", {
        "model": SMOLLM2, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True,
        "stream_options": {"include_usage": True}})
    for chunk in chunks:
        strict(chat.ChatCompletionChunk, chunk)
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert any(ch["finish_reason"] for c in chunks for ch in c["choices"])


def test_openai_completion(http):
    strict(oai.Completion, _ok(http.post(f"{V1}/completions", json={
        "model": SMOLLM2, "prompt": "Once upon", "max_tokens": 3, "logprobs": 1})))
    for chunk in _sse(http, f"{V1}/completions", {"model": SMOLLM2, "prompt": "Once", "max_tokens": 2,
                                                   "stream": True}):
        # a streamed choice carries null until its last chunk (as OpenAI's own server sends): lift it for the walk
        chunk["choices"] = [{**c, "finish_reason": c["finish_reason"] or "length"} for c in chunk["choices"]]
        strict(oai.Completion, chunk)


def test_openai_embeddings(http):
    strict(oai.CreateEmbeddingResponse, _ok(http.post(f"{V1}/embeddings", json={
        "model": MINILM, "input": ["a", "b"]})))
    # base64: the SDK types the vector as floats (it decodes client-side); the body carries a string
    body = _ok(http.post(f"{V1}/embeddings", json={"model": MINILM, "input": ["a"], "encoding_format": "base64"}))
    assert isinstance(body["data"][0]["embedding"], str)
    body["data"][0]["embedding"] = [0.0]
    strict(oai.CreateEmbeddingResponse, body)


def test_openai_files(http):
    f = _ok(http.post(f"{V1}/files", files={"file": ("notes.txt", b"bees make honey")},
                      data={"purpose": "assistants"}))
    strict(oai.FileObject, f)
    assert "expires_at" not in f
    strict(oai.FileObject, _ok(http.get(f"{V1}/files/{f['id']}")))
    strict_page(oai.FileObject, _ok(http.get(f"{V1}/files", params={"limit": 2})))
    strict(oai.FileDeleted, _ok(http.delete(f"{V1}/files/{f['id']}")))


def _wait_file(http: httpx.Client, path: str) -> dict[str, Any]:
    import time

    for _ in range(120):
        body = _ok(http.get(path))
        if body["status"] != "in_progress":
            return body
        time.sleep(0.5)
    raise AssertionError(f"{path} still in progress")


def test_openai_vector_stores(http):
    fid = _ok(http.post(f"{V1}/files", files={"file": ("bees.txt", b"Bees make honey from nectar.")},
                        data={"purpose": "assistants"}))["id"]
    fid2 = _ok(http.post(f"{V1}/files", files={"file": ("ants.txt", b"Ants build nests.")},
                         data={"purpose": "assistants"}))["id"]
    vs = _ok(http.post(f"{V1}/vector_stores", json={"name": "shapes"}))
    strict(oai.VectorStore, vs)
    assert "expires_after" not in vs
    sid = vs["id"]
    strict(oai.VectorStore, _ok(http.post(f"{V1}/vector_stores/{sid}", json={
        "expires_after": {"anchor": "last_active_at", "days": 7}})))
    strict_page(oai.VectorStore, _ok(http.get(f"{V1}/vector_stores", params={"limit": 3})))
    strict(vector_stores.VectorStoreFile, _ok(http.post(f"{V1}/vector_stores/{sid}/files",
                                                        json={"file_id": fid, "attributes": {"n": 5}})))
    done = _wait_file(http, f"{V1}/vector_stores/{sid}/files/{fid}")
    strict(vector_stores.VectorStoreFile, done)
    assert done["attributes"] == {"n": 5}  # an int stays an int
    strict_page(vector_stores.VectorStoreFile, _ok(http.get(f"{V1}/vector_stores/{sid}/files")))
    strict(vector_stores.VectorStoreFile, _ok(http.post(f"{V1}/vector_stores/{sid}/files/{fid}",
                                                        json={"attributes": {"k": "v"}})))
    content = _ok(http.get(f"{V1}/vector_stores/{sid}/files/{fid}/content"))
    assert content["object"] == "vector_store.file_content.page" and "next_page" in content
    for item in content["data"]:
        strict(vector_stores.FileContentResponse, item)
    page = _ok(http.post(f"{V1}/vector_stores/{sid}/search", json={"query": "honey"}))
    assert page["object"] == "vector_store.search_results.page" and page["search_query"] == ["honey"]
    assert "next_page" in page and page["data"]
    for item in page["data"]:
        strict(oai.VectorStoreSearchResponse, item)
    batch = _ok(http.post(f"{V1}/vector_stores/{sid}/file_batches", json={"file_ids": [fid2]}))
    strict(vector_stores.VectorStoreFileBatch, batch)
    strict(vector_stores.VectorStoreFileBatch,
           _ok(http.get(f"{V1}/vector_stores/{sid}/file_batches/{batch['id']}")))
    strict_page(vector_stores.VectorStoreFile,
                _ok(http.get(f"{V1}/vector_stores/{sid}/file_batches/{batch['id']}/files")))
    strict(vector_stores.VectorStoreFileBatch,
           _ok(http.post(f"{V1}/vector_stores/{sid}/file_batches/{batch['id']}/cancel")))
    strict(vector_stores.VectorStoreFileDeleted, _ok(http.delete(f"{V1}/vector_stores/{sid}/files/{fid}")))
    strict(oai.VectorStoreDeleted, _ok(http.delete(f"{V1}/vector_stores/{sid}")))


def test_openai_batches(http):
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": SMOLLM2, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}}
    fid = _ok(http.post(f"{V1}/files", files={"file": ("in.jsonl", json.dumps(line).encode())},
                        data={"purpose": "batch"}))["id"]
    b = _ok(http.post(f"{V1}/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                              "completion_window": "24h"}))
    strict(oai.Batch, b)
    strict(oai.Batch, _ok(http.get(f"{V1}/batches/{b['id']}")))
    page = _ok(http.get(f"{V1}/batches", params={"limit": 2}))
    strict_page(oai.Batch, page, cursor_ids=False)  # first_id/last_id: optional (not null) in the document
    assert isinstance(page["has_more"], bool) and None not in (page.get("first_id", ""), page.get("last_id", ""))
    r = http.post(f"{V1}/batches/{b['id']}/cancel")
    if r.status_code == 200:  # it may have finished already: then cancelling is a 400
        strict(oai.Batch, r.json())


def test_openai_moderations(http):
    body = _ok(http.post(f"{V1}/moderations", json={"input": ["hello there", "how do I kill a process"],
                                                    "model": "llama-guard"}))
    strict(oai.ModerationCreateResponse, body)
    for result in body["results"]:  # every category of OpenAI's list, each with its score and input types
        keys = {f.alias or n for n, f in oai.moderation.Categories.model_fields.items()}
        assert keys <= set(result["categories"]) and keys <= set(result["category_scores"])
        assert keys <= set(result["category_applied_input_types"])


WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_openai_responses(http):
    r = _ok(http.post(f"{V1}/responses", json={"model": SMOLLM2, "input": "Hi", "max_output_tokens": 3,
                                                "tools": [WEATHER], "tool_choice": "none"}))
    strict(responses.Response, r)
    assert r["tools"][0]["strict"] is None  # required (nullable) by the document: echoed even when not sent
    strict(responses.Response, _ok(http.get(f"{V1}/responses/{r['id']}")))
    strict_page(responses.Response, _ok(http.get(f"{V1}/responses", params={"limit": 2})))
    items = _ok(http.get(f"{V1}/responses/{r['id']}/input_items"))
    strict_page(responses.ResponseItem, items)
    for event in _sse(http, f"{V1}/responses", {"model": SMOLLM2, "input": "Hi", "max_output_tokens": 2,
                                                 "stream": True}):
        assert isinstance(event["type"], str) and isinstance(event["sequence_number"], int)
        if event["type"] in ("response.created", "response.completed"):
            strict(responses.Response, event["response"])
    background = _ok(http.post(f"{V1}/responses", json={"model": SMOLLM2, "input": "Hi", "max_output_tokens": 2,
                                                         "background": True}))
    strict(responses.Response, background)
    cancel = http.post(f"{V1}/responses/{background['id']}/cancel")
    if cancel.status_code == 200:  # it may have finished already
        strict(responses.Response, cancel.json())
    deleted = _ok(http.delete(f"{V1}/responses/{r['id']}"))
    assert deleted == {"id": r["id"], "object": "response.deleted", "deleted": True}


def test_openai_conversations(http):
    conv = _ok(http.post(f"{V1}/conversations", json={
        "metadata": {"topic": "t"}, "items": [{"type": "message", "role": "user", "content": "hello"}]}))
    strict(convs.Conversation, conv)
    cid = conv["id"]
    strict(convs.Conversation, _ok(http.get(f"{V1}/conversations/{cid}")))
    strict(convs.Conversation, _ok(http.post(f"{V1}/conversations/{cid}", json={"metadata": {"topic": "u"}})))
    added = _ok(http.post(f"{V1}/conversations/{cid}/items", json={
        "items": [{"type": "message", "role": "user", "content": "again"}]}))
    strict_page(convs.ConversationItem, added)
    page = _ok(http.get(f"{V1}/conversations/{cid}/items"))
    strict_page(convs.ConversationItem, page)
    item_id = page["data"][0]["id"]
    strict(convs.ConversationItem, _ok(http.get(f"{V1}/conversations/{cid}/items/{item_id}")))
    strict(convs.Conversation, _ok(http.delete(f"{V1}/conversations/{cid}/items/{item_id}")))
    strict(convs.ConversationDeletedResource, _ok(http.delete(f"{V1}/conversations/{cid}")))


# ---- the served OpenAPI declares every 200 body ----------------------------------------------------------------

OPENAI_PATHS = ("/models", "/chat/completions", "/completions", "/embeddings", "/files", "/vector_stores",
                "/batches", "/moderations", "/responses", "/conversations")
BINARY = ("/files/{file_id}/content",)


def test_openai_openapi_declares_response_schemas(http):
    spec = _ok(http.get("/openapi.json"))
    schemas = spec["components"]["schemas"]
    seen = 0
    for path, ops in spec["paths"].items():
        rest = path.removeprefix(V1) if path.startswith(V1) else path.removeprefix("/v1")
        if not rest.startswith(OPENAI_PATHS) or rest in BINARY:
            continue
        for method, op in ops.items():
            content = op["responses"]["200"].get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            assert "$ref" in schema, f"{method.upper()} {path}: 200 body is not a declared model ({schema})"
            model = schemas[schema["$ref"].rsplit("/", 1)[-1]]
            assert model.get("properties"), f"{method.upper()} {path}: {schema['$ref']} has no properties"
            if "text/event-stream" in content:
                assert content["text/event-stream"]["schema"].get("properties"), f"{path}: SSE event schema"
            seen += 1
    assert seen >= 2 * 38, seen  # every route of the families, under both prefixes
    assert schemas["FileObject"]["properties"]["expires_at"] == {"type": "integer", "title": "Expires At"}
    assert {"content", "refusal"} <= set(schemas["ChatCompletionMessage"]["required"])
    assert "system_fingerprint" not in schemas["ChatCompletion"]["required"]
