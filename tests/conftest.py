"""Shared fixtures. Graph tests share one Ray + Serve per session: the real SmolLM2 graph at `/`, a second
application with API keys on a tiny random model at `/secure`, and (where vLLM is installed) a third at `/vllm`
serving both models on the vLLM engine next to one on meta-reference.

The engine behaviour suite runs once per engine in STACKSERVE_TEST_ENGINES (default: meta-reference,vllm); the
vllm runs skip where vLLM is not installed (`make test` runs them in .venv-vllm, see the Makefile)."""

from __future__ import annotations

import importlib.util
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tool_servers import SEARCH_KEY, LoopbackServer, mcp_app, web_search_app

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
TINY = "tiny-random-llama"
TINY_META = "tiny-random-llama-meta"  # the tiny model on meta-reference inside the vLLM application
API_KEY = "sk-test-key"
ENGINES = [e for e in os.environ.get("STACKSERVE_TEST_ENGINES", "meta-reference,vllm").split(",") if e]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def model_cache_dir() -> Path:
    return Path(os.environ.get("STACKSERVE_MODEL_CACHE", "~/.cache/stackserve/models")).expanduser()


@pytest.fixture(scope="session")
def smollm2_dir(model_cache_dir) -> Path:
    from deployments.inference.model_store import resolve_checkpoint

    return resolve_checkpoint(SMOLLM2, model_cache_dir)


@pytest.fixture(scope="session")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A randomly initialised 2-layer Llama (head_dim 64) with SmolLM2's tokenizer: noise text, real machinery."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=2048,
                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIAS = "all-MiniLM-L6-v2"  # as Llama Stack's distributions name it: an alias of MINILM in the main graph


MAIN_MAX_FILE_BYTES = 8 << 20  # the main graph's upload limit: room for a multi-MiB streamed round trip

GUARD_SCRIPTED = "guard-scripted"
GUARD_TINY = "guard-tiny-random"
# a question the scripted model answers with two tool calls at once (parallel_tool_calls)
PARALLEL_ASK = "Weather in Oslo and in Bergen, both at once?"
PARALLEL_CALLS = ('[{"name": "get_weather", "parameters": {"city": "Oslo"}}, '
                  '{"name": "get_weather", "parameters": {"city": "Bergen"}}]')
# the scripted guard's verdicts (tests/scripted_engine.py), by what the prompt holds; it ignores the shield's verdict
# grammar, so an unparseable verdict ("maybe?") can reach the shield
GUARD_SCRIPT = [{"if_contains": " kill ", "reply": "unsafe\nS1,S10"}, {"if_contains": "gibberish", "reply": "maybe?"},
                {"if_contains": PARALLEL_ASK, "reply": PARALLEL_CALLS}, {"reply": "safe"}]


