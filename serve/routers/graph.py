"""stackserve's own routes under /v1/stackserve: the deployment graph as Ray Serve runs it."""

from __future__ import annotations

from fastapi import APIRouter

from serve.context import get_stack
from serve.graph_status import graph_status
from serve.protocol.graph_status import GraphStatus

router = APIRouter(tags=["stackserve"])


@router.get("/stackserve/graph", response_model=GraphStatus)
async def get_graph() -> GraphStatus:
    """Each deployment's Serve status and replica states, with the replicas (or autoscaling bounds) its config
    asks for, and each LLM deployment's engine load. What the playground's Graph view shows."""
    return await graph_status(get_stack())
