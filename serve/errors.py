"""API errors and the one mapper from exceptions to the OpenAI error envelope.

Providers and engines raise `APIError` subclasses (plain Python, picklable across DeploymentHandles); the
ingress turns every exception into `{"error": {"message", "type", "param", "code"}}` with the right status.
"""

from __future__ import annotations

import logging
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
