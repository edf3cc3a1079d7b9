"""API errors and the one mapper from exceptions to error bodies.

Providers and engines raise `APIError` subclasses (plain Python, picklable across DeploymentHandles); the
ingress turns every exception into `{"error": {"message", "type", "param", "code"}}` with the right status, or on
the Anthropic Messages API's routes into Anthropic's `{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("stackserve.errors")


class APIError(Exception):
    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def __reduce__(self):  # keep kwargs when pickled across Ray processes
        return (_rebuild, (type(self), self.message, self.param, self.code, self.headers))

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param,
                          "code": self.code}}


def _rebuild(cls, message, param, code, headers):
    return cls(message, param=param, code=code, headers=headers)


class InvalidRequestError(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(APIError):
    status_code = 401
    error_type = "authentication_error"


class PermissionDeniedError(APIError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(APIError):
    status_code = 404
    error_type = "not_found_error"


class ConflictError(APIError):
    status_code = 409
    error_type = "conflict_error"


class FailedDependencyError(APIError):
    """A server we depend on for this request (an MCP server, a search API) failed."""

    status_code = 424
    error_type = "failed_dependency_error"


class PayloadTooLargeError(APIError):
    status_code = 413
    error_type = "invalid_request_error"


class RateLimitError(APIError):
    status_code = 429
    error_type = "rate_limit_error"


class OverloadedError(APIError):
    status_code = 503
    error_type = "overloaded_error"


class RequestTimeoutError(APIError):
    """The server gave up on a request that had not started its response within `server.request_timeout_s`."""

    status_code = 504
    error_type = "timeout_error"


# Anthropic's error types for ours (its API has no param or code: they go into the message), and where its status
# differs: it answers overloaded with 529.
ANTHROPIC_TYPES = {"invalid_request_error": "invalid_request_error", "authentication_error": "authentication_error",
                   "permission_error": "permission_error", "not_found_error": "not_found_error",
                   "conflict_error": "conflict_error", "rate_limit_error": "rate_limit_error",
                   "overloaded_error": "overloaded_error", "timeout_error": "timeout_error"}
ANTHROPIC_STATUS = {"overloaded_error": 529}
ANTHROPIC_ROUTES = "/v1/messages"


def error_shape(scope: Mapping[str, Any]) -> str:
    """The error shape of the route an ASGI request scope is for: "anthropic" on the Messages API's routes
    (`/v1/messages`, `/v1/messages/count_tokens`), "openai" everywhere else."""
    path = scope.get("path", "").removeprefix(scope.get("root_path", ""))  # apps may sit under a prefix
    return "anthropic" if path == ANTHROPIC_ROUTES or path.startswith(ANTHROPIC_ROUTES + "/") else "openai"


def error_body(err: APIError, shape: str = "openai") -> tuple[int, dict[str, Any]]:
    """The status and JSON body of `err` in `shape` ("openai" or "anthropic")."""
    if shape != "anthropic":
        return err.status_code, err.envelope()
    kind = ANTHROPIC_TYPES.get(err.error_type, "api_error")
    message = f"{err.param}: {err.message}" if err.param and err.param not in err.message else err.message
    return ANTHROPIC_STATUS.get(kind, err.status_code), {"type": "error",
                                                         "error": {"type": kind, "message": message}}


def unwrap(exc: BaseException) -> BaseException:
    """The original exception behind Ray's wrappers (RayTaskError keeps it as `.cause`)."""
    seen = 0
    while seen < 5:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException) and type(exc).__name__.startswith(("RayTaskError", "RayActorError")):
            exc = cause
        elif isinstance(exc, APIError):
            return exc
        else:
            break
        seen += 1
    return exc


def to_api_error(exc: BaseException) -> APIError:
    """Map any exception to an APIError; unknown ones become a logged 500 without internals in the message."""
    exc = unwrap(exc)
    if isinstance(exc, APIError):
        return exc
    name = type(exc).__name__
    if name in ("BackPressureError",):
        return OverloadedError("the server is overloaded, retry later", code="overloaded",
                               headers={"Retry-After": "1"})
    if name in ("DeploymentUnavailableError", "RayActorError", "ActorDiedError", "ActorUnavailableError"):
        return OverloadedError("the model replica is unavailable, retry later", code="unavailable",
                               headers={"Retry-After": "1"})
    logger.exception("internal error", exc_info=exc)
    return APIError(f"internal server error ({name})", code="internal_error")
