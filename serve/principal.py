"""The calling principal, carried through the graph in the OpenTelemetry context as W3C baggage.

The ingress authenticates once (serve/auth.py) and puts the principal in the request's context with
`with_principal`; the handle wrappers of `serve.telemetry.propagation` carry that context into every deployment
call (they run whenever principals are configured, tracing or not), and the stores read it back with
`current_principal()`. A client's own `baggage` header can never set it: the ingress always overwrites both entries.
This module needs no config and no storage, so both can import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry import baggage, context

from serve.errors import PermissionDeniedError

DEFAULT_PRINCIPAL = "default"
ADMIN = "admin"
PRINCIPAL_KEY = "stackserve.principal"
ROLES_KEY = "stackserve.roles"


class RequestLimits(Protocol):
    """A principal's request limits (serve.config.RateLimitConfig), enforced by the ingress (serve/limits.py)."""

    @property
    def requests_per_minute(self) -> int | None: ...

    @property
    def max_concurrent_requests(self) -> int | None: ...


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str] = frozenset()
    limits: RequestLimits | None = field(default=None, compare=False)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


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
    """Refuse a registry change (models, shields, tool groups) to a principal without the admin role."""
    p = current_principal()
    if p is not None and not p.is_admin:
        raise PermissionDeniedError(f"{what} needs the admin role; principal '{p.name}' does not have it",
                                    code="permission_denied")
