"""Safety: shields (Llama Guard on a served model, Prompt Guard, the code scanner) on the Safety deployment."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from serve.config.base import DeploymentOptions, _Strict, default_deployment


class ShieldConfig(_Strict):
    shield_id: str
    provider_id: Literal["llama-guard", "prompt-guard", "code-scanner"]
    provider_shield_id: str | None = None  # llama-guard: a served model id; prompt-guard: a classifier directory
    params: dict[str, Any] = Field(default_factory=dict)  # excluded_categories, mode, threshold, max_tokens


class SafetyConfig(_Strict):
    shields: list[ShieldConfig] = Field(default_factory=list)
    deployment: DeploymentOptions = default_deployment(num_cpus=0.1)
