"""Linear layers on oneDNN with weights reordered once, for CPU inference.

`F.linear` on CPU hands MKL a plain [out, in] weight every call. oneDNN's linear with a weight reordered once into
its blocked layout (what torch.compile's CPU freezing pass does) ran 2-4x faster on a 2-core AVX-512 box for
SmolLM2's shapes: lm_head [49152, 576] at batch 8 took 3.2 ms instead of 14.5 ms, and prefill matmuls got 1.8x
faster (benchmarks/results/engine_speed_cpu_2026-12-03.md). Results differ from `F.linear` by float rounding
(summation order), not more.
"""

from __future__ import annotations

import torch
from torch import nn


def onednn_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


class PackedLinear(nn.Module):
    """An inference-only `nn.Linear` whose weight lives in oneDNN's blocked layout."""

    def __init__(self, linear: nn.Linear, batch_hint: int):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), batch_hint)
        self.register_buffer("packed_weight", packed, persistent=False)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [..., in_features] -> [..., out_features]
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")


def pack_linears(model: nn.Module, batch_hint: int) -> int:
    """Replace every `nn.Linear` of a CPU fp32 model (bf16 too where oneDNN runs bf16) by a `PackedLinear`, in
    place. Returns how many were replaced (0 where oneDNN is missing or the model is elsewhere). `batch_hint`: the
    typical rows per call."""
    if not onednn_linear_available():
        return 0
    dtypes = {torch.float32} | ({torch.bfloat16} if torch.ops.mkldnn._is_mkldnn_bf16_supported() else set())
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if type(child) is nn.Linear and child.weight.device.type == "cpu" and child.weight.dtype in dtypes]
    for parent, name, child in targets:
        setattr(parent, name, PackedLinear(child, batch_hint))
    return len(targets)
