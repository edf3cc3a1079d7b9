"""Batch input lines and output records in the OpenAI formats (pure: no Ray, no SQL).

An input line is `{"custom_id", "method": "POST", "url", "body"}`. Every line yields one record: successes go to the
output file as `{"id", "custom_id", "response": {"status_code": 200, "request_id", "body"}, "error": null}`; failures
go to the error file, either as an error response the API would have given (`status_code` 4xx/5xx and the error
envelope as `body`) or, for a line that is not a usable request at all, as `"error": {"code", "message", "line"}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from serve.errors import APIError, InvalidRequestError, NotFoundError
from serve.ids import new_id
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest
from serve.protocol.vector_io import EmbeddingRequest


@dataclass(frozen=True)
class Endpoint:
    method: str  # the model deployment's method
    schema: type[BaseModel]
    model_type: str  # "llm" | "embedding"


ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": Endpoint("chat", ChatCompletionRequest, "llm"),
    "/v1/completions": Endpoint("completion", CompletionRequest, "llm"),
    "/v1/embeddings": Endpoint("embeddings", EmbeddingRequest, "embedding"),
}


def endpoint_for(path: str) -> Endpoint:
    if path not in ENDPOINTS:
        raise InvalidRequestError(f"endpoint must be one of {', '.join(ENDPOINTS)}; got {path!r}", param="endpoint",
                                  code="invalid_endpoint")
    return ENDPOINTS[path]


@dataclass
class RequestLine:
    line: int  # 1-based line number in the input file
    custom_id: str
    body: dict[str, Any]


@dataclass
class LineResult:
    line: int
    custom_id: str | None
    ok: bool
    record: dict[str, Any]
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class ParsedInput:
    requests: list[RequestLine] = field(default_factory=list)
    failures: list[LineResult] = field(default_factory=list)  # lines that fail before running
    errors: list[dict[str, Any]] = field(default_factory=list)  # the batch's `errors.data`: unusable lines

    @property
    def total(self) -> int:
        return len(self.requests) + len(self.failures)


def response_result(line: int, custom_id: str | None, status: int, body: dict[str, Any]) -> LineResult:
    record = {"id": new_id("batch_req"), "custom_id": custom_id,
              "response": {"status_code": status, "request_id": new_id("req"), "body": body}, "error": None}
    usage = (body.get("usage") or {}) if status == 200 else {}
    return LineResult(line, custom_id, status == 200, record, int(usage.get("prompt_tokens") or 0),
                      int(usage.get("completion_tokens") or 0))


def error_result(line: int, custom_id: str | None, err: APIError) -> LineResult:
    return response_result(line, custom_id, err.status_code, err.envelope())


MAX_CUSTOM_ID = 512  # the batch_results column


def _line_error(line: int, custom_id: str | None, code: str, message: str, out: ParsedInput) -> None:
    error = {"code": code, "message": message, "param": None, "line": line}
    out.errors.append(error)
    out.failures.append(LineResult(line, custom_id, False, {"id": new_id("batch_req"), "custom_id": custom_id,
                                                            "response": None, "error": error}))


def _invalid_body(exc: ValidationError) -> InvalidRequestError:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    more = f" (and {exc.error_count() - 1} more errors)" if exc.error_count() > 1 else ""
    return InvalidRequestError(f"Invalid request: '{param}': {first['msg']}{more}", param=param, code="invalid_value")


def parse_input(data: bytes, endpoint: str, models: dict[str, str], override_model: str | None = None) -> ParsedInput:
    """Validate every line up front. `models` maps served model ids to their type ("llm" | "embedding");
    `override_model` (offline jobs) runs every line on that model whatever its body names."""
    ep = endpoint_for(endpoint)
    out = ParsedInput()
    seen: set[str] = set()
    for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            _line_error(number, None, "invalid_json_line", f"line {number} is not valid JSON: {e.msg}", out)
            continue
        if not isinstance(obj, dict):
            _line_error(number, None, "invalid_json_line", f"line {number} is not a JSON object", out)
            continue
        custom_id = obj.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            _line_error(number, None, "missing_custom_id", f"line {number} has no custom_id string", out)
            continue
        if len(custom_id) > MAX_CUSTOM_ID or "\x00" in custom_id:
            _line_error(number, None, "invalid_custom_id", f"line {number}: custom_id must be at most "
                        f"{MAX_CUSTOM_ID} characters without NUL", out)
            continue
        if custom_id in seen:
            _line_error(number, custom_id, "duplicate_custom_id", f"custom_id {custom_id!r} is used twice", out)
            continue
        seen.add(custom_id)
        if str(obj.get("method", "POST")).upper() != "POST":
            _line_error(number, custom_id, "invalid_method", f"line {number}: method must be POST", out)
            continue
        if obj.get("url", endpoint) != endpoint:
            _line_error(number, custom_id, "mismatched_url",
                        f"line {number}: url {obj.get('url')!r} does not match the batch endpoint {endpoint}", out)
            continue
        body = obj.get("body")
        if not isinstance(body, dict):
            _line_error(number, custom_id, "invalid_body", f"line {number}: body must be a JSON object", out)
            continue
        if override_model is not None:
            body = {**body, "model": override_model}
        try:
            check_request(ep, body, models)
        except APIError as e:
            out.failures.append(error_result(number, custom_id, e))
            continue
        out.requests.append(RequestLine(number, custom_id, body))
    return out


def check_request(ep: Endpoint, body: dict[str, Any], models: dict[str, str]) -> BaseModel:
    """The validated request, or the APIError the online endpoint would answer with."""
    try:
        req = ep.schema.model_validate(body)
    except ValidationError as e:
        raise _invalid_body(e) from None
    if getattr(req, "stream", False):
        raise InvalidRequestError("stream is not supported in batch requests", param="stream")
    kind = models.get(req.model)
    if kind is None:
        raise NotFoundError(f"The model '{req.model}' does not exist", param="model", code="model_not_found")
    if kind != ep.model_type:
        raise InvalidRequestError(f"The model '{req.model}' is an {kind} model, not an {ep.model_type} model",
                                  param="model", code="wrong_model_type")
    return req
