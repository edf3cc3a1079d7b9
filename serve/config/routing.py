"""How requests pick one replica of an LLM deployment: Serve's request router and its settings.

`prefix_aware` sends a request to the replica whose prefix cache most likely holds the start of its prompt, and a
session (prompt_cache_key, x-session-id, a Responses chain or conversation, a Llama Stack agent session) to one
replica; `session` only does the latter; `power_of_two` is Ray Serve's default router; `ray_prefix_cache` is Ray
Serve LLM's `PrefixCacheAffinityRouter` (no sessions; deployments/inference/ray_prefix_router.py). Without a policy, a
deployment that can run more than one replica is `prefix_aware` and one that cannot uses Serve's default (there is
no choice to make). Either affinity yields to load once its replica holds `max_imbalance` more requests than the
least loaded one (by default the engine's batch, `max_num_seqs`: only then would the request wait for a whole batch
there while the other replica could compute its prompt at once). A quarter of the batch yielded too early: on two
SmolLM2 replicas (8 users, 1,024-token histories; docs/benchmarks.md) users moved between replicas on momentary
imbalance, each move a full recompute, and prefix_aware ran 1.23x power_of_two's output tokens/s with max_imbalance
2 against 1.9x with 8.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from serve.config.base import _Strict

ROUTER_CLASS = "deployments.inference.router:AffinityRouter"
RAY_PREFIX_ROUTER_CLASS = "deployments.inference.ray_prefix_router:RayPrefixCacheRouter"
Policy = Literal["prefix_aware", "session", "power_of_two", "ray_prefix_cache"]


class RoutingConfig(_Strict):
    policy: Policy | None = None  # None: prefix_aware with more than one replica, else power_of_two
    # ongoing requests the preferred replica may hold beyond the least loaded one before load decides instead;
    # None: max_num_seqs, at least 2
    max_imbalance: int | None = Field(default=None, ge=0)
    # the prompt index: characters per block (a match counts whole blocks) and blocks remembered per replica (LRU)
    block_chars: int = Field(default=256, ge=16)
    max_blocks_per_replica: int = Field(default=20000, ge=1)

    def resolved_policy(self, multi_replica: bool) -> Policy:
        return self.policy or ("prefix_aware" if multi_replica else "power_of_two")

    def serve_options(self, multi_replica: bool, max_num_seqs: int) -> dict[str, Any]:
        """The deployment's `request_router_config`, or nothing for Serve's default router."""
        policy = self.resolved_policy(multi_replica)
        if policy == "power_of_two":
            return {}
        imbalance = self.max_imbalance if self.max_imbalance is not None else max(2, max_num_seqs)
        if policy == "ray_prefix_cache":  # Ray's router, with the same load fallback as ours
            return {"request_router_config": {"request_router_class": RAY_PREFIX_ROUTER_CLASS,
                                              "request_router_kwargs": {"imbalanced_threshold": imbalance}}}
        kwargs = {**self.model_dump(exclude={"policy"}), "policy": policy, "max_imbalance": imbalance}
        return {"request_router_config": {"request_router_class": ROUTER_CLASS, "request_router_kwargs": kwargs}}
