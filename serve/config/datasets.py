"""DatasetIO: the Llama Stack datasets API."""

from __future__ import annotations

from pydantic import Field

from serve.config.base import DeploymentOptions, _Strict, default_deployment


class HuggingFaceSourceConfig(_Strict):
    """`huggingface://datasets/<repo>?split=...&name=...` sources, read with huggingface_hub: the split's data files
    from the hub when it answers, else from the local Hugging Face cache."""

    enabled: bool = True
    endpoint: str | None = None  # default: HF_ENDPOINT, else https://huggingface.co (a mirror works too)
    cache_dir: str | None = None  # default: huggingface_hub's (HF_HUB_CACHE, ~/.cache/huggingface/hub)
    offline: bool = False  # the local cache only (HF_HUB_OFFLINE=1 does the same)


class DatasetIOConfig(_Strict):
    """Llama Stack datasets (Parquet parts in the blob store, `storage.blob_url`) on their own deployment."""

    enabled: bool = True
    allow_local_files: bool = True  # sources may name files on the server's disk; turn off on shared servers
    huggingface: HuggingFaceSourceConfig = Field(default_factory=HuggingFaceSourceConfig)
    deployment: DeploymentOptions = default_deployment(num_cpus=0.05)
