"""The whole stack: what `stackserve run --config FILE` serves, and the one loader of config files.

`load_config` reads YAML and validates it; its errors name the bad key path (e.g. `models.0.engine.max_num_seqs`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from serve.config.agents import AgentsConfig
from serve.config.base import ConfigError, DeploymentOptions, _Strict
from serve.config.batches import BatchesConfig
from serve.config.datasets import DatasetIOConfig
from serve.config.engine import ENGINE_CONFIGS
from serve.config.models import EmbeddingModelConfig, ModelConfig
from serve.config.safety import SafetyConfig
from serve.config.server import ServerConfig, StorageConfig
from serve.config.telemetry import TelemetryConfig
from serve.config.vector_io import VectorIOConfig


class StackConfig(_Strict):
    """The whole stack: what `stackserve run --config FILE` serves."""

    version: int = 1
    data_dir: str | None = None
    model_cache_dir: str | None = None
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ingress: DeploymentOptions = Field(default_factory=DeploymentOptions)
    models: list[ModelConfig] = Field(default_factory=list)
    embedding_models: list[EmbeddingModelConfig] = Field(default_factory=list)
    vector_io: VectorIOConfig | None = None
    safety: SafetyConfig | None = None
    agents: AgentsConfig | None = None
    datasetio: DatasetIOConfig | None = None
    batches: BatchesConfig | None = None
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

    @model_validator(mode="after")
    def _unique_ids(self) -> StackConfig:
        seen: set[str] = set()
        for m in [*self.models, *self.embedding_models]:
            for name in [m.model_id, *m.aliases]:
                if name in seen:
                    raise ValueError(f"duplicate model name {name!r} (model ids and aliases name one model each)")
                seen.add(name)
        if not seen:
            raise ValueError("the config serves no models: add `models` or `embedding_models`")
        hosted = [m.model_id for m in self.models if m.in_ingress]
        if len(hosted) > 1:
            raise ValueError(f"models: in_ingress is set on {', '.join(hosted)}; the Ingress hosts one engine at most")
        if self.vector_io is not None and self.vector_io.enabled:
            if not self.embedding_models:
                raise ValueError("vector_io needs at least one entry in embedding_models")
            default = self.vector_io.default_embedding_model
            if default is not None and default not in {m.model_id for m in self.embedding_models}:
                raise ValueError(f"vector_io.default_embedding_model {default!r} is not in embedding_models")
        if self.batches is not None and self.batches.enabled and (self.vector_io is None or not self.vector_io.enabled):
            raise ValueError("batches needs vector_io enabled: batch input and output are files")
        return self

    @model_validator(mode="after")
    def _shields_reference_models(self) -> StackConfig:
        served = {m.model_id for m in self.models}
        for i, s in enumerate(self.safety.shields if self.safety else []):
            if s.provider_id == "llama-guard" and s.provider_shield_id not in served:
                raise ValueError(f"safety.shields.{i}: llama-guard needs provider_shield_id naming a served model")
            if s.provider_id == "prompt-guard" and not s.provider_shield_id:
                raise ValueError(f"safety.shields.{i}: prompt-guard needs provider_shield_id (a classifier directory)")
        return self

    def ingress_model(self) -> ModelConfig | None:
        """The model whose engine runs in the Ingress replicas (`in_ingress`), if any."""
        return next((m for m in self.models if m.in_ingress), None)

    def model_aliases(self) -> dict[str, str]:
        """alias -> model_id, over LLMs and embedding models."""
        return {a: m.model_id for m in [*self.models, *self.embedding_models] for a in m.aliases}

    def database_url(self) -> str:
        from serve.storage.sql import default_database_url

        return os.environ.get("STACKSERVE_DATABASE_URL") or self.storage.url or default_database_url(
            self.resolved_data_dir())

    def blob_url(self) -> str:
        """The blob store's URL; the default keeps bytes where they always were, under the data directory."""
        return os.environ.get("STACKSERVE_BLOB_URL") or self.storage.blob_url or str(self.resolved_data_dir())

    def telemetry_store_url(self) -> str:
        return self.telemetry.span_store.url or f"sqlite:///{self.resolved_data_dir() / 'telemetry.db'}"

    def resolved_data_dir(self) -> Path:
        raw = os.environ.get("STACKSERVE_DATA_DIR") or self.data_dir or "~/.stackserve"
        return Path(raw).expanduser()

    def resolved_model_cache_dir(self) -> Path:
        raw = os.environ.get("STACKSERVE_MODEL_CACHE") or self.model_cache_dir or "~/.cache/stackserve/models"
        return Path(raw).expanduser()

    def resolved_api_keys(self) -> list[str]:
        """Keys of the shared "default" principal: from the config plus `STACKSERVE_API_KEYS` (comma separated)."""
        env = [k.strip() for k in os.environ.get("STACKSERVE_API_KEYS", "").split(",") if k.strip()]
        return [*self.server.api_keys, *env]

    def access_control(self) -> bool:
        """Whether principals are configured: then every deployment learns who is calling (owners, 404s)."""
        return bool(self.server.principals)


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        # a tagged union adds its tag to the path (models.0.engine.vllm.x): the key path is what the file says
        path = [p for i, p in enumerate(e["loc"]) if not (p in ENGINE_CONFIGS and i and e["loc"][i - 1] == "engine")]
        loc = ".".join(str(p) for p in path) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "value_error":
            msg = str(e["ctx"]["error"])  # our own message, without pydantic's "Value error, " prefix
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>") -> StackConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return StackConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: invalid config\n{_format_errors(e)}") from None


def load_config(path: str | os.PathLike) -> StackConfig:
    """Read and validate a YAML config file. Raises ConfigError with the file and key named."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    return parse_config(data, str(p))
