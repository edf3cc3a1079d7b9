"""Serving metrics through Ray's metrics system (exported by each node's metrics agent for Prometheus).

Names follow vLLM's (`vllm:time_to_first_token_seconds` -> `stackserve_time_to_first_token_seconds`) with `_`
for `:`, which Ray 2.60 no longer accepts in metric names; Prometheus sees them with Ray's `ray_` prefix and
counters with `_total`. Every series carries `model_name` (where there is one) and `deployment`. Metrics are
created in the replica process on setup; before that, or with `telemetry.metrics` off, recording is a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

logger = logging.getLogger("stackserve.telemetry")

# vLLM's bucket boundaries, so dashboards built for vLLM read these the same way
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0]
ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0]
E2E_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
               960.0, 1920.0, 7680.0]
FAST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]

LLM = ("model_name", "deployment")


class _Metrics:
    def __init__(self, deployment: str):
        from ray.util.metrics import Counter, Gauge, Histogram

        self.deployment = deployment

        def hist(name: str, doc: str, buckets: list[float], tags: tuple[str, ...] = LLM):
            return Histogram(f"stackserve_{name}", description=doc, boundaries=buckets, tag_keys=tags)

        self.ttft = hist("time_to_first_token_seconds", "Time to the first generated token.", TTFT_BUCKETS)
        self.itl = hist("inter_token_latency_seconds", "Time between successive engine outputs of a request.",
                        ITL_BUCKETS)
        self.e2e = hist("e2e_request_latency_seconds", "End-to-end latency of a request at its LLM deployment.",
                        E2E_BUCKETS)
        self.decode = hist("request_decode_time_seconds", "Time from the first to the last token of a request.",
                           E2E_BUCKETS)
        self.prompt_tokens = Counter("stackserve_prompt_tokens", description="Prompt tokens processed.",
                                     tag_keys=LLM)
        self.generation_tokens = Counter("stackserve_generation_tokens", description="Tokens generated.",
                                         tag_keys=LLM)
        self.success = Counter("stackserve_request_success", description="Finished requests by finish reason.",
                               tag_keys=(*LLM, "finished_reason"))
        self.running = Gauge("stackserve_num_requests_running", description="Requests in the engine's batch.",
                             tag_keys=LLM)
        self.waiting = Gauge("stackserve_num_requests_waiting", description="Requests queued in the engine.",
                             tag_keys=LLM)
        self.prefix_queries = Counter("stackserve_prefix_cache_queries", tag_keys=LLM,
                                      description="Prompt tokens looked up in the engine's prefix cache.")
        self.prefix_hits = Counter("stackserve_prefix_cache_hits", tag_keys=LLM,
                                   description="Prompt tokens found in the engine's prefix cache (not computed).")
        self.kv_usage = Gauge("stackserve_kv_cache_usage_perc", description="Fraction of KV-cache blocks in use.",
                              tag_keys=LLM)
        # counted where the request router runs (the caller's process): where requests to an LLM went, and why
        self.routed = Counter("stackserve_routed_requests",
                              tag_keys=("deployment", "llm_deployment", "replica", "reason"),
                              description="Requests sent to an LLM replica, by why (session, prefix or load).")
        self.embedding = hist("embedding_latency_seconds", "Latency of an embeddings request.", FAST_BUCKETS)
        self.search = hist("vector_search_latency_seconds", "Latency of a vector store search.", FAST_BUCKETS,
                           ("deployment", "search_mode"))
        self.shield = hist("shield_latency_seconds", "Latency of running one shield.", FAST_BUCKETS,
                           ("deployment", "shield_id"))

    def tags(self, **tags: Any) -> dict[str, str]:
        return {"deployment": self.deployment, **{k: str(v) for k, v in tags.items()}}


_metrics: _Metrics | None = None


def setup_metrics(deployment: str) -> None:
    global _metrics
    if _metrics is None:
        _metrics = _Metrics(deployment)


def metrics() -> _Metrics | None:
    """The process's metrics, or None when they are off (callers skip all work then)."""
    return _metrics


def observe_search(seconds: float, args: dict[str, Any]) -> None:
    if _metrics is not None:
        _metrics.search.observe(seconds, _metrics.tags(search_mode=args.get("mode", "vector")))


def observe_routing(llm_deployment: str, replica: str, reason: str) -> None:
    if _metrics is not None:
        _metrics.routed.inc(1, _metrics.tags(llm_deployment=llm_deployment, replica=replica, reason=reason))


def observe_shield(seconds: float, args: dict[str, Any]) -> None:
    if _metrics is not None:
        _metrics.shield.observe(seconds, _metrics.tags(shield_id=args.get("shield_id", "")))


def watch_engine(engine: Any, model_name: str, period_s: float = 1.0) -> None:
    """Sample the engine's running/waiting/KV-cache gauges and prefix-cache counters from a daemon thread
    (engine.stats() only reads; its counters are totals, so each sample adds what grew since the last)."""
    m = _metrics
    if m is None:
        return
    tags = m.tags(model_name=model_name)
    seen = {"queries": 0, "hits": 0}

    def loop() -> None:
        while True:
            try:
                s = engine.stats()
                m.running.set(s.running, tags)
                m.waiting.set(s.waiting, tags)
                if s.total_kv_blocks:
                    m.kv_usage.set(1.0 - s.free_kv_blocks / s.total_kv_blocks, tags)
                for key, counter, total in (("queries", m.prefix_queries, s.prefix_cache_queries),
                                            ("hits", m.prefix_hits, s.prefix_cache_hits)):
                    if total > seen[key]:
                        counter.inc(total - seen[key], tags)
                        seen[key] = total
            except Exception:  # a stats hiccup must not end the sampling
                logger.debug("engine stats sampling failed", exc_info=True)
            time.sleep(period_s)

    threading.Thread(target=loop, name="stackserve-engine-metrics", daemon=True).start()
