"""The graph's service deployments in one table: which exist for a config, how each is bound, what it provides.

Adding a deployment means one entry here, its package under deployments/ (the Ray Serve class with typed methods)
and its config section; the graph builder, the Serve deploy config, the ingress's Stack accessors and
`/v1/providers` all read this table. Model deployments (one LLM or Embeddings deployment per served model) are
not nodes: they are bound per model by the graph builder.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from serve.config import StackConfig


@dataclass
class BoundGraph:
    """Handles bound so far while building: the model deployments, then each node in table order."""

    llms: dict[str, Any]
    embedders: dict[str, Any]
    nodes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Node:
    name: str  # the Serve deployment's name, and the Stack's key for its handle
    deployment: str  # "module:Class" of its Ray Serve deployment, imported only when the config has it
    options: Callable[[StackConfig], dict[str, Any] | None]  # its Serve options; None: the config leaves it out
    args: Callable[[StackConfig, BoundGraph], tuple]  # its constructor's arguments
    # what it provides, as /v1/providers lists them (Llama Stack's provider ids and types); their health is the
    # deployment's own report (its `health` method, serve/providers.py asks)
    providers: Callable[[StackConfig], list[dict[str, Any]]]

    def deployment_class(self) -> Any:
        module, _, name = self.deployment.partition(":")
        return getattr(importlib.import_module(module), name)


def provider(api: str, provider_id: str, provider_type: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """One Llama Stack provider entry, without its health (serve/providers.py adds the deployment's)."""
    return {"api": api, "provider_id": provider_id, "provider_type": provider_type, "config": config or {}}


def _enabled(section: Any) -> bool:
    return section is not None and getattr(section, "enabled", True)


def _vector_io_providers(c: StackConfig) -> list[dict[str, Any]]:
    index = c.vector_io.index
    return [provider("vector_io", "faiss", "inline::faiss", {"index": index.type, "device": index.device}),
            provider("files", "meta-reference-files", "inline::localfs"),  # Llama Stack's id for it
            provider("tool_runtime", "rag-runtime", "inline::rag-runtime")]


def _agents_providers(c: StackConfig) -> list[dict[str, Any]]:
    out = [provider("agents", "meta-reference", "inline::meta-reference"),
           provider("tool_runtime", "model-context-protocol", "remote::model-context-protocol")]
    search = c.agents.web_search
    if search is not None:  # builtin::websearch
        out.append(provider("tool_runtime", f"{search.provider}-search", f"remote::{search.provider}-search",
                            {"max_results": search.max_results}))
    return out


def _datasetio_providers(c: StackConfig) -> list[dict[str, Any]]:
    from deployments.datasets import huggingface

    out = [provider("datasetio", "localfs", "inline::localfs")]
    if c.datasetio.huggingface.enabled and huggingface.available():  # huggingface:// sources
        out.append(provider("datasetio", "huggingface", "remote::huggingface",
                            {"offline": c.datasetio.huggingface.offline}))
    return out


def _safety_providers(c: StackConfig) -> list[dict[str, Any]]:
    ids = sorted({s.provider_id for s in c.safety.shields} | {"llama-guard", "code-scanner"})
    return [provider("safety", pid, f"inline::{pid}") for pid in ids]


NODES: tuple[Node, ...] = (
    Node("VectorIO", "deployments.vector_io.deployment:VectorIOServer",
         options=lambda c: c.vector_io.deployment.serve_options() if _enabled(c.vector_io) else None,
         args=lambda c, g: (c.vector_io, c.embedding_models, g.embedders, c.blob_url(), c.database_url()),
         providers=_vector_io_providers),
    Node("Safety", "deployments.safety.deployment:SafetyServer",
         options=lambda c: c.safety.deployment.serve_options() if c.safety is not None else None,
         args=lambda c, g: ([s.model_dump() for s in c.safety.shields], g.llms, c.database_url()),
         providers=_safety_providers),
    Node("Agents", "deployments.agents.deployment:AgentsServer",  # relays LLM streams
         options=lambda c: (c.agents.deployment.serve_options(streams=True)
                            if _enabled(c.agents) and c.models else None),
         args=lambda c, g: (g.llms, g.nodes.get("VectorIO"), g.nodes.get("Safety"), c.database_url(), c.agents),
         providers=_agents_providers),
    Node("DatasetIO", "deployments.datasets.deployment:DatasetIOServer",
         options=lambda c: c.datasetio.deployment.serve_options() if _enabled(c.datasetio) else None,
         args=lambda c, g: (c.datasetio, c.blob_url(), c.database_url()),
         providers=_datasetio_providers),
    Node("Batches", "deployments.batches.deployment:BatchesServer",
         options=lambda c: c.batches.deployment.serve_options() if _enabled(c.batches) else None,
         args=lambda c, g: (c, g.llms, g.embedders),
         providers=lambda c: [provider("batches", "ray-data", "inline::reference")]),
)
