"""What every config section shares: the strict base model, the loader's error, and Ray Serve deployment options."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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

    @property
    def multi_replica(self) -> bool:
        """Whether the deployment can run more than one replica (Ray's `auto` scales up to 100)."""
        if self.autoscaling_config is not None and self.autoscaling_config.max_replicas is not None:
            return self.autoscaling_config.max_replicas > 1
        return self.autoscaling or (self.num_replicas or 1) > 1

    def serve_options(self, llm_max_num_seqs: int | None = None, streams: bool = False) -> dict[str, Any]:
        """The options for Ray Serve. An LLM deployment passes its engine's batch size: with autoscaling on, the
        fields left unset take the LLM defaults (serve/serve_options.py) instead of Ray's generic ones. LLM
        deployments and those that relay their streams (`streams`: the ingress, agents) drain for longer."""
        opts = self.model_dump(exclude_none=True)
        if llm_max_num_seqs is not None or streams:  # streams run for minutes: drain them, not Ray's generic 20 s
            opts.setdefault("graceful_shutdown_timeout_s", LLM_GRACEFUL_SHUTDOWN_TIMEOUT_S)
        if llm_max_num_seqs is not None and self.autoscaling:
            opts["autoscaling_config"] = {**llm_autoscaling_defaults(llm_max_num_seqs, self.max_ongoing_requests),
                                          **opts.get("autoscaling_config", {})}
        return opts


def default_deployment(num_cpus: float) -> Any:
    """A section's default deployment options: `num_cpus` for its replica actor, Ray's defaults for the rest."""
    return Field(default_factory=lambda: DeploymentOptions(ray_actor_options={"num_cpus": num_cpus}))
