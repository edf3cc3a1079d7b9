"""Ray Serve LLM's own prefix-aware router on our LLM deployments (config `routing.policy: ray_prefix_cache`).

Ray's `PrefixCacheAffinityRouter` reads a request's text from a `messages` list of dicts or a `prompt` string; our
deployment's calls carry typed requests (pydantic messages), where it finds no text. This subclass gives it the
same prompt text our own router indexes (affinity.request_affinity) and changes nothing else: the policy, the
shared prefix tree (one detached actor per deployment) and the load fallback are Ray's. It is there to compare
with, and for users who prefer Ray's router; it has no session affinity.
"""

from __future__ import annotations

# Ray's public path (ray.serve.llm.request_router) insists on vLLM or SGLang being installed; the class needs neither
from ray.llm._internal.serve.routing_policies.prefix_aware.prefix_aware_router import PrefixCacheAffinityRouter
from ray.serve.request_router import PendingRequest

from deployments.inference.affinity import request_affinity


class RayPrefixCacheRouter(PrefixCacheAffinityRouter):
    def _extract_text_from_request(self, pending_request: PendingRequest) -> str | None:
        """The prompt text, or None for calls without one (`stats`, `health`): Ray then routes on load alone."""
        return request_affinity(pending_request.args)[1] or None
