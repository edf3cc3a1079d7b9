"""Per-deployment Ray Serve options in the config: autoscaling checks naming the key path, LLM autoscaling
defaults, replica resources; and the engine's CPU fallback when CUDA is absent."""

from __future__ import annotations

import logging

import pytest
from ray.serve.config import AutoscalingConfig as RayAutoscalingConfig

from serve.config import ConfigError, parse_config
from serve.serve_options import LLM_DOWNSCALE_DELAY_S, LLM_UPSCALE_DELAY_S

SECTIONS = {  # every deployment of the graph and where its options live in a config
    "ingress": lambda d: {"ingress": d},
    "models.0.deployment": lambda d: {"models": [{"model_id": "m", "source": "/x", "deployment": d}]},
    "embedding_models.0.deployment": lambda d: {"embedding_models": [{"model_id": "e", "source": "/e",
                                                                      "deployment": d}]},
    "vector_io.deployment": lambda d: {"embedding_models": [{"model_id": "e", "source": "/e"}],
                                       "vector_io": {"deployment": d}},
    "safety.deployment": lambda d: {"safety": {"deployment": d}},
    "agents.deployment": lambda d: {"agents": {"deployment": d}},
}


def _parse(section: str, deployment: dict):
    data = SECTIONS[section](deployment)
    data.setdefault("models", [{"model_id": "m", "source": "/x"}])
    return parse_config(data)


def _error(section: str, deployment: dict) -> str:
    with pytest.raises(ConfigError) as e:
        _parse(section, deployment)
    return str(e.value)


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("scaling,key,needle", [
    ({"min_replicas": 3, "max_replicas": 2}, "max_replicas", "max_replicas (2) must be >= min_replicas (3)"),
    ({"min_replicas": 2, "max_replicas": 4, "initial_replicas": 1}, "initial_replicas", ">= min_replicas (2)"),
    ({"min_replicas": 1, "max_replicas": 4, "initial_replicas": 5}, "initial_replicas", "<= max_replicas (4)"),
    ({"max_replicas": 0}, "max_replicas", "greater than or equal to 1"),
    ({"min_replicas": -1, "max_replicas": 2}, "min_replicas", "greater than or equal to 0"),
    ({"max_replicas": 2, "target_ongoing_requests": 0}, "target_ongoing_requests", "greater than 0"),
    ({"max_replicas": 2, "upscale_delay_s": -1}, "upscale_delay_s", "greater than or equal to 0"),
    ({"max_replica": 2}, "max_replica", "unknown key"),
])
def test_autoscaling_errors_name_the_key_path(section, scaling, key, needle):
    msg = _error(section, {"autoscaling_config": scaling})
    assert f"{section}.autoscaling_config.{key}: " in msg and needle in msg


@pytest.mark.parametrize("section", SECTIONS)
def test_autoscaling_passes_to_every_deployment(section):
    from serve.deploy_config import deployment_options

    scaling = {"min_replicas": 1, "initial_replicas": 2, "max_replicas": 3, "target_ongoing_requests": 4,
               "upscale_delay_s": 1, "downscale_delay_s": 2}
    cfg = _parse(section, {"autoscaling_config": scaling, "max_ongoing_requests": 8})
    name = {"ingress": "Ingress", "models.0.deployment": "LLM:m", "embedding_models.0.deployment": "Embeddings:e",
            "vector_io.deployment": "VectorIO", "safety.deployment": "Safety",
            "agents.deployment": "Agents"}[section]
    opts = deployment_options(cfg)[name]
    assert opts["autoscaling_config"] == scaling
    assert RayAutoscalingConfig(**opts["autoscaling_config"]).initial_replicas == 2  # Ray accepts it as is


@pytest.mark.parametrize("deployment,needle", [
    ({"num_replicas": 2, "autoscaling_config": {"max_replicas": 3}}, "either num_replicas or autoscaling_config"),
    ({"autoscaling_config": {"min_replicas": 1}}, "autoscaling_config.max_replicas is required"),
    ({"max_ongoing_requests": 4, "autoscaling_config": {"max_replicas": 2, "target_ongoing_requests": 8}},
     "target_ongoing_requests (8) exceeds max_ongoing_requests (4)"),
    ({"num_replicas": -1}, "num_replicas: must be an integer >= 0 or 'auto'"),
    ({"max_queued_requests": 0}, "max_queued_requests: must be -1 (no limit) or a positive integer"),
    ({"ray_actor_options": {"num_gpu": 1}}, "ray_actor_options: unknown key(s) num_gpu"),
    ({"ray_actor_options": {"num_gpus": -0.5}}, "num_gpus must be a number >= 0"),
    ({"ray_actor_options": {"resources": {"GPU": 1}}}, "resources.GPU: use num_cpus / num_gpus"),
])
def test_deployment_option_errors(deployment, needle):
    msg = _error("models.0.deployment", deployment)
    assert "models.0.deployment" in msg and needle in msg


