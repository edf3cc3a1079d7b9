"""The OpenAI Batch API's deployment."""

from __future__ import annotations

from pydantic import Field

from serve.config.base import DeploymentOptions, _Strict, default_deployment


class BatchesConfig(_Strict):
    """The OpenAI Batch API: jobs run on Ray Data against the model deployments (needs vector_io for files)."""

    enabled: bool = True
    max_concurrent_requests: int | None = Field(default=None, ge=1)  # per job; default 2 x the model's max_num_seqs
    lines_per_batch: int = Field(default=4, ge=1, le=1024)  # requests per Ray Data batch
    max_input_lines: int = Field(default=50000, ge=1)
    lease_timeout_s: float = Field(default=30, ge=1)  # a job whose replica stops renewing is resumed by another
    deployment: DeploymentOptions = default_deployment(num_cpus=0.1)
