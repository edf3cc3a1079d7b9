"""Ray Serve options of one deployment, checked on load: autoscaling and replica resources.

The field names are Ray Serve's and pass through to it unchanged. They are checked here so that a bad value names
its key path in the config file (`models.0.deployment.autoscaling_config.initial_replicas: ...`) instead of
failing later inside the Serve controller. LLM deployments scale with `llm_autoscaling_defaults`.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# LLM replicas are expensive to start (minutes to load weights on a GPU node) and their capacity is the engine's
# batch: scale up within seconds of a sustained queue, scale down only after minutes of spare capacity.
LLM_UPSCALE_DELAY_S = 10.0
LLM_DOWNSCALE_DELAY_S = 300.0
# a stopping LLM replica finishes its in-flight generations (up to this long) before it exits
LLM_GRACEFUL_SHUTDOWN_TIMEOUT_S = 120.0

ACTOR_OPTION_KEYS = {"num_cpus", "num_gpus", "memory", "resources", "accelerator_type", "runtime_env",
                     "label_selector", "object_store_memory"}


class AutoscalingConfig(BaseModel):
    """Ray Serve's autoscaling options; unset fields take Ray's defaults (the LLM defaults on LLM deployments)."""

    model_config = ConfigDict(extra="forbid")

    # Declared min -> max -> initial so that each validator sees the bounds it is checked against.
    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float | None = Field(default=None, gt=0)
    upscale_delay_s: float | None = Field(default=None, ge=0)
    downscale_delay_s: float | None = Field(default=None, ge=0)
    downscale_to_zero_delay_s: float | None = Field(default=None, ge=0)
    look_back_period_s: float | None = Field(default=None, gt=0)
    metrics_interval_s: float | None = Field(default=None, gt=0)  # how often handles and replicas report load
    upscaling_factor: float | None = Field(default=None, gt=0)
    downscaling_factor: float | None = Field(default=None, gt=0)

    @field_validator("max_replicas")
    @classmethod
    def _max_at_least_min(cls, v: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_replicas")
        if v is not None and low is not None and v < low:
            raise ValueError(f"max_replicas ({v}) must be >= min_replicas ({low})")
        return v

    @field_validator("initial_replicas")
    @classmethod
    def _initial_between(cls, v: int | None, info: ValidationInfo) -> int | None:
        low, high = info.data.get("min_replicas"), info.data.get("max_replicas")
        if v is not None and low is not None and v < low:
            raise ValueError(f"initial_replicas ({v}) must be >= min_replicas ({low})")
        if v is not None and high is not None and v > high:
            raise ValueError(f"initial_replicas ({v}) must be <= max_replicas ({high})")
        return v


def llm_autoscaling_defaults(max_num_seqs: int, max_ongoing_requests: int) -> dict[str, Any]:
    """Autoscaling defaults for an LLM deployment: one full engine batch per replica is the target.

    Below `max_num_seqs` ongoing requests a replica has free batch slots, so another replica would only split the
    batch; above it requests wait in the engine's queue. Capped by `max_ongoing_requests`, which Serve never exceeds
    per replica, so the target stays reachable.
    """
    return {"target_ongoing_requests": min(max_num_seqs, max_ongoing_requests),
            "upscale_delay_s": LLM_UPSCALE_DELAY_S, "downscale_delay_s": LLM_DOWNSCALE_DELAY_S}


def _non_negative(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and value >= 0


def check_actor_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Refuse what Ray would refuse at deploy time: unknown keys, negative amounts, CPU/GPU inside `resources`."""
    unknown = sorted(set(opts) - ACTOR_OPTION_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(ACTOR_OPTION_KEYS))})")
    for key in ("num_cpus", "num_gpus", "memory", "object_store_memory"):
        if key in opts and not _non_negative(opts[key]):
            raise ValueError(f"{key} must be a number >= 0, got {opts[key]!r}")
    resources = opts.get("resources", {})
    if not isinstance(resources, dict):
        raise ValueError("resources must be a mapping of custom resource name to amount")
    for name, amount in resources.items():
        if name in ("CPU", "GPU", "memory"):
            raise ValueError(f"resources.{name}: use num_cpus / num_gpus / memory instead")
        if not _non_negative(amount):
            raise ValueError(f"resources.{name} must be a number >= 0, got {amount!r}")
    return opts
