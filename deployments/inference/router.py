"""The Serve request router of LLM deployments (config `routing.policy`: prefix_aware or session).

Serve builds one in every process that holds a handle to the deployment (the ingress, Agents, Safety, Batches):
`choose_replicas` ranks the live replicas for one request with `ReplicaChooser` (affinity.py) and Serve sends the
request to the least loaded replica of the first rank with room. A replica that dies is dropped from the ranks
when Serve notices (a failed probe or send, or the controller's update) and Serve retries the request on another
one: its sessions move, and only their cached prefixes are lost.
"""

from __future__ import annotations

import weakref
from typing import Any

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from deployments.inference.affinity import ReplicaChooser, request_affinity
from serve.telemetry.metrics import observe_routing


class AffinityRouter(RequestRouter):
    def initialize_state(self, policy: str = "prefix_aware", max_imbalance: int = 4, block_chars: int = 256,
                         max_blocks_per_replica: int = 20000, **_: Any) -> None:
        self.chooser = ReplicaChooser(policy, max_imbalance, block_chars, max_blocks_per_replica)
        # the request each routing task is choosing for, by its metadata object (see _fulfill_next_pending_request)
        self._choosing: weakref.WeakValueDictionary[int, PendingRequest] = weakref.WeakValueDictionary()

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if pending_request is None or not candidate_replicas:
            return [candidate_replicas]
        pending_request.routing_context.should_backoff = True  # the ranks cover every replica: wait, then retry
        self._choosing[id(pending_request.metadata)] = pending_request
        key, text = request_affinity(pending_request.args, pending_request.metadata.session_id)
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        cache = self.replica_queue_len_cache
        loads = {rid: cache.get(r.replica_id) or 0 for rid, r in by_id.items()}
        choice = self.chooser.rank(list(by_id), loads, key, text)
        # our own fields, read in on_request_routed
        pending_request.routing_context.affinity, pending_request.routing_context.prompt_text = choice.reason, text
        return [[by_id[rid] for rid in rank] for rank in choice.ranks]

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        ctx = pending_request.routing_context
        self.chooser.routed(replica_id.unique_id, getattr(ctx, "prompt_text", ""))
        observe_routing(self._deployment_id.name, replica_id.unique_id, getattr(ctx, "affinity", "load"))

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        self.chooser.replicas_changed(r.replica_id.unique_id for r in replicas)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self.chooser.replicas_changed(r.unique_id for r in self._replicas)

    def _fulfill_next_pending_request(self, replica: RunningReplica, request_metadata: Any = None) -> None:
        """Hands the replica to the request it was chosen for. Serve's default matches requests by internal id,
        which the calls one parent request makes share (the ingress's batch of chats, an agent's calls): a choice
        for one of them could go to a sibling, and the sibling's own choice to nobody (Ray 2.60, private API)."""
        pr = self._choosing.pop(id(request_metadata), None) if request_metadata is not None else None
        if pr is None or pr.future.done() or pr.metadata is not request_metadata:
            super()._fulfill_next_pending_request(replica, request_metadata)
            return
        self._record_queue_wait_time(pr)
        pr.future.set_result(replica)
        if self._pending_requests_by_id.get(pr.metadata.internal_request_id) is pr:
            self._remove_pending_request_from_indices(pr)
