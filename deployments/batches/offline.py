"""Offline batch jobs (`stackserve batch run`): the Batch API's request lines on Ray Data, no Serve, no HTTP.

The model is loaded inside the Ray Data UDF actors (the LLM deployment's own `LLMService`, so the OpenAI layer and
engine are the same as online). Input is an OpenAI batch JSONL file, or Parquet with a prompt column; output is the
Batch API's output and error files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployments.batches.lines import ENDPOINTS, ParsedInput, endpoint_for, parse_input
from deployments.batches.pipeline import run_lines
from deployments.batches.udf import EngineRequestsUDF
from serve.config import EmbeddingModelConfig, ModelConfig


def steady_rate(samples: list[tuple[float, int, int]], total: int, in_flight: int = 1) -> float | None:
    """Output tokens/s between 10% and 90% of the requests done, from (seconds, requests done, output tokens)
    samples: the engine's rate once the job is flowing, without its start-up or its tail.

    None when the job had no steady state to measure, and the end-to-end rate is the figure: fewer than 5 separate
    result blocks in that window, or fewer requests done in it than twice the most in flight at once (`in_flight`).
    Those requests may all have run side by side since the start, so dividing their tokens by the moments between
    their blocks would count a whole run's work in a fraction of its time."""
    lo = next((s for s in samples if s[1] >= 0.1 * total), None)
    hi = next((s for s in samples if s[1] >= 0.9 * total), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    blocks = {s[0] for s in samples if lo[0] <= s[0] <= hi[0]}
    if len(blocks) < 5 or hi[1] - lo[1] < 2 * in_flight:
        return None
    return (hi[2] - lo[2]) / (hi[0] - lo[0])


@dataclass
class Progress:
    total: int
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds, done, output tokens): the
    # start, then one per block of results
    peak_in_flight: int = 0  # the most requests the UDF actors had running at once

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def sample(self) -> None:
        self.samples.append((self.elapsed_s, self.completed + self.failed, self.output_tokens))

    def summary(self) -> dict[str, Any]:
        wall = self.elapsed_s
        steady = steady_rate(self.samples, self.total, self.peak_in_flight)
        first = self.samples[1][0] if len(self.samples) > 1 else None
        return {"requests": self.total, "completed": self.completed, "failed": self.failed,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "elapsed_s": round(wall, 2), "first_result_s": first and round(first, 2),
                "output_tokens_per_s": round(self.output_tokens / wall, 2) if wall else 0.0,
                "requests_per_s": round(self.total / wall, 3) if wall else 0.0,
                "steady_output_tokens_per_s": round(steady, 2) if steady is not None else None,
                "peak_in_flight": self.peak_in_flight}


def read_input(path: Path, model_id: str, endpoint: str | None, prompt_column: str,
               max_tokens: int | None) -> tuple[str, ParsedInput]:
    """(endpoint, validated lines). Parquet rows become chat (or completions) requests from `prompt_column`."""
    if path.suffix.lower() in (".parquet", ".pq"):
        data, endpoint = _parquet_lines(path, endpoint or "/v1/chat/completions", prompt_column, max_tokens)
    else:
        data = path.read_bytes()
        endpoint = endpoint or _first_url(data) or "/v1/chat/completions"
    endpoint_for(endpoint)
    return endpoint, parse_input(data, endpoint, {model_id: ENDPOINTS[endpoint].model_type}, override_model=model_id)


def _first_url(data: bytes) -> str | None:
    for raw in data.splitlines():
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("url"), str):
            return obj["url"]
    return None


def _parquet_lines(path: Path, endpoint: str, column: str, max_tokens: int | None) -> tuple[bytes, str]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if column not in table.column_names:
        raise ValueError(f"{path} has no column {column!r} (columns: {', '.join(table.column_names)})")
    ids = table.column("custom_id").to_pylist() if "custom_id" in table.column_names else None
    lines = []
    for i, prompt in enumerate(table.column(column).to_pylist()):
        if endpoint == "/v1/chat/completions":
            body: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}]}
        elif endpoint == "/v1/completions":
            body = {"prompt": prompt}
        else:
            body = {"input": prompt}
        if max_tokens is not None and endpoint != "/v1/embeddings":
            body["max_tokens"] = max_tokens
        custom_id = str(ids[i]) if ids else f"row-{i}"
        lines.append(json.dumps({"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}))
    return "\n".join(lines).encode(), endpoint


def _write_jsonl(path: Path, records: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(r + "\n" for r in records))
    os.replace(tmp, path)


def run_offline(endpoint: str, parsed: ParsedInput, output_path: Path, errors_path: Path,
                model: ModelConfig | EmbeddingModelConfig, model_cache_dir: Path, *, concurrency: int | None = None,
                lines_per_batch: int = 4, num_actors: int = 1, num_cpus: float | None = None,
                on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Run every line of `parsed` (see read_input), write the output and error files in input order, and return
    the summary."""
    progress = Progress(parsed.total, failed=len(parsed.failures))
    records: dict[int, tuple[bool, str]] = {r.line: (False, json.dumps(r.record)) for r in parsed.failures}
    if concurrency is None:
        per_actor = model.engine.max_num_seqs if isinstance(model, ModelConfig) else model.max_batch_size
        concurrency = 2 * per_actor * num_actors
    opts = model.deployment.ray_actor_options
    results = run_lines(parsed.requests, EngineRequestsUDF,
                        {"endpoint": endpoint, "model_config": model, "model_cache_dir": str(model_cache_dir)},
                        concurrency=concurrency, lines_per_batch=lines_per_batch, num_actors=num_actors,
                        num_cpus=opts.get("num_cpus", 1) if num_cpus is None else num_cpus,
                        num_gpus=opts.get("num_gpus", 0))
    progress.sample()
    for batch in results:
        for line, ok, record, tin, tout in zip(batch["line"], batch["ok"], batch["record"], batch["input_tokens"],
                                               batch["output_tokens"], strict=True):
            records[int(line)] = (bool(ok), str(record))
            progress.completed += bool(ok)
            progress.failed += not bool(ok)
            progress.input_tokens += int(tin)
            progress.output_tokens += int(tout)
        progress.peak_in_flight = max([progress.peak_in_flight, *map(int, batch["peak_in_flight"])])
        progress.sample()
        if on_progress is not None:
            on_progress(progress)
    ordered = [records[k] for k in sorted(records)]
    _write_jsonl(output_path, [r for ok, r in ordered if ok])
    _write_jsonl(errors_path, [r for ok, r in ordered if not ok])
    return {"output": str(output_path), "errors": str(errors_path), "endpoint": endpoint,
            "model": model.model_id, "concurrency": concurrency, **progress.summary()}
