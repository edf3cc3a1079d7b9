"""Per-run metrics from request results: throughput, latency distributions, goodput under SLOs, errors by type.

Definitions (times in ms in the output):
  request_throughput     completed requests / measured duration (first measured send to last measured end)
  output_throughput      output tokens of completed requests / duration; total_token_throughput adds prompt tokens
  ttft                   time to the first content chunk (streaming only)
  tpot                   per request: (e2e - ttft) / (output_tokens - 1), requests with >= 2 output tokens
  itl                    every gap between consecutive content chunks, pooled over requests
  e2e                    send to the end of the response
  goodput                completed requests meeting every SLO (ttft, tpot, itl p99 of the request, e2e) / duration
Percentiles are numpy's linear interpolation; a distribution with no samples reports None.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.client import RequestResult

PERCENTILES = (50, 90, 99)
SLO_METRICS = ("ttft", "tpot", "itl", "e2e")


def distribution(values_s: list[float]) -> dict[str, float | None]:
    """mean, p50, p90, p99 (and min, max) of seconds, reported in milliseconds."""
    if not values_s:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}, "min": None, "max": None, "n": 0}
    a = np.asarray(values_s, dtype=float) * 1000.0
    out: dict[str, float | None] = {"mean": float(a.mean())}
    out.update({f"p{p}": float(np.percentile(a, p)) for p in PERCENTILES})
    out.update({"min": float(a.min()), "max": float(a.max()), "n": int(a.size)})
    return out


def resolve_tokens(results: list[RequestResult], count: Callable[[str], int] | None) -> None:
    """Fill prompt/output token counts: the server's usage where it sent one, else the tokenizer (else chunks)."""
    for r in results:
        if not r.ok:
            continue
        usage = r.usage or {}
        if usage.get("completion_tokens") is not None or (usage.get("prompt_tokens") is not None and not r.text):
            r.output_tokens = int(usage.get("completion_tokens") or 0)
            r.prompt_tokens = int(usage.get("prompt_tokens") or r.expected_input_tokens)
            r.token_source = "usage"
        elif count is not None:
            r.output_tokens = count(r.text) if r.text else 0
            r.prompt_tokens = r.expected_input_tokens
            r.token_source = "tokenizer"
        else:
            r.output_tokens = r.chunks
            r.prompt_tokens = r.expected_input_tokens
            r.token_source = "chunks"
        r.text = ""  # counted: drop the text, sweeps can hold many results


def request_slo_values(r: RequestResult) -> dict[str, float | None]:
    """The per-request values SLOs are checked against, in ms (ITL: the request's own p99 gap)."""
    itl = float(np.percentile(np.asarray(r.itl) * 1000.0, 99)) if r.itl else None
    return {"ttft": None if r.ttft is None else r.ttft * 1000.0,
            "tpot": None if r.tpot is None else r.tpot * 1000.0,
            "itl": itl, "e2e": r.e2e * 1000.0}


def meets_slos(r: RequestResult, slos_ms: dict[str, float]) -> bool:
    """A completed request whose every SLO'd value is within bounds; a value that could not be measured (TPOT of a
    one-token answer, ITL of a one-chunk answer) does not count against it."""
    if not r.ok:
        return False
    values = request_slo_values(r)
    return all(values[k] is None or values[k] <= bound for k, bound in slos_ms.items())


def summarize(results: list[RequestResult], duration_s: float, slos_ms: dict[str, float] | None = None,
              count: Callable[[str], int] | None = None) -> dict[str, Any]:
    """The metrics record of one run. `count` counts tokens in text when the server sent no usage."""
    resolve_tokens(results, count)
    slos_ms = slos_ms or {}
    done = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    errors = Counter(r.error_type for r in failed)
    examples: dict[str, str] = {}
    for r in failed:
        examples.setdefault(r.error_type or "unknown", r.error or "")
    out_tok = sum(r.output_tokens or 0 for r in done)
    in_tok = sum(r.prompt_tokens or 0 for r in done)
    cached = sum(cached_tokens(r.usage) for r in done)
    good = sum(meets_slos(r, slos_ms) for r in done)
    lags = [r.start - r.scheduled for r in results if r.scheduled is not None and r.start]
    n = len(results)
    return {
        "requests": n,
        "completed": len(done),
        "failed": len(failed),
        "error_rate": len(failed) / n if n else 0.0,
        "errors_by_type": dict(sorted(errors.items())),
        "error_examples": examples,
        "duration_s": duration_s,
        "request_throughput": len(done) / duration_s,
        "input_throughput": in_tok / duration_s,
        "output_throughput": out_tok / duration_s,
        "total_token_throughput": (in_tok + out_tok) / duration_s,
        "input_tokens_total": in_tok,
        # prompt tokens the server found in its prefix cache (usage's cached_tokens; 0 where it reports none)
        "cached_tokens_total": cached,
        "cached_token_share": cached / in_tok if in_tok else None,
        "output_tokens_total": out_tok,
        "mean_input_tokens": in_tok / len(done) if done else None,
        "mean_output_tokens": out_tok / len(done) if done else None,
        "mean_requested_output_tokens": float(np.mean([r.expected_output_tokens for r in done])) if done else None,
        "token_source": dict(Counter(r.token_source for r in done)),
        "ttft_ms": distribution([r.ttft for r in done if r.ttft is not None]),
        "tpot_ms": distribution([t for r in done if (t := r.tpot) is not None]),
        "itl_ms": distribution([g for r in done for g in r.itl]),
        "e2e_ms": distribution([r.e2e for r in done]),
        "goodput": {"slos_ms": slos_ms, "good_requests": good, "request_goodput": good / duration_s,
                    "good_fraction": good / n if n else 0.0},
        "send_lag_ms": distribution(lags) if lags else None,
    }


def cached_tokens(usage: dict[str, Any] | None) -> int:
    """Cached prompt tokens from a usage object: chat/completions' or Responses' details."""
    details = (usage or {}).get("prompt_tokens_details") or (usage or {}).get("input_tokens_details") or {}
    return int(details.get("cached_tokens") or 0)


def parse_slos(specs: list[str]) -> dict[str, float]:
    """`ttft:500`, `tpot:50`, `itl:100`, `e2e:5000` (milliseconds) -> {"ttft": 500.0, ...}."""
    out: dict[str, float] = {}
    for spec in specs:
        for part in spec.split(","):
            key, _, value = part.partition(":")
            key = key.strip().lower().removesuffix("_ms")
            if key not in SLO_METRICS or not value:
                raise ValueError(f"SLO {part!r}: expected one of {', '.join(SLO_METRICS)} as NAME:MILLISECONDS")
            out[key] = float(value)
    return out
