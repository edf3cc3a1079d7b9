"""Engine registry: engine type name -> constructor, imported lazily (vLLM is optional)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployments.inference.engine import Engine
from serve.config import EngineConfig


def build_engine(cfg: EngineConfig, checkpoint: Path, tokenizer: Any = None) -> Engine:
    if cfg.type == "meta-reference":
        from deployments.inference.meta_reference.engine import MetaReferenceEngine

        return MetaReferenceEngine.from_checkpoint(checkpoint, cfg)
    if cfg.type == "vllm":
        from deployments.inference.vllm_engine import VLLMEngine

        return VLLMEngine.from_checkpoint(checkpoint, cfg)
    if cfg.type == "scripted":
        from deployments.inference.scripted import ScriptedEngine

        return ScriptedEngine(tokenizer, cfg.script, cfg.max_model_len or 4096)
    raise ValueError(f"unknown engine type {cfg.type!r}")
