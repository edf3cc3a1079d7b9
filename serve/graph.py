"""The graph builder: a StackConfig -> a Ray Serve application (ingress -> one LLM deployment per model).

`build_app` is also a Ray Serve application builder, so a Serve config file can name it:
`serve run serve.graph:build_app config=configs/local.yaml`.
"""

from __future__ import annotations

import re
from typing import Any

from ray.serve import Application

from serve.config import StackConfig, load_config


def deployment_name(model_id: str, prefix: str = "LLM") -> str:
    return f"{prefix}:" + re.sub(r"[^A-Za-z0-9_.-]+", "--", model_id)


def build_graph(config: StackConfig) -> Application:
    from deployments.inference.deployment import LLMServer
    from deployments.vector_io.embeddings_deployment import EmbeddingsServer
    from serve.ingress import Ingress
    from serve.telemetry.instrument import TelemetrySettings

    telemetry = TelemetrySettings.from_stack(config)  # every deployment sets its replica's telemetry up from it
    cache = str(config.resolved_model_cache_dir())
    llms = {
        m.model_id: LLMServer.options(name=deployment_name(m.model_id), **m.serve_options()).bind(
            m, cache, telemetry=telemetry)
        for m in config.models
    }
    embedders = {
        m.model_id: EmbeddingsServer.options(name=deployment_name(m.model_id, "Embeddings"),
                                             **m.deployment.serve_options()).bind(m, telemetry=telemetry)
        for m in config.embedding_models
    }
    vector_io = None
    if config.vector_io is not None and config.vector_io.enabled:
        from deployments.vector_io.deployment import VectorIOServer

        vector_io = VectorIOServer.options(name="VectorIO", **config.vector_io.deployment.serve_options()).bind(
            config.vector_io, config.embedding_models, embedders, str(config.resolved_data_dir()),
            config.database_url(), telemetry=telemetry)
    safety = None
    if config.safety is not None:
        from deployments.safety.deployment import SafetyServer

        shields = [s.model_dump() for s in config.safety.shields]
        safety = SafetyServer.options(name="Safety", **config.safety.deployment.serve_options()).bind(
            shields, llms, config.database_url(), telemetry=telemetry)
    agents = None
    if config.agents is not None and config.agents.enabled and llms:
        from deployments.agents.deployment import AgentsServer

        agents = AgentsServer.options(name="Agents", **config.agents.deployment.serve_options()).bind(
            llms, vector_io, safety, config.database_url(), config.agents,
            telemetry=telemetry)
    datasetio = None
    if config.datasetio is not None and config.datasetio.enabled:
        from deployments.datasets.deployment import DatasetIOServer

        datasetio = DatasetIOServer.options(name="DatasetIO", **config.datasetio.deployment.serve_options()).bind(
            config.datasetio, str(config.resolved_data_dir()), config.database_url(), telemetry=telemetry)
    batches = None
    if config.batches is not None and config.batches.enabled:
        from deployments.batches.deployment import BatchesServer

        batches = BatchesServer.options(name="Batches", **config.batches.deployment.serve_options()).bind(
            config, llms, embedders, telemetry=telemetry)
    return Ingress.options(name="Ingress", **config.ingress.serve_options()).bind(config, llms, embedders, vector_io,
                                                                                 safety, agents, datasetio, batches,
                                                                                 telemetry=telemetry)


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve application builder: `args["config"]` is the path of a stackserve config file."""
    return build_graph(load_config(args.get("config", "configs/local.yaml")))
