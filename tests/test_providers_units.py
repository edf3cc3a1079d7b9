"""Provider listing and health without Ray: deployments' health reports (serve/health.py), the ingress asking them
with a timeout, and /v1/providers, /v1/health and route provider types (serve/providers.py) over fake handles."""

from __future__ import annotations

import asyncio

import pytest

from serve.config import parse_config
from serve.context import ServedModel, Stack
from serve.health import SharedProbe, ask, run_checks, running, worst
from serve.providers import list_providers, route_provider_types, stack_health

HANG = object()


class FakeResponse:
    """What a DeploymentHandle call returns: awaitable, cancellable."""

    def __init__(self, answer):
        self.answer = answer
        self.cancelled = False

    def __await__(self):
        return self._run().__await__()

    async def _run(self):
        if self.answer is HANG:
            await asyncio.sleep(3600)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def cancel(self):
        self.cancelled = True


class FakeMethod:
    def __init__(self, answer):
        self.answer = answer
        self.calls: list[FakeResponse] = []

    def remote(self, *args):
        self.calls.append(FakeResponse(self.answer))
        return self.calls[-1]


class FakeHandle:
    def __init__(self, health=None, model_info=None):
        self.health = FakeMethod({"status": "OK"} if health is None else health)
        self.model_info = FakeMethod(model_info)


def test_run_checks_reports_the_first_failure():
    def db_down():
        raise ConnectionError("database is gone\nsecond line")

    async def fine():
        return None

    assert asyncio.run(run_checks(fine, lambda: None)) == {"status": "OK"}
    assert asyncio.run(run_checks(fine, db_down, fine)) == {"status": "Error",
                                                            "message": "ConnectionError: database is gone"}


def test_running_fails_once_the_task_died():
    async def scenario():
        async def crash():
            raise ValueError("boom")

        task = asyncio.ensure_future(crash())
        await asyncio.sleep(0)
        return await run_checks(running(task, "the watcher"))

    report = asyncio.run(scenario())
    assert report["status"] == "Error" and "the watcher stopped" in report["message"] and "boom" in report["message"]


@pytest.mark.parametrize("answer,status,needle", [
    ({"status": "OK"}, "OK", None),
    ({"status": "Error", "message": "engine loop died"}, "Error", "engine loop died"),
    (RuntimeError("replica died"), "Error", "RuntimeError: replica died"),
    ("garbage", "Error", "unexpected health report"),
    (HANG, "Error", "no answer within 0.05 s"),
])
def test_ask_maps_answers_failures_and_silence(answer, status, needle):
    method = FakeMethod(answer)
    report = asyncio.run(ask(method.remote, 0.05))
    assert report["status"] == status
    if needle:
        assert needle in report["message"]
    assert method.calls[0].cancelled == (answer is HANG)  # a call that timed out is cancelled


def test_ask_when_the_call_cannot_start():
    def no_such_method():
        raise AttributeError("'DeploymentHandle' has no method 'health'")

    report = asyncio.run(ask(no_such_method, 0.05))
    assert report == {"status": "Error", "message": "AttributeError: 'DeploymentHandle' has no method 'health'"}


def test_worst_names_each_failure():
    assert worst({"a": {"status": "OK"}, "b": {"status": "OK"}}) == {"status": "OK"}
    assert worst({"a": {"status": "OK"}, "b": {"status": "Error", "message": "x"}}) == {"status": "Error",
                                                                                      "message": "b: x"}


def test_shared_probe_runs_once_per_ttl():
    now = [0.0]
    calls = []

    async def probe():
        calls.append(now[0])
        await asyncio.sleep(0.01)
        return len(calls)

    async def scenario():
        shared = SharedProbe(probe, ttl_s=1.0, clock=lambda: now[0])
        first = await asyncio.gather(*(shared.get() for _ in range(5)))  # concurrent: one probe
        now[0] = 0.5
        cached = await shared.get()
        now[0] = 1.6
        return first, cached, await shared.get()

    assert asyncio.run(scenario()) == ([1] * 5, 1, 2) and calls == [0.0, 1.6]


