"""The graph builder: a StackConfig -> a Ray Serve application (ingress -> model deployments and service nodes).

`build_app` is also a Ray Serve application builder, so a Serve config file can name it:
`serve run serve.graph:build_app config=configs/local.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.serve import Application

from serve.config import StackConfig, load_config, parse_config
from serve.deploy_config import deployment_name, deployment_options
from serve.nodes import NODES, BoundGraph

__all__ = ["build_app", "build_graph", "deployment_name"]


def build_graph(config: StackConfig, engines: dict[str, Callable[..., Any]] | None = None) -> Application:
    """`engines`: model id -> a picklable engine factory, (checkpoint, tokenizer, model config) -> Engine, for the
    models whose engine is not the one their config names (tests inject a scripted engine this way)."""
    from deployments.inference.deployment import LLMServer
    from deployments.vector_io.embeddings_deployment import EmbeddingsServer
    from serve.ingress import EngineIngress, Ingress
    from serve.local_handle import IngressHandle
    from serve.telemetry.instrument import TelemetrySettings

    opts = deployment_options(config)  # names and Serve options of every deployment below
    telemetry = TelemetrySettings.from_stack(config)  # every deployment sets its replica's telemetry up from it
    cache = str(config.resolved_model_cache_dir())
    unknown = set(engines or {}) - {m.model_id for m in config.models}
    if unknown:
        raise ValueError(f"engines for models the config does not serve: {', '.join(sorted(unknown))}")
    graph = BoundGraph(llms={}, embedders={})
    hosted = config.ingress_model()
    for m in config.models:
        if m is hosted:  # its engine runs in the Ingress, bound last: the other deployments look it up by name
            graph.llms[m.model_id] = IngressHandle()
            continue
        name = deployment_name(m.model_id)
        factory = (engines or {}).get(m.model_id)
        graph.llms[m.model_id] = LLMServer.options(name=name, **opts[name]).bind(m, cache, factory,
                                                                                 telemetry=telemetry)
    for m in config.embedding_models:
        name = deployment_name(m.model_id, "Embeddings")
        graph.embedders[m.model_id] = EmbeddingsServer.options(name=name, **opts[name]).bind(m, telemetry=telemetry)
    for node in NODES:  # in table order: a node's arguments may name nodes bound before it
        if node.name in opts:
            cls = node.deployment_class()
            graph.nodes[node.name] = cls.options(name=node.name, **opts[node.name]).bind(
                *node.args(config, graph), telemetry=telemetry)
    if hosted is not None:
        llms = {k: v for k, v in graph.llms.items() if k != hosted.model_id}
        return EngineIngress.options(name="Ingress", **opts["Ingress"]).bind(
            config, llms, graph.embedders, graph.nodes, cache, (engines or {}).get(hosted.model_id),
            telemetry=telemetry)
    return Ingress.options(name="Ingress", **opts["Ingress"]).bind(config, graph.llms, graph.embedders, graph.nodes,
                                                                 telemetry=telemetry)


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve application builder. `args["config"]` is the path of a stackserve config file, or the config
    itself as a mapping (what `stackserve serve-config` writes into a Serve deploy config)."""
    config = args.get("config", "configs/local.yaml")
    if isinstance(config, dict):
        return build_graph(parse_config(config, "args.config"))
    return build_graph(load_config(config))
