"""Load an HF Llama-family checkpoint directory (config.json + safetensors) into our model."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from deployments.inference.meta_reference.model import LlamaArgs, LlamaForCausalLM, rope_inv_freq

SUPPORTED_ARCHITECTURES = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CheckpointError(ValueError):
    pass


def read_hf_config(checkpoint: Path) -> dict:
    try:
        cfg = json.loads((checkpoint / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{checkpoint}: cannot read config.json ({e})") from None
    archs = set(cfg.get("architectures") or ["LlamaForCausalLM"])
    if not archs & SUPPORTED_ARCHITECTURES:
        raise CheckpointError(f"{checkpoint}: architecture {sorted(archs)} is not Llama-family")
    return cfg


def build_model(args: LlamaArgs, device: str, dtype: str, random_init: bool = False) -> LlamaForCausalLM:
    """A model on `device` in `dtype`; weights uninitialised (to be loaded) unless random_init."""
    torch_dtype = _DTYPES[dtype]
    if random_init:
        with torch.device(device):
            model = LlamaForCausalLM(args).to(torch_dtype)
    else:
        with torch.device("meta"):
            model = LlamaForCausalLM(args)
        model = model.to_empty(device=device).to(torch_dtype)
    # the RoPE buffer is computed, never loaded; keep it fp32 whatever the weights' dtype
    model.inv_freq = rope_inv_freq(args).to(device)
    model.tie_weights()
    return model.eval().requires_grad_(False)


def load_checkpoint(checkpoint: Path, device: str = "cpu", dtype: str = "float32") -> LlamaForCausalLM:
    from safetensors.torch import load_file

    args = LlamaArgs.from_hf(read_hf_config(checkpoint))
    files = sorted(checkpoint.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{checkpoint}: no .safetensors files")
    model = build_model(args, device, dtype)
    expected = set(model.state_dict().keys())
    loaded: set[str] = set()
    for f in files:
        state = load_file(str(f), device="cpu")
        state = {k: v for k, v in state.items() if k in expected}
        model.load_state_dict(state, strict=False, assign=False)
        loaded |= state.keys()
    missing = expected - loaded - ({"lm_head.weight"} if args.tie_word_embeddings else set())
    if missing:
        raise CheckpointError(f"{checkpoint}: missing weights {sorted(missing)[:5]}")
    model.tie_weights()
    model.fuse_projections()
    return model
