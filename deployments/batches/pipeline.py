"""The Ray Data pipeline both kinds of batch job share: request lines -> UDF actors -> result batches.

Input blocks hold one UDF batch each (`lines_per_batch` lines), and every actor keeps enough of them in flight to
have `concurrency` requests running: the model's continuous batching stays full while results stream back block by
block (progress, resumption and cancellation all work at that grain).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from deployments.batches.lines import RequestLine


def run_lines(requests: list[RequestLine], udf: type, udf_kwargs: dict[str, Any], *, concurrency: int,
              lines_per_batch: int, num_actors: int = 1, num_cpus: float = 0.05, num_gpus: float = 0,
              ) -> Iterator[dict[str, Any]]:
    """Yield result columns (see udf.COLUMNS) as batches finish. Closing the iterator stops the job's actors."""
    import ray.data
    from ray.data import ActorPoolStrategy

    if not requests:
        return
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # progress is reported by our callers
    ctx.print_on_execution_start = False
    items = [{"line": r.line, "custom_id": r.custom_id, "body": json.dumps(r.body)} for r in requests]
    in_flight = max(1, math.ceil(concurrency / lines_per_batch / num_actors))
    ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / lines_per_batch))
    out = ds.map_batches(udf, fn_constructor_kwargs=udf_kwargs, batch_size=lines_per_batch,
                         compute=ActorPoolStrategy(size=num_actors, max_tasks_in_flight_per_actor=in_flight,
                                                   max_concurrent_calls_per_actor=in_flight),
                         num_cpus=num_cpus, num_gpus=num_gpus)
    yield from out.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)
