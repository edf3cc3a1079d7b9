"""Who is calling: API keys -> principals, and the principal carried to every deployment.

With no keys configured every request is the shared principal `default` (an admin). `server.api_keys` are keys of
that same principal (a single-tenant server behind a key). `server.principals` make a shared server: each key maps
to its principal, every stored resource records its owner, and a principal sees only its own (others' are 404).

The ingress authenticates once and puts the principal in the request's OpenTelemetry context as W3C baggage; the
handle wrappers of `serve.telemetry.propagation` carry that context into every deployment call (they run whenever
principals are configured, tracing or not), and the stores read it back with `current_principal()`. A client's own
`baggage` header can never set it: the ingress always overwrites both entries.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry import baggage, context

from serve.config import RateLimitConfig, StackConfig
from serve.errors import PermissionDeniedError

OPEN_PATHS = {"/v1/health", "/health", "/-/healthz", "/-/routes"}
DEFAULT_PRINCIPAL = "default"
ADMIN = "admin"
PRINCIPAL_KEY = "stackserve.principal"
ROLES_KEY = "stackserve.roles"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str] = frozenset()
    limits: RateLimitConfig | None = field(default=None, compare=False)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


class Authenticator:
    """Maps `Authorization: Bearer <key>` to a principal. Every configured key is compared, in constant time, on
    every request (no early exit that would time which key matched); keys are never logged."""

    def __init__(self, config: StackConfig):
        self.default = Principal(DEFAULT_PRINCIPAL, frozenset({ADMIN}), config.server.limits)
        self._keys: list[tuple[bytes, Principal]] = [(k.encode(), self.default) for k in config.resolved_api_keys()]
        for p in config.server.principals:
            principal = Principal(p.name, frozenset(p.roles), p.limits or config.server.limits)
            self._keys += [(k.encode(), principal) for k in p.resolved_api_keys()]
        self.required = bool(self._keys)

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller's principal; None when keys are required and the header holds none of them."""
        if not self.required:
            return self.default
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        given = authorization[7:].strip().encode()
        found = None
        for key, principal in self._keys:
            if hmac.compare_digest(given, key):
                found = principal
        return found


def with_principal(principal: Principal | None, ctx: context.Context | None = None) -> context.Context:
    """`ctx` (default: the current context) carrying `principal`; None removes any (a client's own baggage)."""
    if principal is None:
        return baggage.remove_baggage(ROLES_KEY, baggage.remove_baggage(PRINCIPAL_KEY, ctx))
    ctx = baggage.set_baggage(PRINCIPAL_KEY, principal.name, ctx)
    return baggage.set_baggage(ROLES_KEY, ",".join(sorted(principal.roles)), ctx)


def current_principal() -> Principal | None:
    """The principal of the request being served; None in internal work that runs for nobody in particular."""
    name = baggage.get_baggage(PRINCIPAL_KEY)
    if not name:
        return None
    roles = str(baggage.get_baggage(ROLES_KEY) or "")
    return Principal(str(name), frozenset(r for r in roles.split(",") if r))


@contextmanager
def acting_as(owner: str | None, roles: frozenset[str] = frozenset()) -> Iterator[None]:
    """Run background work (a resumed batch job) as the principal who owns it."""
    if owner is None:
        yield
        return
    token = context.attach(with_principal(Principal(owner, roles)))
    try:
        yield
    finally:
        context.detach(token)


def require_admin(what: str) -> None:
    p = current_principal()
    if p is not None and not p.is_admin:
        raise PermissionDeniedError(f"{what} needs the admin role; principal '{p.name}' does not have it",
                                    code="permission_denied")
