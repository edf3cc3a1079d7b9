"""DatasetIO: the Llama Stack datasets API."""

from __future__ import annotations

from serve.config.base import DeploymentOptions, _Strict, default_deployment


class DatasetIOConfig(_Strict):
    """Llama Stack datasets (Parquet under the data directory) on their own deployment."""

    enabled: bool = True
    allow_local_files: bool = True  # sources may name files on the server's disk; turn off on shared servers
    deployment: DeploymentOptions = default_deployment(num_cpus=0.05)
