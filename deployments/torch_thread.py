"""The one thread that runs all of a replica's torch work (engines, embedding models)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


def torch_thread(num_threads: int | None, name: str) -> ThreadPoolExecutor:
    """A single-thread executor whose thread has run torch.set_num_threads: submit every torch call to it.

    Measured on a 2-core box: a decode step takes 32 ms on the thread that first ran torch ops and 58 ms on any
    other (OpenMP thread teams are per calling thread), so loading, warm-up and every step share one thread.
    """
    import torch

    ex = ThreadPoolExecutor(1, thread_name_prefix=name)
    ex.submit(torch.set_num_threads, num_threads or os.cpu_count() or 1).result()
    return ex
