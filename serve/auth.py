"""Who is calling: API keys -> principals.

With no keys configured every request is the shared principal `default` (an admin). `server.api_keys` are keys of
that same principal (a single-tenant server behind a key). `server.principals` make a shared server: each key maps
to its principal, every stored resource records its owner, and a principal sees only its own (others' are 404).
How the principal travels from the ingress to every deployment: serve/principal.py.
"""

from __future__ import annotations

import hmac

from serve.config import StackConfig
from serve.principal import (
    ADMIN,
    DEFAULT_PRINCIPAL,
    Principal,
    acting_as,
    current_principal,
    require_admin,
    with_principal,
)

# the principal context is re-exported: routers and deployments import it from here too
__all__ = ["ADMIN", "DEFAULT_PRINCIPAL", "OPEN_PATHS", "PLAYGROUND_PATH", "Authenticator", "Principal", "acting_as",
           "current_principal", "is_open_path", "require_admin", "with_principal"]

OPEN_PATHS = {"/v1/health", "/health", "/-/healthz", "/-/routes"}
PLAYGROUND_PATH = "/playground"  # static pages (serve/playground/): open; the API calls they make carry the key


def is_open_path(path: str) -> bool:
    """Paths served without an API key: health probes and the playground's static files."""
    return path in OPEN_PATHS or path == PLAYGROUND_PATH or path.startswith(PLAYGROUND_PATH + "/")


class Authenticator:
    """Maps `Authorization: Bearer <key>`, or `x-api-key: <key>` (as Anthropic's clients send it), to a principal.
    Every configured key is compared, in constant time, on every request (no early exit that would time which key
    matched); keys are never logged."""

    def __init__(self, config: StackConfig):
        self.default = Principal(DEFAULT_PRINCIPAL, frozenset({ADMIN}), config.server.limits)
        self._keys: list[tuple[bytes, Principal]] = [(k.encode(), self.default) for k in config.resolved_api_keys()]
        for p in config.server.principals:
            principal = Principal(p.name, frozenset(p.roles), p.limits or config.server.limits)
            self._keys += [(k.encode(), principal) for k in p.resolved_api_keys()]
        self.required = bool(self._keys)

    def authenticate(self, authorization: str | None, api_key: str | None = None) -> Principal | None:
        """The caller's principal; None when keys are required and the headers hold none of them. A bearer
        `authorization` is the key; without one, `api_key` (the x-api-key header) is."""
        if not self.required:
            return self.default
        if authorization and authorization.lower().startswith("bearer "):
            given = authorization[7:].strip().encode()
        elif api_key:
            given = api_key.strip().encode()
        else:
            return None
        found = None
        for key, principal in self._keys:
            if hmac.compare_digest(given, key):
                found = principal
        return found