def test_llm_autoscaling_defaults_follow_the_engine_batch():
    cfg = parse_config({"models": [
        {"model_id": "a", "source": "/a", "engine": {"max_num_seqs": 16},
         "deployment": {"max_ongoing_requests": 48, "autoscaling_config": {"min_replicas": 1, "max_replicas": 4}}},
        {"model_id": "b", "source": "/b", "engine": {"max_num_seqs": 256},
         "deployment": {"max_ongoing_requests": 64, "num_replicas": "auto"}},
        {"model_id": "c", "source": "/c", "engine": {"max_num_seqs": 16},
         "deployment": {"autoscaling_config": {"max_replicas": 2, "target_ongoing_requests": 3,
                                               "downscale_delay_s": 5}}},
        {"model_id": "d", "source": "/d", "deployment": {"num_replicas": 2}},
    ]})
    a, b, c, d = (m.deployment.serve_options(llm_max_num_seqs=m.engine.max_num_seqs) for m in cfg.models)
    assert a["autoscaling_config"] == {"target_ongoing_requests": 16, "upscale_delay_s": LLM_UPSCALE_DELAY_S,
                                       "downscale_delay_s": LLM_DOWNSCALE_DELAY_S, "min_replicas": 1,
                                       "max_replicas": 4}
    assert LLM_UPSCALE_DELAY_S < LLM_DOWNSCALE_DELAY_S  # up fast, down slowly
    # capped by what Serve lets one replica hold; "auto" keeps Ray's auto bounds under the LLM targets
    assert b["num_replicas"] == "auto" and b["autoscaling_config"]["target_ongoing_requests"] == 64
    assert c["autoscaling_config"]["target_ongoing_requests"] == 3  # what the config says wins
    assert c["autoscaling_config"]["downscale_delay_s"] == 5
    assert c["autoscaling_config"]["upscale_delay_s"] == LLM_UPSCALE_DELAY_S
    assert "autoscaling_config" not in d and d["num_replicas"] == 2
    for opts in (a, c):
        RayAutoscalingConfig(**opts["autoscaling_config"])
    # non-LLM deployments keep Ray's defaults for what they leave unset
    ingress = parse_config({"models": [{"model_id": "m", "source": "/x"}],
                            "ingress": {"autoscaling_config": {"max_replicas": 2}}}).ingress.serve_options()
    assert ingress["autoscaling_config"] == {"max_replicas": 2}


@pytest.mark.parametrize("device", ["auto", "cuda", "cuda:0"])
def test_engine_falls_back_to_cpu_without_cuda(device, tiny_checkpoint, caplog):
    import torch

    from deployments.inference.engines import build_engine

    if torch.cuda.is_available():
        pytest.skip("CUDA is present: nothing to fall back from")
    cfg = parse_config({"models": [{"model_id": "m", "source": str(tiny_checkpoint), "engine": {
        "device": device, "dtype": "bfloat16", "max_num_seqs": 2, "kv_cache_tokens": 256}}]}).models[0].engine
    with caplog.at_level(logging.WARNING, logger="stackserve.device"):
        engine = build_engine(cfg, tiny_checkpoint)
    assert engine.device.type == "cpu"
    assert next(engine.model.parameters()).device.type == "cpu"
    assert any("CUDA is not available" in r.message and repr(device) in r.message for r in caplog.records)


def test_device_must_be_known():
    with pytest.raises(ConfigError, match=r"models\.0\.engine\.device: device must be 'cpu', 'cuda\[:N\]' or 'auto'"):
        parse_config({"models": [{"model_id": "m", "source": "/x", "engine": {"device": "cuda0"}}]})


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A 1-layer random Llama checkpoint (no tokenizer needed by the engine)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-cpu-fallback")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=256)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    return out


def test_llm_replicas_drain_their_streams_before_stopping():
    from ray import serve

    from serve.serve_options import LLM_GRACEFUL_SHUTDOWN_TIMEOUT_S

    cfg = parse_config({"models": [
        {"model_id": "a", "source": "/a"},
        {"model_id": "b", "source": "/b", "deployment": {"graceful_shutdown_timeout_s": 600,
                                                         "graceful_shutdown_wait_loop_s": 1}}]})
    a, b = (m.serve_options() for m in cfg.models)
    assert a["graceful_shutdown_timeout_s"] == LLM_GRACEFUL_SHUTDOWN_TIMEOUT_S > 20  # Ray's default is 20 s
    assert b["graceful_shutdown_timeout_s"] == 600 and b["graceful_shutdown_wait_loop_s"] == 1
    # the deployments that relay streams drain as long; the others keep Ray's default
    from serve.deploy_config import deployment_options

    full = deployment_options(parse_config({"models": [{"model_id": "a", "source": "/a"}],
                                            "embedding_models": [{"model_id": "e", "source": "/e"}],
                                            "agents": {}, "vector_io": {}}))
    assert full["Ingress"]["graceful_shutdown_timeout_s"] == full["Agents"]["graceful_shutdown_timeout_s"] == 120
    assert "graceful_shutdown_timeout_s" not in full["VectorIO"]

    @serve.deployment
    class D:
        pass

    D.options(**{k: v for k, v in b.items() if k != "placement_group_bundles"})  # names Ray Serve accepts
    with pytest.raises(ConfigError, match="graceful_shutdown_timeout_s"):
        parse_config({"models": [{"model_id": "a", "source": "/a",
                                  "deployment": {"graceful_shutdown_timeout_s": -1}}]})
