"""Engine registry: engine type name -> constructor, imported lazily (vLLM is optional)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployments.inference.engine import Engine
from serve.config import EngineConfig


def build_engine(cfg: EngineConfig, checkpoint: Path, tokenizer: Any = None) -> Engine:
    if cfg.type == "meta-reference":
        from deployments.device import resolve_device
        from deployments.inference.meta_reference.engine import MetaReferenceEngine

        device = resolve_device(cfg.device, f"meta-reference engine for {checkpoint.name}")
        return MetaReferenceEngine.from_checkpoint(checkpoint, cfg.model_copy(update={"device": device}))
    if cfg.type == "vllm":
        from deployments.inference.vllm_engine import VLLMEngine

        return VLLMEngine.from_checkpoint(checkpoint, cfg)
    if cfg.type == "scripted":
        from deployments.inference.scripted import ScriptedEngine

        return ScriptedEngine(tokenizer, cfg.script, cfg.max_model_len or 4096)
    raise ValueError(f"unknown engine type {cfg.type!r}")
