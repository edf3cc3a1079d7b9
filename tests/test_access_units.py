"""Access control pieces without Ray: keys -> principals, the principal in the context, owners in the stores,
the limiter, and the column migration that gives existing databases their owner column."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from serve.auth import DEFAULT_PRINCIPAL, Authenticator, Principal, acting_as, current_principal, require_admin
from serve.config import RateLimitConfig, parse_config
from serve.errors import PermissionDeniedError, RateLimitError
from serve.limits import PrincipalLimiter

MODELS = [{"model_id": "m", "source": "m"}]


def config(**server):
    return parse_config({"models": MODELS, "server": server})


def test_keys_map_to_principals():
    auth = Authenticator(config(api_keys=["k0"], principals=[
        {"name": "alice", "api_keys": ["ka"]}, {"name": "ops", "api_keys": ["ko"], "roles": ["admin"]}]))
    assert auth.authenticate("Bearer ka").name == "alice" and not auth.authenticate("Bearer ka").is_admin
    assert auth.authenticate("bearer ko").is_admin
    assert auth.authenticate("Bearer k0") == Principal(DEFAULT_PRINCIPAL, frozenset({"admin"}))
    for bad in (None, "", "Bearer", "Bearer nope", "Basic ka", "Bearer ka2"):
        assert auth.authenticate(bad) is None


def test_no_keys_means_everyone_is_the_default_admin():
    auth = Authenticator(config())
    assert not auth.required and auth.authenticate(None).name == DEFAULT_PRINCIPAL
    assert not config().access_control() and config(api_keys=["k"]).access_control() is False


def test_principal_keys_from_the_environment(monkeypatch):
    monkeypatch.setenv("TEAM_KEYS", "e1, e2")
    auth = Authenticator(config(principals=[{"name": "team", "api_keys_env": "TEAM_KEYS"}]))
    assert auth.authenticate("Bearer e2").name == "team"


@pytest.mark.parametrize("server", [
    {"principals": [{"name": "a", "api_keys": ["k"]}, {"name": "a", "api_keys": ["j"]}]},
    {"principals": [{"name": "default", "api_keys": ["k"]}]},
    {"principals": [{"name": "a", "api_keys": ["k"]}, {"name": "b", "api_keys": ["k"]}]},
    {"api_keys": ["k"], "principals": [{"name": "a", "api_keys": ["k"]}]},
    {"principals": [{"name": "has space", "api_keys": ["k"]}]},
    {"principals": [{"name": "a", "roles": ["root"]}]},
])
def test_bad_principal_configs_are_rejected(server):
    with pytest.raises(ValueError):
        config(**server)


def test_acting_as_and_require_admin():
    assert current_principal() is None
    require_admin("x")  # internal work (no principal) is not refused
    with acting_as("alice"):
        assert current_principal().name == "alice"
        with pytest.raises(PermissionDeniedError):
            require_admin("registering a shield")
    with acting_as("ops", frozenset({"admin"})):
        require_admin("x")
    assert current_principal() is None


def test_stores_record_and_filter_owners(tmp_path):
    from deployments.vector_io.files import FileService
    from serve.errors import NotFoundError
    from serve.storage import Database, LocalBlobStore

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    files = FileService(db, LocalBlobStore(tmp_path / "blobs"), max_bytes=1000)
    with acting_as("alice"):
        fid = files.create("a.txt", "assistants", b"alice")["id"]
    with acting_as("bob"):
        with pytest.raises(NotFoundError):
            files.get(fid)
        with pytest.raises(NotFoundError):
            files.delete(fid)
        assert files.list(None, None, 100, "asc")["data"] == []
    with acting_as("alice"):
        assert [f["id"] for f in files.list(None, None, 100, "asc")["data"]] == [fid]
    assert files.get(fid)["id"] == fid  # internal work sees every row


def test_limiter_rate_and_concurrency():
    now = [0.0]
    lim = PrincipalLimiter(clock=lambda: now[0])
    p = Principal("carol", limits=RateLimitConfig(requests_per_minute=2, max_concurrent_requests=5))
    assert lim.acquire(p) and lim.acquire(p)
    with pytest.raises(RateLimitError) as e:
        lim.acquire(p)
    assert e.value.status_code == 429 and e.value.headers["Retry-After"] == "30"
    now[0] += 30  # a token per 30 s
    assert lim.acquire(p)
    q = Principal("dave", limits=RateLimitConfig(max_concurrent_requests=1))
    assert lim.acquire(q)
    with pytest.raises(RateLimitError):
        lim.acquire(q)
    lim.release(q)
    assert lim.acquire(q)
    assert lim.acquire(Principal("free")) is False  # no limits: nothing to release


def test_existing_database_gains_the_owner_column(tmp_path):
    from serve.storage import Database

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as c:  # the files table as it was before owners
        c.exec_driver_sql("CREATE TABLE files (seq INTEGER PRIMARY KEY, id VARCHAR(64) UNIQUE NOT NULL, "
                          "filename VARCHAR(1024) NOT NULL, purpose VARCHAR(32) NOT NULL, bytes BIGINT NOT NULL, "
                          "created_at INTEGER NOT NULL)")
        c.exec_driver_sql("INSERT INTO files (id, filename, purpose, bytes, created_at) "
                          "VALUES ('file-old', 'a.txt', 'assistants', 1, 0)")
    engine.dispose()
    import deployments.vector_io.tables  # noqa: F401 - registers the files table

    db = Database(url)
    with db.connect() as c:
        assert c.exec_driver_sql("SELECT owner FROM files WHERE id = 'file-old'").scalar() == DEFAULT_PRINCIPAL


def test_request_timeout_cancels_the_handler_and_answers_504():
    import asyncio

    import httpx
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    from serve.limits import RequestTimeout

    seen: list[str] = []

    async def slow(request):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return JSONResponse({})

    async def stream(request):
        async def body():
            for i in range(4):
                await asyncio.sleep(0.2)
                yield f"{i}".encode()
        return StreamingResponse(body())

    async def fast(request):
        return JSONResponse({"ok": True})

    app = RequestTimeout(Starlette(routes=[Route("/slow", slow), Route("/stream", stream), Route("/fast", fast)]),
                         timeout_s=lambda: 0.3)

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.get("/slow")
            assert r.status_code == 504 and r.json()["error"]["code"] == "request_timeout"
            assert r.json()["error"]["type"] == "timeout_error"
            assert (await c.get("/stream")).text == "0123"  # started in time: runs past the timeout
            assert (await c.get("/fast")).json() == {"ok": True}

    asyncio.run(main())
    assert seen == ["cancelled"]


def test_check_config_never_prints_keys(tmp_path, capsys):
    import json

    from serve.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("models: [{model_id: m, source: m}]\nserver: {api_keys: [sk-secret-0], principals: "
                    "[{name: a, api_keys: [sk-secret-a, sk-secret-b]}]}\n")
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "sk-secret" not in out
    server = json.loads(out)["server"]
    assert server["api_keys"] == ["***"] and server["principals"][0]["api_keys"] == ["***", "***"]


class _FakeActorMethod:
    """Stands for a Ray actor method: `.remote(...)` runs the method and returns an awaitable of its answer."""

    def __init__(self, method):
        self.method = method

    def remote(self, *args):
        import asyncio

        return asyncio.ensure_future(self.method(*args))


class _FakeActor:
    def __init__(self, body):
        self.acquire = _FakeActorMethod(body.acquire)
        self.release = _FakeActorMethod(body.release)


def test_shared_limiter_counts_for_every_replica():
    """Two replicas' SharedLimiters over one LimiterActor: the rate and concurrency limits hold across both, a
    refusal is raised in the replica as the 429 it is, and unlimited principals cost no actor call."""
    import asyncio

    from serve.shared_limits import LimiterActor, SharedLimiter

    body = LimiterActor()
    a, b = (SharedLimiter("app", actor=_FakeActor(body)) for _ in range(2))
    metered = Principal("metered", limits=RateLimitConfig(requests_per_minute=3))
    single = Principal("single", limits=RateLimitConfig(max_concurrent_requests=1))
    free = Principal("free", limits=RateLimitConfig())

    async def go():
        assert [await a.acquire(metered), await b.acquire(metered), await a.acquire(metered)] == [True] * 3
        with pytest.raises(RateLimitError) as e:
            await b.acquire(metered)
        assert e.value.code == "rate_limit_exceeded" and int(e.value.headers["Retry-After"]) >= 1
        assert await a.acquire(single)
        with pytest.raises(RateLimitError):
            await b.acquire(single)  # the other replica sees the request in flight
        a.release(single)
        await asyncio.sleep(0)  # the release (not awaited by the caller) runs
        assert await b.acquire(single)
        assert await a.acquire(free) is False and "free" not in body.limiter._buckets

    asyncio.run(go())
