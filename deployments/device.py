"""Which torch device a model runs on. GPU configs ask for `cuda` (or `auto`); where CUDA is absent (a CPU box, a
rehearsal cluster whose nodes only declare GPUs to Ray) the model runs on the CPU with a warning instead of failing."""

from __future__ import annotations

import logging

logger = logging.getLogger("stackserve.device")


def resolve_device(requested: str, what: str = "model") -> str:
    """`cpu` -> cpu; `auto` -> cuda when available; `cuda[:N]` -> itself when available. Otherwise cpu."""
    if requested == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        if requested == "auto":
            return "cuda"
        index = int(requested.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {requested!r}: this process sees {torch.cuda.device_count()} CUDA device(s)")
        return requested
    logger.warning("%s asked for device %r but CUDA is not available here: running on the CPU", what, requested)
    return "cpu"