def graph_config(model_cache_dir: Path, tiny_model_dir: Path | None = None, api_keys: list[str] | None = None,
                 data_dir: Path | None = None, prompt_guard_dir: Path | None = None, secure: bool = False,
                 web_search_url: str | None = None, engine: str = "meta-reference"):
    """The test graphs. engine "vllm": SmolLM2 and the tiny model both on vLLM (same sizes as on meta-reference),
    plus the tiny model on meta-reference as TINY_META: several models, two engines, one graph."""
    from serve.config import parse_config

    models = [{  # its engine in the Ingress, as in configs/local.yaml; the other models on LLM deployments of their own
        "model_id": SMOLLM2, "source": SMOLLM2, "in_ingress": True,
        "engine": {"max_num_seqs": 16, "max_model_len": 2048, "kv_cache_tokens": 16384, "max_queued_requests": 64},
        "deployment": {"max_ongoing_requests": 100, "ray_actor_options": {"num_cpus": 0.5}},
    }]
    if secure or engine == "vllm":
        models = [] if secure else models
        models += [{
            "model_id": TINY, "source": str(tiny_model_dir),
            # small on purpose: 2 running + 2 queued, so the queue bound is testable
            "engine": {"max_num_seqs": 2, "max_model_len": 1024, "kv_cache_tokens": 8192, "max_queued_requests": 2},
            "deployment": {"ray_actor_options": {"num_cpus": 0.1}},
        }]
    extra = {}
    if data_dir is not None:
        # The main graph also serves embeddings, vector IO (two VectorIO replicas) and safety: Llama Guard shields on
        # a scripted engine (the verdict is the variable under test; `main_graph` injects it) and on the tiny random
        # model (the verdict must still parse), Prompt Guard on a tiny random classifier, and the code scanner.
        models += [
            {"model_id": GUARD_SCRIPTED, "source": SMOLLM2, "provider_id": "scripted",
             "engine": {"max_num_seqs": 4, "kv_cache_tokens": 4096},
             "deployment": {"ray_actor_options": {"num_cpus": 0.05}}},
            {"model_id": GUARD_TINY, "source": str(tiny_model_dir),
             "engine": {"max_num_seqs": 4, "max_model_len": 2048, "kv_cache_tokens": 8192},
             "deployment": {"ray_actor_options": {"num_cpus": 0.05}}},
        ]
        extra = {
            "agents": {"deployment": {"ray_actor_options": {"num_cpus": 0.1}}, "lease_timeout_s": 3,
                       "web_search": {"provider": "brave", "endpoint": web_search_url, "api_key": SEARCH_KEY}},
            "safety": {"shields": [
                {"shield_id": "llama-guard", "provider_id": "llama-guard", "provider_shield_id": GUARD_SCRIPTED},
                {"shield_id": "llama-guard-no-violence", "provider_id": "llama-guard",
                 "provider_shield_id": GUARD_SCRIPTED, "params": {"excluded_categories": ["S1"]}},
                {"shield_id": "llama-guard-random", "provider_id": "llama-guard", "provider_shield_id": GUARD_TINY},
                {"shield_id": "prompt-guard", "provider_id": "prompt-guard",
                 "provider_shield_id": str(prompt_guard_dir), "params": {"mode": "injection", "threshold": 0.0}},
                {"shield_id": "code-scanner", "provider_id": "code-scanner"},
            ], "deployment": {"ray_actor_options": {"num_cpus": 0.1}}},
            "data_dir": str(data_dir),
            "telemetry": {"tracing": True, "log_format": "json"},  # spans in the data dir's span store
            "embedding_models": [{"model_id": MINILM, "source": MINILM, "aliases": [MINILM_ALIAS],
                                  "deployment": {"ray_actor_options": {"num_cpus": 0.2}}}],
            "vector_io": {"max_file_bytes": MAIN_MAX_FILE_BYTES, "ingest_lease_timeout_s": 3,
                          "deployment": {"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.1}}},
            # huggingface:// sources from a cache under the data dir; the "hub" is a port nothing listens on
            "datasetio": {"deployment": {"ray_actor_options": {"num_cpus": 0.05}},
                          "huggingface": {"cache_dir": str(data_dir / "hf-cache"),
                                          "endpoint": f"http://127.0.0.1:{_free_port()}"}},
            # a short lease, so the restart test sees a killed replica's job resumed within seconds
            "batches": {"lines_per_batch": 2, "lease_timeout_s": 3,
                        "deployment": {"ray_actor_options": {"num_cpus": 0.05}}},
        }
    if engine == "vllm":
        models = [_on_vllm(m) for m in models] + [
            {"model_id": TINY_META, "source": str(tiny_model_dir),
             "engine": {"max_num_seqs": 2, "max_model_len": 1024, "kv_cache_tokens": 4096},
             "deployment": {"ray_actor_options": {"num_cpus": 0.05}}}]
    return parse_config({
        "model_cache_dir": str(model_cache_dir),
        "server": {"api_keys": api_keys or []},
        "ingress": {"max_ongoing_requests": 200, "ray_actor_options": {"num_cpus": 0.1}},
        "models": models,
        **extra,
    })


@pytest.fixture(scope="session")
def metrics_port() -> int:
    """Ray's Prometheus endpoint: http://127.0.0.1:{metrics_port}/metrics"""
    return _free_port()


@pytest.fixture(scope="session")
def ray_serve(metrics_port):
    import ray
    from ray import serve

    from serve.data_plane import use_data_plane

    port = _free_port()
    use_data_plane(os.environ.get("STACKSERVE_TEST_DATA_PLANE", "haproxy"))
    # Serve keeps a stopping Ingress replica reachable 30 s so that load balancers deregister it first; HAProxy here
    # is one local process, told at once. Every app the suite deletes paid those 30 s (4 apps: 2 min of CI).
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", _metrics_export_port=metrics_port,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres_databases():
    """A throwaway PostgreSQL server for the session (tests/pg_server.py), handing out fresh databases. Skips when
    PostgreSQL is missing, unless CI is set: then it fails."""
    from tests.pg_server import DatabaseFactory, start_for_tests

    server = start_for_tests()
    try:
        factory = DatabaseFactory(server)
        yield factory
        factory.admin.dispose()
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """An empty database on each storage backend: run a store's tests against both with this fixture."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'stackserve.db'}"
        return
    factory = request.getfixturevalue("postgres_databases")
    url = factory.create()
    yield url
    factory.drop(url)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stackserve-data")


@pytest.fixture(scope="session")
def prompt_guard_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised BERT classifier with Prompt Guard's labels (and MiniLM's tokenizer)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from deployments.vector_io.embedding_model import resolve_embedding_source

    out = tmp_path_factory.mktemp("prompt-guard")
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(resolve_embedding_source("all-MiniLM-L6-v2"))
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, num_labels=3, id2label={0: "BENIGN", 1: "INJECTION", 2: "JAILBREAK"},
                     label2id={"BENIGN": 0, "INJECTION": 1, "JAILBREAK": 2})
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def mcp_server_url() -> str:
    """A local MCP server (streamable HTTP) with tools add, lookup_capital and explode."""
    with LoopbackServer(mcp_app()) as srv:
        yield f"http://127.0.0.1:{srv.port}/mcp"


@pytest.fixture(scope="session")
def web_search_requests() -> list:
    return []  # what the fake web search API received


@pytest.fixture(scope="session")
def web_search_url(web_search_requests) -> str:
    """A local Brave-style web search API (key SEARCH_KEY)."""
    with LoopbackServer(web_search_app(web_search_requests)) as srv:
        yield f"http://127.0.0.1:{srv.port}/res/v1/web/search"


@pytest.fixture(scope="session")
def main_config(model_cache_dir, data_dir, tiny_model_dir, prompt_guard_dir, web_search_url):
    return graph_config(model_cache_dir, tiny_model_dir=tiny_model_dir, data_dir=data_dir,
                        prompt_guard_dir=prompt_guard_dir, web_search_url=web_search_url)


def main_graph(config):
    """The main graph's application: `config` with the scripted engine injected for GUARD_SCRIPTED."""
    from serve.graph import build_graph
    from tests.scripted_engine import ScriptedEngineFactory, shipped

    guard = ScriptedEngineFactory(GUARD_SCRIPT, constrained=False)
    return build_graph(config, engines={GUARD_SCRIPTED: shipped(guard)})


@pytest.fixture(scope="session")
def base_url(ray_serve, main_config, smollm2_dir) -> str:
    """The main graph served at the root: ingress -> SmolLM2 LLM deployment, MiniLM embeddings, 2x VectorIO."""
    from ray import serve

    serve.run(main_graph(main_config), name="stackserve", route_prefix="/")
    return ray_serve


@pytest.fixture(scope="session")
def secure_url(ray_serve, model_cache_dir, tiny_model_dir) -> str:
    """A second application with API keys on, serving the tiny random model under /secure."""
    from ray import serve

    from serve.graph import build_graph

    cfg = graph_config(model_cache_dir, tiny_model_dir, api_keys=[API_KEY], secure=True)
    serve.run(build_graph(cfg), name="secure", route_prefix="/secure")
    return f"{ray_serve}/secure"


TENANT_KEYS = {"alice": "sk-alice", "bob": "sk-bob", "root": "sk-root", "carol": "sk-carol", "dave": "sk-dave"}


def tenants_config(model_cache_dir: Path, tiny_model_dir: Path, data_dir: Path, database_url: str | None = None):
    """A shared server: principals alice and bob (users), root (admin), carol (3 requests a minute) and dave (one
    request at a time), over every stateful service, with the tiny model; on PostgreSQL when given its URL, with
    file and dataset bytes in that database too (blob_url: sql, as the GPU configs run)."""
    from serve.config import parse_config

    light = {"ray_actor_options": {"num_cpus": 0.01}}
    principals = [{"name": n, "api_keys": [k]} for n, k in TENANT_KEYS.items()]
    principals[2]["roles"] = ["admin"]
    principals[3]["limits"] = {"requests_per_minute": 3}
    principals[4]["limits"] = {"max_concurrent_requests": 1}
    return parse_config({
        "model_cache_dir": str(model_cache_dir), "data_dir": str(data_dir),
        "storage": {"url": database_url, "blob_url": "sql" if database_url else None},
        "server": {"principals": principals},
        "ingress": light,
        "models": [{"model_id": TINY, "source": str(tiny_model_dir), "deployment": light,
                    "engine": {"max_num_seqs": 4, "max_model_len": 1024, "kv_cache_tokens": 8192}}],
        "embedding_models": [{"model_id": MINILM, "source": MINILM, "deployment": light}],
        "vector_io": {"deployment": light}, "agents": {"deployment": light}, "datasetio": {"deployment": light},
        "batches": {"lines_per_batch": 2, "deployment": light},
        "safety": {"shields": [{"shield_id": "code-scanner", "provider_id": "code-scanner"}], "deployment": light},
    })


@pytest.fixture(scope="session")
def tenants_url(ray_serve, model_cache_dir, tiny_model_dir, tmp_path_factory, postgres_databases) -> str:
    """The shared-server application (`tenants_config`) under /tenants, on PostgreSQL: the main graph runs the API
    suites on sqlite, this one runs the access-control suite (every stateful service) on PostgreSQL."""
    from ray import serve

    from serve.graph import build_graph

    cfg = tenants_config(model_cache_dir, tiny_model_dir, tmp_path_factory.mktemp("tenants-data"),
                         postgres_databases.create())
    serve.run(build_graph(cfg), name="tenants", route_prefix="/tenants")
    return f"{ray_serve}/tenants"


def _on_vllm(model: dict) -> dict:
    # enforce_eager: no torch.compile on a 2-core box (minutes of start-up for nothing in tests)
    return {**model, "engine": {**model["engine"], "type": "vllm", "enforce_eager": True}}


@pytest.fixture(scope="session")
def vllm_url(ray_serve, model_cache_dir, tiny_model_dir, smollm2_dir) -> str:
    """The vLLM application, with API keys on, under /vllm."""
    from ray import serve

    from serve.graph import build_graph

    cfg = graph_config(model_cache_dir, tiny_model_dir, api_keys=[API_KEY], engine="vllm")
    serve.run(build_graph(cfg), name="vllm", route_prefix="/vllm")
    return f"{ray_serve}/vllm"


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


@dataclass
class EngineTarget:
    """Where one engine serves SmolLM2 and the tiny model: base URLs and Serve application names."""

    engine: str
    smol_url: str
    smol_app: str
    tiny_url: str
    tiny_app: str
    headers = {"Authorization": f"Bearer {API_KEY}"}  # every test app accepts it (auth off accepts anything)

    def openai(self, model: str, prefix: str = "/v1"):
        from openai import OpenAI

        url = self.tiny_url if model == TINY else self.smol_url
        return OpenAI(base_url=url + prefix, api_key=API_KEY, max_retries=0)


@pytest.fixture(scope="module", params=ENGINES)
def engine(request) -> EngineTarget:
    """The engine behaviour suite's parameter: each engine serving SmolLM2 and the tiny model."""
    if request.param == "vllm":
        if not vllm_installed():
            pytest.skip("vLLM is not installed in this environment (`make test` runs the vllm suite in .venv-vllm)")
        url = request.getfixturevalue("vllm_url")
        return EngineTarget("vllm", url, "vllm", url, "vllm")
    base, secure = request.getfixturevalue("base_url"), request.getfixturevalue("secure_url")
    return EngineTarget("meta-reference", base, "stackserve", secure, "secure")


def llm_deployment(app: str, model_id: str) -> str:
    """The deployment of `app` that runs `model_id`'s engine: its LLM deployment, or the Ingress (`in_ingress`)."""
    from ray import serve

    from serve.graph import deployment_name

    name = deployment_name(model_id)
    return name if name in serve.status().applications[app].deployments else "Ingress"


def llm_stats(app: str, model_id: str) -> dict:
    """The engine's counters, read through the handle of the deployment that runs it."""
    from ray import serve

    return serve.get_deployment_handle(llm_deployment(app, model_id), app_name=app).stats.remote().result()
