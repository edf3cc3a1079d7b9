"""Engine registry: engine type name -> constructor, imported lazily (vLLM is optional).

An `EngineFactory` builds the engine an LLM deployment serves from its checkpoint, tokenizer and model config; the
default reads `model.engine.type`. Tests and benchmarks inject others (a scripted engine) through the graph
builder, so nothing test-only lives in the config schema.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from deployments.inference.engine import Engine
from serve.config import EngineConfig, ModelConfig

EngineFactory = Callable[[Path, Any, ModelConfig], Engine]  # (checkpoint, tokenizer, model config) -> engine


def build_engine(cfg: EngineConfig, checkpoint: Path) -> Engine:
    if cfg.type == "meta-reference":
        from deployments.device import resolve_device
        from deployments.inference.meta_reference.engine import MetaReferenceEngine

        device = resolve_device(cfg.device, f"meta-reference engine for {checkpoint.name}")
        return MetaReferenceEngine.from_checkpoint(checkpoint, cfg.model_copy(update={"device": device}))
    if cfg.type == "vllm":
        from deployments.inference.vllm_engine import VLLMEngine

        return VLLMEngine.from_checkpoint(checkpoint, cfg)
    raise ValueError(f"unknown engine type {cfg.type!r}")


def engine_from_config(checkpoint: Path, tokenizer: Any, model: ModelConfig) -> Engine:
    """The default EngineFactory: the engine `model.engine.type` names."""
    return build_engine(model.engine, checkpoint)
