"""The HTTP server: address, request bounds, API keys and principals with their rate limits, and SQL storage."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator

from serve.config.base import _Strict


class StorageConfig(_Strict):
    url: str | None = None  # SQLAlchemy URL; default sqlite:///<data_dir>/stackserve.db
    # where file and dataset bytes live (serve/storage/blob_url.py): a directory (default: data_dir), `sql` (the
    # database above), or an fsspec URL such as s3://bucket/prefix
    blob_url: str | None = None


class RateLimitConfig(_Strict):
    """Per principal: requests per minute (token bucket) and requests in flight; counted per ingress replica or
    across them (`server.limits_scope`)."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    max_concurrent_requests: int | None = Field(default=None, ge=1)


class PrincipalConfig(_Strict):
    """A user or service of a shared server: its API keys, roles (`admin`: registry changes) and limits."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@:-]{1,128}$")
    api_keys: list[str] = Field(default_factory=list)
    api_keys_env: str | None = None  # also the comma-separated keys in this environment variable
    roles: list[Literal["admin"]] = Field(default_factory=list)
    limits: RateLimitConfig | None = None  # overrides server.limits for this principal

    def resolved_api_keys(self) -> list[str]:
        env = os.environ.get(self.api_keys_env, "") if self.api_keys_env else ""
        return [*self.api_keys, *(k.strip() for k in env.split(",") if k.strip())]


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8321, ge=1, le=65535)
    # haproxy: Serve's high-throughput mode (HAProxy -> Ingress replicas serving HTTP themselves); serve_proxy:
    # Serve's Python HTTP proxy. Applies where stackserve starts Ray itself (serve/data_plane.py)
    data_plane: Literal["haproxy", "serve_proxy"] = "haproxy"
    # keys of the one shared principal, "default" (an admin): a single-tenant server behind a key
    api_keys: list[str] = Field(default_factory=list)
    # a shared server: each key maps to its principal, who sees only the resources it created
    principals: list[PrincipalConfig] = Field(default_factory=list)
    limits: RateLimitConfig = Field(default_factory=RateLimitConfig)  # every principal's default limits
    # replica: each ingress replica counts on its own (N replicas admit up to N times the limits); shared: one
    # limiter actor per application counts for all of them (one actor round trip per limited request)
    limits_scope: Literal["replica", "shared"] = "replica"
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # a request whose response has not started by then is cancelled and answered 504 (streams, once started, run on)
    request_timeout_s: float | None = Field(default=None, gt=0)
    # /v1/providers and /v1/health: a deployment that does not report its health within this is an Error
    health_timeout_s: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _unique_principals(self) -> ServerConfig:
        names = [p.name for p in self.principals]
        if len(set(names)) != len(names) or "default" in names:
            raise ValueError("server.principals: names must be unique and not 'default' (the shared principal)")
        keys = [k for p in self.principals for k in p.api_keys] + self.api_keys
        if len(set(keys)) != len(keys):
            raise ValueError("server: an API key may belong to one principal only")
        return self
