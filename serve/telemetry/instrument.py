"""`@instrument_deployment`: the one hook every deployment class gets (under `@serve.deployment`).

The graph builder binds each deployment with `telemetry=TelemetrySettings(...)`. The decorator takes that keyword
off the constructor, sets the replica process up (tracing, metrics, log format), and when tracing is on wraps the
handles the constructor receives (so calls carry the trace context) and the instance's public async methods (so
they run under the caller's context). The same context carries the calling principal (serve/auth.py), so with
access control on the wrappers are there with tracing off too. With both off nothing is wrapped: calls cost exactly
what they did.
"""

from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass
from typing import Any

from serve.config import StackConfig, TelemetryConfig
from serve.telemetry import tracing
from serve.telemetry.logs import setup_json_logs
from serve.telemetry.metrics import setup_metrics
from serve.telemetry.propagation import accepting_trace_context, traced_handles

# methods Ray Serve calls itself, never through a handle
SERVE_HOOKS = {"check_health", "reconfigure", "record_routing_stats", "record_autoscaling_stats",
               "record_replica_metadata"}


@dataclass(frozen=True)
class TelemetrySettings:
    """What each replica needs to set itself up: the config section and the span store's resolved URL."""

    config: TelemetryConfig
    store_url: str
    # who is calling (serve/auth.py) travels in the same context: with access control on, calls carry it always
    propagate: bool = False

    @classmethod
    def from_stack(cls, config: StackConfig) -> TelemetrySettings:
        return cls(config.telemetry, config.telemetry_store_url(), config.access_control())


def replica_identity(default: str) -> dict[str, str]:
    """Deployment, app and replica ids of this process (from Ray Serve when inside a replica)."""
    try:
        from ray import serve

        ctx = serve.get_replica_context()
        return {"stackserve.deployment": ctx.deployment, "stackserve.app": ctx.app_name,
                "service.instance.id": ctx.replica_id.unique_id}
    except Exception:  # outside a replica (unit tests, local tools)
        return {"stackserve.deployment": default, "service.instance.id": str(os.getpid())}


def configure_process(settings: TelemetrySettings, component: str) -> None:
    cfg = settings.config
    identity = replica_identity(component)
    deployment = identity["stackserve.deployment"]
    if cfg.metrics:
        setup_metrics(deployment)
    if cfg.log_format == "json":
        setup_json_logs(deployment)
    tracing.setup_tracing(cfg, settings.store_url, identity)


def _wants_trace_context(name: str, fn: Any) -> bool:
    if name.startswith("_") or name in SERVE_HOOKS or hasattr(fn, "set_max_batch_size"):  # @serve.batch: internal
        return False
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def instrument_deployment(cls: type) -> type:
    init = cls.__init__

    def prepare(self, args: tuple, kwargs: dict) -> tuple[tuple, dict, bool]:
        settings = kwargs.pop("telemetry", None)
        if settings is not None:
            configure_process(settings, cls.__name__)
        propagate = tracing.enabled() or (settings is not None and settings.propagate)
        if propagate:
            args = tuple(traced_handles(a) for a in args)
            kwargs = {k: traced_handles(v) for k, v in kwargs.items()}
        return args, kwargs, propagate

    def accept(self, propagate: bool) -> None:
        if not propagate:
            return
        for name, fn in inspect.getmembers(type(self), inspect.isfunction):
            if _wants_trace_context(name, fn):
                setattr(self, name, accepting_trace_context(getattr(self, name)))

    if inspect.iscoroutinefunction(init):
        @functools.wraps(init)
        async def __init__(self, *args, **kwargs):
            args, kwargs, propagate = prepare(self, args, kwargs)
            await init(self, *args, **kwargs)
            accept(self, propagate)
    else:
        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            args, kwargs, propagate = prepare(self, args, kwargs)
            init(self, *args, **kwargs)
            accept(self, propagate)

    cls.__init__ = __init__
    return cls
