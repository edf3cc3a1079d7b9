from pathlib import Path

import pytest

from serve.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def test_local_default(tmp_path, monkeypatch):
    cfg = load_config(ROOT / "configs/local.yaml")
    assert cfg.server.port == 8321
    assert cfg.models[0].model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert cfg.models[0].deployment.ray_actor_options["num_cpus"] <= 1
    # out of the box as Llama Stack's distributions: builtin::websearch (Tavily, the key per request), traces in
    # the span store behind /v1/telemetry, huggingface:// dataset sources
    assert cfg.agents.web_search.provider == "tavily" and cfg.agents.web_search.api_key is None
    assert cfg.telemetry.tracing and cfg.telemetry.span_store.enabled
    assert cfg.datasetio.huggingface.enabled and not cfg.datasetio.huggingface.offline
    monkeypatch.setenv("STACKSERVE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STACKSERVE_API_KEYS", "a, b")
    assert cfg.resolved_data_dir() == tmp_path
    assert cfg.resolved_api_keys() == ["a", "b"]


def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_is_named(tmp_path):
    p = _write(tmp_path, "models:\n  - model_id: m\n    source: /x\n    engine: {max_num_seq: 4}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "models.0.engine.max_num_seq" in str(e.value) and "unknown key" in str(e.value)


def test_bad_value_is_named(tmp_path):
    p = _write(tmp_path, "models:\n  - model_id: m\n    source: /x\n    engine: {max_num_seqs: 0}\n")
    with pytest.raises(ConfigError, match=r"models\.0\.engine\.max_num_seqs"):
        load_config(p)


@pytest.mark.parametrize("text,needle", [
    ("models: [", "not valid YAML"),
    ("- a\n- b\n", "mapping"),
    ("server: {port: 8321}\n", "models"),
    ("models:\n  - {model_id: m, source: /x}\n  - {model_id: m, source: /y}\n", "duplicate model name 'm'"),
    ("models:\n  - {model_id: m, source: /x, aliases: [n]}\n  - {model_id: n, source: /y}\n",
     "duplicate model name 'n'"),
    ("models:\n  - {model_id: m, source: /x, engine: {device: tpu}}\n", "device"),
    ("models:\n  - model_id: m\n    source: /x\n    deployment: {num_replicas: 2, autoscaling_config: {}}\n",
     "either num_replicas or autoscaling_config"),
])
def test_bad_files(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(_write(tmp_path, text))


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/stack.yaml")


def test_serve_options_pass_through():
    cfg = parse_config({"models": [{"model_id": "m", "source": "/x", "deployment": {
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 4}, "max_ongoing_requests": 8}}]})
    opts = cfg.models[0].deployment.serve_options()
    assert opts["autoscaling_config"]["max_replicas"] == 4
    assert opts["max_ongoing_requests"] == 8
    assert "num_replicas" not in opts


def test_a_model_in_the_ingress_gives_the_ingress_its_options():
    from serve.deploy_config import deployment_name, deployment_options, llm_deployment_name

    cfg = parse_config({
        "ingress": {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0.25}},
        "models": [{"model_id": "a", "source": "/x", "in_ingress": True, "deployment": {
                        "max_ongoing_requests": 100, "ray_actor_options": {"num_cpus": 1, "num_gpus": 1},
                        "autoscaling_config": {"min_replicas": 1, "max_replicas": 3}}},
                   {"model_id": "b", "source": "/x"}]})
    opts = deployment_options(cfg)
    assert list(opts) == ["Ingress", deployment_name("b")]  # "a" has no deployment of its own
    assert opts["Ingress"]["ray_actor_options"] == {"num_cpus": 1.25, "num_gpus": 1}
    assert opts["Ingress"]["max_ongoing_requests"] == 256  # the larger: its own requests and the engine's
    assert opts["Ingress"]["autoscaling_config"]["max_replicas"] == 3  # the model's scaling
    assert "request_router_config" in opts["Ingress"]  # the model's router, for other deployments' calls
    assert cfg.ingress_model().model_id == "a"
    assert llm_deployment_name(cfg, "a") == "Ingress" and llm_deployment_name(cfg, "b") == deployment_name("b")
    with pytest.raises(ConfigError, match="one engine at most"):
        parse_config({"models": [{"model_id": "a", "source": "/x", "in_ingress": True},
                                 {"model_id": "b", "source": "/x", "in_ingress": True}]})
