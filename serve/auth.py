"""Optional API-key auth: with keys configured, every route but health needs `Authorization: Bearer <key>`."""

from __future__ import annotations

import hmac

OPEN_PATHS = {"/v1/health", "/health", "/-/healthz", "/-/routes"}


def key_is_valid(authorization: str | None, keys: list[str]) -> bool:
    if not authorization or not authorization.lower().startswith("bearer "):
        return False
    given = authorization[7:].strip().encode()
    # constant-time compare against every key, without stopping at the first match
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(given, k.encode())
    return ok
