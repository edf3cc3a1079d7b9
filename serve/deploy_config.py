"""The graph's deployments by name with their Ray Serve options, and a stackserve config as a Ray Serve deploy
config (the input of `serve deploy` on a cluster).

`deployment_options` decides which of the graph's deployments exist (the service deployments are the table in
serve/nodes.py): the graph builder binds exactly these names and options, and `serve_deploy_config` lists them in
the Serve file, so Ray Serve's schema checks every deployment's options and an operator can read (or override) them
there.
"""

from __future__ import annotations

import json
import re
from typing import Any

from serve.config import StackConfig
from serve.nodes import NODES

APP_IMPORT_PATH = "serve.graph:build_app"


def deployment_name(model_id: str, prefix: str = "LLM") -> str:
    return f"{prefix}:" + re.sub(r"[^A-Za-z0-9_.-]+", "--", model_id)


def llm_deployment_name(config: StackConfig, model_id: str) -> str:
    """The deployment whose replicas run `model_id`'s engine: its LLM deployment, or the Ingress (`in_ingress`)."""
    hosted = config.ingress_model()
    return "Ingress" if hosted is not None and hosted.model_id == model_id else deployment_name(model_id)


def deployment_options(config: StackConfig) -> dict[str, dict[str, Any]]:
    """Every deployment of the graph, ingress first, mapped to its Ray Serve options. A model served `in_ingress`
    has no deployment of its own: the Ingress runs its engine, with its options (`ModelConfig.serve_options`)."""
    hosted = config.ingress_model()
    out = {"Ingress": (config.ingress.serve_options(streams=True) if hosted is None  # every stream passes through it
                       else hosted.serve_options(ingress=config.ingress))}
    for m in config.models:
        if m is not hosted:
            out[deployment_name(m.model_id)] = m.serve_options()
    for e in config.embedding_models:
        out[deployment_name(e.model_id, "Embeddings")] = e.deployment.serve_options()
    for node in NODES:
        opts = node.options(config)
        if opts is not None:
            out[node.name] = opts
    return out


def serve_deploy_config(config: StackConfig, app_name: str = "stackserve", route_prefix: str = "/") -> dict[str, Any]:
    """A Ray Serve deploy config (`ray.serve.schema.ServeDeploySchema`) serving `config` as one application.

    The stackserve config travels inline in the application's `args` (only the keys it sets, so environment
    overrides such as STACKSERVE_DATA_DIR still apply where it runs): the file is self-contained and
    `serve deploy` needs no config file on the cluster.
    """
    config_file = {
        "proxy_location": "HeadOnly",  # one HTTP entry point on the head node; EveryNode behind a load balancer
        "http_options": {"host": config.server.host, "port": config.server.port},
        "applications": [{
            "name": app_name,
            "route_prefix": route_prefix,
            "import_path": APP_IMPORT_PATH,
            "args": {"config": config.model_dump(mode="json", exclude_unset=True)},
            "deployments": [{"name": name, **opts} for name, opts in deployment_options(config).items()],
        }],
    }
    return json.loads(json.dumps(config_file))  # plain data, no shared objects (YAML would write them as aliases)
