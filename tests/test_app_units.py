"""The ingress app's guard middleware and error handlers without Ray: a Stack with no models behind a TestClient."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serve import context
from serve.app import create_app
from serve.config import parse_config
from serve.context import Stack

KEY = {"Authorization": "Bearer k1"}


@pytest.fixture
def client(monkeypatch):
    cfg = parse_config({"models": [{"model_id": "m", "source": "/m"}],
                        "server": {"api_keys": ["k1"], "max_request_bytes": 1024,
                                   "limits": {"requests_per_minute": 3}}})
    monkeypatch.setattr(context, "_stack", Stack(cfg, models={}))
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def test_guard_rejects_before_routing(client):
    r = client.get("/v1/nope")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = client.post("/v1/chat/completions", content=b"x" * 2048, headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_error_handlers_answer_openai_envelopes(client):
    r = client.get("/v1/nope", headers=KEY)
    assert r.status_code == 404 and r.json()["error"]["message"] == "no route for GET /v1/nope"
    r = client.put("/v1/chat/completions", headers=KEY)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = client.post("/v1/chat/completions", content=b"{not json", headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_rate_limit_counts_every_authenticated_request(client):
    codes = [client.get("/v1/nope", headers=KEY).status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