def _stack(datasetio_health=None, llm_info=HANG, tracing=False) -> Stack:
    config = parse_config({
        "models": [{"model_id": "m", "source": "/x"}, {"model_id": "g", "source": "/y", "provider_id": "guard"}],
        "embedding_models": [{"model_id": "e", "source": "/z"}],
        "vector_io": {}, "agents": {"web_search": {"provider": "tavily"}}, "datasetio": {},
        "server": {"health_timeout_s": 0.05}, "telemetry": {"tracing": tracing}})
    models = {"m": ServedModel(config.models[0], FakeHandle(model_info=llm_info)),
              "g": ServedModel(config.models[1], FakeHandle(model_info={"provider_type": "inline::scripted"},
                                                            health={"status": "Error", "message": "wedged"})),
              "e": ServedModel(config.embedding_models[0], FakeHandle(), "embedding")}
    nodes = {"VectorIO": FakeHandle(), "Agents": FakeHandle(), "DatasetIO": FakeHandle(health=datasetio_health)}
    return Stack(config, models, deployments=nodes)


def test_providers_are_what_the_config_runs_with_each_deployments_health():
    providers = asyncio.run(list_providers(_stack(datasetio_health=HANG)))
    by_id = {(p["api"], p["provider_id"]): p for p in providers}
    assert {k: p["provider_type"] for k, p in by_id.items()} == {
        ("inference", "meta-reference"): "inline::meta-reference",  # not answering: the config's engine
        ("inference", "guard"): "inline::scripted",  # what its engine reports
        ("inference", "sentence-transformers"): "inline::sentence-transformers",
        ("vector_io", "faiss"): "inline::faiss", ("files", "meta-reference-files"): "inline::localfs",
        ("tool_runtime", "rag-runtime"): "inline::rag-runtime", ("agents", "meta-reference"): "inline::meta-reference",
        ("tool_runtime", "model-context-protocol"): "remote::model-context-protocol",
        ("tool_runtime", "tavily-search"): "remote::tavily-search",
        ("datasetio", "localfs"): "inline::localfs", ("datasetio", "huggingface"): "remote::huggingface",
    }  # no safety, batches or telemetry: the config has none
    health = {k: p["health"] for k, p in by_id.items()}
    assert health[("datasetio", "localfs")] == health[("datasetio", "huggingface")] == {
        "status": "Error", "message": "no answer within 0.05 s"}
    assert health[("inference", "guard")] == {"status": "Error", "message": "wedged"}
    assert health[("inference", "meta-reference")] == health[("agents", "meta-reference")] == {"status": "OK"}
    assert asyncio.run(stack_health(_stack(datasetio_health=HANG))) == {"status": "Error"}


def test_health_ok_when_every_deployment_is():
    stack = _stack(llm_info={"provider_type": "inline::vllm"})
    stack.models["g"].handle.health = FakeMethod({"status": "OK"})
    assert asyncio.run(stack_health(stack)) == {"status": "OK"}
    types = {(p["api"], p["provider_id"]): p["provider_type"]
             for p in asyncio.run(list_providers(stack, health=False))}
    assert types["inference", "meta-reference"] == "inline::vllm"  # once the engine has answered, its own word


def test_telemetry_provider_needs_the_span_store():
    providers = asyncio.run(list_providers(_stack(tracing=True)))
    (telemetry,) = [p for p in providers if p["api"] == "telemetry"]
    assert telemetry["provider_type"] == "inline::meta-reference"
    assert telemetry["health"]["status"] == "Error"  # tracing is configured, but no span store runs here


def test_route_provider_types():
    providers = asyncio.run(list_providers(_stack(), health=False))
    assert route_provider_types(providers, ["datasets"]) == ["inline::localfs", "remote::huggingface"]
    assert route_provider_types(providers, ["stack"]) == []
    assert "inline::scripted" in route_provider_types(providers, ["inference"])
