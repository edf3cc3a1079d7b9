"""The FastAPI app behind the ingress deployment: middleware, the one error mapper, routers under both prefixes."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import context
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from serve.auth import PLAYGROUND_PATH, is_open_path
from serve.context import get_stack
from serve.errors import (
    APIError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    error_body,
    error_shape,
    to_api_error,
)
from serve.limits import RequestTimeout
from serve.principal import with_principal
from serve.telemetry.http import TracingMiddleware, trace_id_header

logger = logging.getLogger("stackserve.ingress")

OPENAI_PREFIXES = ("/v1", "/v1/openai/v1")


def error_response(err: APIError, request: Request) -> JSONResponse:
    """The one error mapper's answer: `err` in the shape of the route `request` is for (OpenAI's envelope, or
    Anthropic's on the Messages API)."""
    status, body = error_body(err, error_shape(request.scope))
    return JSONResponse(body, status_code=status, headers=err.headers or None)


def _validation_error(exc: RequestValidationError) -> InvalidRequestError:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return InvalidRequestError(f"could not parse the JSON body of your request: {first.get('msg')}",
                                   code="invalid_json")
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        msg = "is a required property"
    detail = f"'{param}': {msg}" if param else msg
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return InvalidRequestError(f"Invalid request: {detail}{more}", param=param, code="invalid_value")


def _too_large(request: Request, path: str, config) -> APIError | None:
    length = request.headers.get("content-length")
    limit = config.server.max_request_bytes
    if path.endswith("/files") and request.method == "POST" and config.vector_io is not None:
        limit = max(limit, config.vector_io.max_file_bytes + 65536)  # the file limit governs uploads
    if length and length.isdigit() and int(length) > limit:
        return PayloadTooLargeError(f"request body of {length} bytes exceeds the limit of {limit}",
                                    code="request_too_large")
    return None


async def _released(body, release):
    """A response body that calls `release` once it has been sent (or abandoned): a stream counts till its end."""
    try:
        async for chunk in body:
            yield chunk
    finally:
        release()


async def guard(request: Request, call_next):
    """Authenticate, bound the body size, count the request against its principal's limits, and carry the
    principal into every deployment call the request makes."""
    stack = get_stack()
    path = request.url.path.removeprefix(request.scope.get("root_path", ""))  # apps may sit under a prefix
    if is_open_path(path):
        return await call_next(request)
    principal = stack.authenticator.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))
    if principal is None:
        return error_response(AuthenticationError(
            "Invalid or missing API key. Pass 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
            code="invalid_api_key"), request)
    rejected = _too_large(request, path, stack.config)
    if rejected is not None:
        return error_response(rejected, request)
    limiter = stack.limiter
    try:
        counted = await limiter.acquire(principal)
    except APIError as e:
        return error_response(e, request)
    # the principal rides in the context into every deployment call (only with access control on; a client's
    # own `baggage` header never names one)
    token = context.attach(with_principal(principal if stack.config.access_control() else None))
    try:
        response = await call_next(request)
    except BaseException:
        if counted:
            limiter.release(principal)
        raise
    finally:
        context.detach(token)
    if counted:
        response.body_iterator = _released(response.body_iterator, lambda: limiter.release(principal))
    return response


async def on_api_error(request: Request, exc: APIError) -> JSONResponse:
    return error_response(to_api_error(exc), request)  # unwraps Ray's RayTaskError(APIError) copies


async def on_invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(_validation_error(exc), request)


async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        return error_response(NotFoundError(f"no route for {request.method} {request.url.path}", code="not_found"),
                              request)
    if exc.status_code == 405:
        err = InvalidRequestError(f"method {request.method} is not allowed on {request.url.path}",
                                  code="method_not_allowed")
        err.status_code = 405
        return error_response(err, request)
    err = APIError(str(exc.detail))
    err.status_code = exc.status_code
    return error_response(err, request)


async def on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    response = error_response(to_api_error(exc), request)
    response.headers.update(trace_id_header(request.scope))
    return response


def create_app() -> FastAPI:
    from serve.routers import (
        agents,
        batches,
        datasets,
        embeddings,
        files,
        graph,
        inference,
        inference_llama,
        messages,
        meta,
        models,
        prompts,
        responses,
        safety,
        telemetry,
        tools,
        vector_io_llama,
        vector_stores,
    )

    app = FastAPI(title="stackserve", version=meta.VERSION, docs_url="/docs", openapi_url="/openapi.json")
    # inside the guard below (middleware added later wraps what was added before)
    app.add_middleware(RequestTimeout, timeout_s=lambda: get_stack().config.server.request_timeout_s)
    app.middleware("http")(guard)
    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected_error)

    for prefix in OPENAI_PREFIXES:
        for family in (models, inference, embeddings, files, vector_stores, responses, batches):
            app.include_router(family.router, prefix=prefix)
        app.include_router(safety.openai_router, prefix=prefix)
    app.include_router(meta.router, prefix="/v1")
    app.include_router(inference_llama.router, prefix="/v1/inference")
    app.include_router(messages.router, prefix="/v1")  # Anthropic's SDK calls {base_url}/v1/messages
    app.include_router(safety.router, prefix="/v1")
    app.include_router(vector_io_llama.router, prefix="/v1")
    app.include_router(tools.router, prefix="/v1")
    app.include_router(agents.router, prefix="/v1")
    app.include_router(prompts.router, prefix="/v1")
    for prefix in ("/v1", "/v1beta"):
        app.include_router(datasets.router, prefix=prefix)
    app.include_router(telemetry.router, prefix="/v1")
    app.include_router(graph.router, prefix="/v1")
    # the playground's static pages (docs/playground.md), outside the OpenAPI schema
    app.mount(PLAYGROUND_PATH, StaticFiles(directory=Path(__file__).parent / "playground", html=True))
    app.add_middleware(TracingMiddleware)  # outermost: rejected requests (401, 413) are traced too
    return app
