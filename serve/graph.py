"""The graph builder: a StackConfig -> a Ray Serve application (ingress -> one LLM deployment per model).

`build_app` is also a Ray Serve application builder, so a Serve config file can name it:
`serve run serve.graph:build_app config=configs/local.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.serve import Application

from serve.config import StackConfig, load_config, parse_config
from serve.deploy_config import deployment_name, deployment_options

__all__ = ["build_app", "build_graph", "deployment_name"]


def build_graph(config: StackConfig, engines: dict[str, Callable[..., Any]] | None = None) -> Application:
    """`engines`: model id -> a picklable engine factory, (checkpoint, tokenizer, model config) -> Engine, for the
    models whose engine is not the one their config names (tests inject a scripted engine this way)."""
    from deployments.inference.deployment import LLMServer
    from deployments.vector_io.embeddings_deployment import EmbeddingsServer
    from serve.ingress import Ingress
    from serve.telemetry.instrument import TelemetrySettings

    opts = deployment_options(config)  # names and Serve options of every deployment below
    telemetry = TelemetrySettings.from_stack(config)  # every deployment sets its replica's telemetry up from it
    cache = str(config.resolved_model_cache_dir())
    unknown = set(engines or {}) - {m.model_id for m in config.models}
    if unknown:
        raise ValueError(f"engines for models the config does not serve: {', '.join(sorted(unknown))}")
    llms = {}
    for m in config.models:
        name = deployment_name(m.model_id)
        factory = (engines or {}).get(m.model_id)
        llms[m.model_id] = LLMServer.options(name=name, **opts[name]).bind(m, cache, factory, telemetry=telemetry)
    embedders = {}
    for m in config.embedding_models:
        name = deployment_name(m.model_id, "Embeddings")
        embedders[m.model_id] = EmbeddingsServer.options(name=name, **opts[name]).bind(m, telemetry=telemetry)
    vector_io = None
    if "VectorIO" in opts:
        from deployments.vector_io.deployment import VectorIOServer

        vector_io = VectorIOServer.options(name="VectorIO", **opts["VectorIO"]).bind(
            config.vector_io, config.embedding_models, embedders, str(config.resolved_data_dir()),
            config.database_url(), telemetry=telemetry)
    safety = None
    if "Safety" in opts:
        from deployments.safety.deployment import SafetyServer

        shields = [s.model_dump() for s in config.safety.shields]
        safety = SafetyServer.options(name="Safety", **opts["Safety"]).bind(
            shields, llms, config.database_url(), telemetry=telemetry)
    agents = None
    if "Agents" in opts:
        from deployments.agents.deployment import AgentsServer

        agents = AgentsServer.options(name="Agents", **opts["Agents"]).bind(
            llms, vector_io, safety, config.database_url(), config.agents, telemetry=telemetry)
    datasetio = None
    if "DatasetIO" in opts:
        from deployments.datasets.deployment import DatasetIOServer

        datasetio = DatasetIOServer.options(name="DatasetIO", **opts["DatasetIO"]).bind(
            config.datasetio, str(config.resolved_data_dir()), config.database_url(), telemetry=telemetry)
    batches = None
    if "Batches" in opts:
        from deployments.batches.deployment import BatchesServer

        batches = BatchesServer.options(name="Batches", **opts["Batches"]).bind(config, llms, embedders,
                                                                                telemetry=telemetry)
    return Ingress.options(name="Ingress", **opts["Ingress"]).bind(config, llms, embedders, vector_io, safety, agents,
                                                                 datasetio, batches, telemetry=telemetry)


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve application builder. `args["config"]` is the path of a stackserve config file, or the config
    itself as a mapping (what `stackserve serve-config` writes into a Serve deploy config)."""
    config = args.get("config", "configs/local.yaml")
    if isinstance(config, dict):
        return build_graph(parse_config(config, "args.config"))
    return build_graph(load_config(config))
