"""The one config file format: a YAML stack description validated by pydantic, one module per section.

A config names the models to serve (each on its own LLM deployment with its own engine and Ray Serve options),
the ingress options, the server address, the data directory, optional principals and API keys, and the optional
deployments (vector IO, safety, agents, datasets, batches). `load_config` is the one loader; its errors name the
bad key path (e.g. `models.0.engine.max_num_seqs`).
"""

from serve.config.agents import AgentsConfig, WebSearchConfig
from serve.config.base import ConfigError, DeploymentOptions
from serve.config.batches import BatchesConfig
from serve.config.datasets import DatasetIOConfig, HuggingFaceSourceConfig
from serve.config.engine import ENGINE_CONFIGS, EngineConfig, MetaReferenceEngineConfig, VLLMEngineConfig
from serve.config.models import EmbeddingModelConfig, ModelConfig
from serve.config.safety import SafetyConfig, ShieldConfig
from serve.config.server import PrincipalConfig, RateLimitConfig, ServerConfig, StorageConfig
from serve.config.stack import StackConfig, load_config, parse_config
from serve.config.telemetry import OTLPExporterConfig, SpanStoreConfig, TelemetryConfig
from serve.config.vector_io import IndexConfig, VectorIOConfig

__all__ = [
    "ENGINE_CONFIGS", "AgentsConfig", "BatchesConfig", "ConfigError", "DatasetIOConfig", "DeploymentOptions",
    "EmbeddingModelConfig", "EngineConfig", "HuggingFaceSourceConfig", "IndexConfig", "MetaReferenceEngineConfig",
    "ModelConfig", "OTLPExporterConfig", "PrincipalConfig", "RateLimitConfig", "SafetyConfig", "ServerConfig",
    "ShieldConfig", "SpanStoreConfig", "StackConfig", "StorageConfig", "TelemetryConfig", "VLLMEngineConfig",
    "VectorIOConfig", "WebSearchConfig", "load_config", "parse_config",
]
