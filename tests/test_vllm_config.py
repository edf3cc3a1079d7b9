"""The vLLM engine's config without vLLM: validation, engine arguments, the tensor-parallel placement group."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from deployments.inference.vllm_engine import engine_args, kv_cache_bytes
from serve.config import ConfigError, MetaReferenceEngineConfig, VLLMEngineConfig, parse_config

SMOL_SHAPE = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "hidden_size": 576}


def _config(engine: dict, deployment: dict | None = None):
    model = {"model_id": "m", "source": "/models/m", "engine": engine}
    if deployment is not None:
        model["deployment"] = deployment
    return parse_config({"models": [model]})


@pytest.mark.parametrize("engine,message", [
    ({"type": "vllm", "tensor_parallel_size": 0}, "models.0.engine.tensor_parallel_size: "
                                                  "tensor_parallel_size must be >= 1"),
    ({"type": "vllm", "gpu_memory_utilization": 0}, "gpu_memory_utilization is a fraction of GPU memory in (0, 1]"),
    ({"type": "vllm", "gpu_memory_utilization": 1.5}, "in (0, 1], got 1.5"),
    ({"type": "vllm", "kv_cache_space_gib": -1}, "kv_cache_space_gib must be > 0"),
    ({"type": "vllm", "tensor_parallel_size": 2}, "tensor_parallel_size > 1 needs device 'cuda'"),
    ({"type": "meta-reference", "tensor_parallel_size": 2}, "tensor_parallel_size: only for engine type 'vllm'"),
    ({"enforce_eager": True, "gpu_memory_utilization": 0.5},
     "gpu_memory_utilization, enforce_eager: only for engine type 'vllm'"),
    ({"type": "vllm", "swap_space": 4}, "models.0.engine.swap_space: unknown key"),
    ({"type": "vllm", "kv_block_size": 32, "step_timeout_s": 5},
     "models.0.engine: kv_block_size, step_timeout_s: only for engine type 'meta-reference' (this engine is 'vllm')"),
    ({"type": "scripted"}, "models.0.engine: engine type 'scripted' is not one of 'meta-reference', 'vllm'"),
])
def test_invalid_engine_config_names_the_problem(engine, message):
    with pytest.raises(ConfigError) as e:
        _config(engine)
    assert message in str(e.value)


def test_engine_type_picks_the_config_class_and_defaults_to_meta_reference():
    cfg = parse_config({"models": [{"model_id": "a", "source": "/a"}, {"model_id": "b", "source": "/b", "engine": {}},
                                   {"model_id": "c", "source": "/c", "engine": {"type": "vllm", "max_num_seqs": 4}}]})
    a, b, c = (m.engine for m in cfg.models)
    assert type(a) is type(b) is MetaReferenceEngineConfig and a.type == b.type == "meta-reference"
    assert type(c) is VLLMEngineConfig and c.max_num_seqs == 4 and c.placement({"num_cpus": 1}) == {}
    assert cfg.models[2].provider == "vllm" and a.step_timeout_s == 300
    with pytest.raises(ValidationError, match="tensor_parallel_size: only for engine type 'vllm'"):
        MetaReferenceEngineConfig(tensor_parallel_size=2)


def test_engine_args_on_cpu_size_the_kv_cache_from_tokens():
    cfg = VLLMEngineConfig(max_num_seqs=8, max_model_len=2048, kv_cache_tokens=16384, enforce_eager=True)
    args = engine_args(cfg, Path("/models/smol"), SMOL_SHAPE)
    # K and V, per layer, per KV head of 64 dims, fp32: 46080 bytes a token
    assert args["kv_cache_memory_bytes"] == 16384 * 2 * 30 * 3 * 64 * 4
    assert args["model"] == "/models/smol" and args["dtype"] == "float32" and args["enforce_eager"] is True
    assert args["max_num_seqs"] == 8 and args["max_model_len"] == 2048 and args["tensor_parallel_size"] == 1
    assert args["structured_outputs_config"] == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert "distributed_executor_backend" not in args


def test_engine_args_on_gpus():
    cfg = VLLMEngineConfig(device="cuda", dtype="bfloat16", tensor_parallel_size=4,
                       gpu_memory_utilization=0.85, max_num_batched_tokens=8192, enable_prefix_caching=True)
    args = engine_args(cfg, Path("/models/big"), SMOL_SHAPE)
    assert "kv_cache_memory_bytes" not in args  # vLLM sizes it from gpu_memory_utilization
    assert args["gpu_memory_utilization"] == 0.85 and args["tensor_parallel_size"] == 4
    assert args["distributed_executor_backend"] == "ray"
    assert args["max_num_batched_tokens"] == 8192 and args["enable_prefix_caching"] is True
    assert "max_model_len" not in args  # None: the model's own
    explicit = VLLMEngineConfig(device="cuda", kv_cache_space_gib=1.5)
    assert kv_cache_bytes(explicit, SMOL_SHAPE) == int(1.5 * 1024**3)


def test_tensor_parallel_asks_for_one_gpu_bundle_per_shard():
    cfg = _config({"type": "vllm", "device": "cuda", "tensor_parallel_size": 4},
                  {"ray_actor_options": {"num_cpus": 2, "resources": {"llm_node": 0.01}}})
    opts = cfg.models[0].serve_options()
    assert opts["placement_group_strategy"] == "STRICT_PACK"
    # the replica actor (CPU, custom resources) shares the first shard's bundle: 4 GPUs in all
    assert opts["placement_group_bundles"] == [{"CPU": 2, "GPU": 1, "llm_node": 0.01}, {"GPU": 1}, {"GPU": 1},
                                               {"GPU": 1}]
    assert opts["ray_actor_options"] == {"num_cpus": 2, "resources": {"llm_node": 0.01}}
    # a GPU type pins the replica (Ray's accelerator_type:<T> resource), so the bundle it lives in carries it
    typed = _config({"type": "vllm", "device": "cuda", "tensor_parallel_size": 2},
                    {"ray_actor_options": {"num_cpus": 1, "accelerator_type": "H100"}}).models[0].serve_options()
    assert typed["placement_group_bundles"] == [{"CPU": 1, "GPU": 1, "accelerator_type:H100": 0.001}, {"GPU": 1}]


@pytest.mark.parametrize("engine", [{"type": "vllm", "device": "cuda"}, {"type": "meta-reference"}])
def test_no_placement_group_without_tensor_parallelism(engine):
    opts = _config(engine, {"ray_actor_options": {"num_cpus": 1, "num_gpus": 1}}).models[0].serve_options()
    assert "placement_group_bundles" not in opts and "placement_group_strategy" not in opts
    assert opts["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 1}


def test_tensor_parallel_options_build_a_serve_deployment():
    """Ray Serve accepts the generated options (a placement group is only reserved when the app runs)."""
    from deployments.inference.deployment import LLMServer

    model = _config({"type": "vllm", "device": "cuda", "tensor_parallel_size": 2},
                    {"ray_actor_options": {"num_cpus": 1}}).models[0]
    d = LLMServer.options(name="LLM:m", **model.serve_options())
    assert d._deployment_config is not None
    assert d._replica_config.placement_group_bundles == [{"CPU": 1, "GPU": 1}, {"GPU": 1}]
    assert d._replica_config.placement_group_strategy == "STRICT_PACK"


def test_project_imports_without_vllm():
    import importlib.util
    import subprocess
    import sys

    code = ("import sys; sys.modules['vllm'] = None\n"  # any `import vllm` now fails
            "import serve.graph, serve.app, deployments.inference.engines, deployments.inference.vllm_engine\n"
            "import deployments.inference.deployment")
    assert importlib.util.find_spec("serve") is not None
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
