"""Local servers the tests call over loopback: an MCP server (streamable HTTP, the `mcp` SDK's MCPServer), a
Brave-style web search API, and the few Hugging Face hub routes huggingface_hub reads a dataset through. Each runs
under uvicorn on a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

CAPITALS = {"france": "Paris", "japan": "Tokyo", "kenya": "Nairobi", "peru": "Lima"}
SEARCH_KEY = "test-search-key"  # the server's, in the test graph's config
CLIENT_SEARCH_KEY = "client-search-key"  # a client's own, sent in X-LlamaStack-Provider-Data
PAGES = [
    {"title": "Honeybee waggle dance", "url": "https://bees.example/waggle",
     "description": "Forager honeybees perform a waggle dance to tell nestmates the direction of flowers."},
    {"title": "Volcano types", "url": "https://geo.example/volcanoes",
     "description": "Shield volcanoes are built by fluid basalt lava flows, like Mauna Loa in Hawaii."},
    {"title": "Sourdough starter", "url": "https://bread.example/starter",
     "description": "A sourdough starter is a culture of wild yeast and lactic acid bacteria fed flour and water."},
]


class LoopbackServer:
    """An ASGI app under uvicorn on 127.0.0.1:<free port>, in a daemon thread."""

    def __init__(self, app: Any):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the loopback test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.server.force_exit = True  # a request still in flight (a tool that naps) is not waited for
        self.thread.join(timeout=10)


def mcp_app(json_response: bool = True):
    """The test MCP server, on the `mcp` SDK's MCPServer (2.x, the client's SDK too)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    mcp = MCPServer("stackserve-test-tools", log_level="WARNING")

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool()
    def lookup_capital(country: str) -> str:
        """The capital city of a country."""
        return CAPITALS.get(country.strip().lower(), f"unknown country: {country}")

    @mcp.tool()
    def explode(reason: str) -> str:
        """Always fails (for error handling tests)."""
        # a tool's deliberate failure: its text reaches the client (any other exception stays on the server)
        raise ToolError(f"exploded: {reason}")

    return mcp.streamable_http_app(stateless_http=True, json_response=json_response)


def web_search_app(seen: list[dict[str, Any]]):
    """Brave's web search API shape: GET ?q=&count= with X-Subscription-Token -> {"web": {"results": [...]}}.
    Takes the server's key (SEARCH_KEY) and a client's own (CLIENT_SEARCH_KEY)."""
    from fastapi import FastAPI, Header, HTTPException

    app = FastAPI()

    @app.get("/res/v1/web/search")
    def search(q: str, count: int = 5, x_subscription_token: str | None = Header(default=None)):
        seen.append({"q": q, "count": count, "token": x_subscription_token})
        if x_subscription_token not in (SEARCH_KEY, CLIENT_SEARCH_KEY):
            raise HTTPException(401, "bad token")
        words = {w.strip(".,?!").lower() for w in q.split()}
        ranked = sorted(PAGES, key=lambda p: -len(words & set(f"{p['title']} {p['description']}".lower().split())))
        return {"web": {"results": ranked[:count]}}

    return app


def cache_hf_dataset(cache: Path, repo: str, files: dict[str, bytes], sha: str = "a" * 40) -> Path:
    """A dataset snapshot laid out as huggingface_hub caches it (refs/main -> snapshots/<sha>/...): what a server
    with no network finds when the dataset was downloaded before."""
    folder = cache / f"datasets--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(sha)
    for name, data in files.items():
        path = folder / "snapshots" / sha / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def hf_hub_app(datasets: dict[str, dict[str, bytes]], sha: str = "c" * 40):
    """The Hugging Face hub routes huggingface_hub 2.x uses to download dataset files: repo info, the file tree,
    and resolve (HEAD and GET). `datasets`: repo id -> {path: bytes}, all at commit `sha`."""
    import hashlib

    from fastapi import FastAPI, HTTPException, Response

    app = FastAPI()

    def files(owner: str, name: str) -> dict[str, bytes]:
        if f"{owner}/{name}" not in datasets:
            raise HTTPException(404, "Repository not found", headers={"X-Error-Code": "RepoNotFound"})
        return datasets[f"{owner}/{name}"]

    @app.get("/api/datasets/{owner}/{name}")
    @app.get("/api/datasets/{owner}/{name}/revision/{rev}")
    def info(owner: str, name: str, rev: str = "main"):
        return {"id": f"{owner}/{name}", "sha": sha, "siblings": [{"rfilename": f} for f in files(owner, name)]}

    @app.get("/api/datasets/{owner}/{name}/tree/{rev}")
    def tree(owner: str, name: str, rev: str):
        return [{"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                for p, d in files(owner, name).items()]

    @app.api_route("/datasets/{owner}/{name}/resolve/{rev}/{path:path}", methods=["GET", "HEAD"])
    def resolve(owner: str, name: str, rev: str, path: str):
        data = files(owner, name)[path]
        return Response(data, headers={"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'})

    return app


if __name__ == "__main__":  # python -m tests.tool_servers [PORT]: the test MCP server, for trying the examples
    import sys

    import uvicorn

    uvicorn.run(mcp_app(), host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 9000)
