"""The HTTP data plane the session's graph runs on (serve/data_plane.py): by default HAProxy in front of Ingress
replicas that serve HTTP themselves, and the graph reports what Serve really runs."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.conftest import SMOLLM2

pytestmark = pytest.mark.graph


def _listener(port: int) -> psutil.Process | None:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


def test_the_graph_reports_the_data_plane_it_runs(base_url):
    expected = os.environ.get("STACKSERVE_TEST_DATA_PLANE", "haproxy")
    graph = httpx.get(f"{base_url}/v1/stackserve/graph", timeout=30).json()
    assert graph["data_plane"] == expected
    listener = _listener(urlsplit(base_url).port)
    assert listener is not None
    if expected == "haproxy":  # HAProxy owns the public port; the Ingress replica listens on a port of its own
        assert listener.name() == "haproxy"
    else:
        assert listener.name() != "haproxy"


def test_streams_and_errors_pass_through_the_data_plane(base_url):
    body = {"model": SMOLLM2, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 3
    missing = httpx.post(f"{base_url}/v1/chat/completions", json={**body, "model": "nope"}, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"
