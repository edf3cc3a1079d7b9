"""The decode forward pass: persistent input buffers, bucketed shapes and, on CUDA, replayed CUDA graphs.

A decode step feeds one token per sequence. Its inputs (token, position, cache slot, block table) are written into
buffers allocated once, and the model reads slices of them. With padding on, a step of n sequences runs at the
smallest batch bucket >= n (rows n.. are padding: token 0 at position 0, writing to the scratch slot, attending to
the scratch block) and a block-table width from a fixed set, so each step has one of a few shapes. On CUDA each
(batch, width) shape is captured once as a CUDA graph over those same buffers and replayed: one launch per step
instead of a few hundred (an 8B-shaped model decoded launch-bound at ~15 ms a step on an H200 without graphs).
"""

from __future__ import annotations

import logging

import torch

from deployments.inference.meta_reference.kv_cache import PagedKVCache
from deployments.inference.meta_reference.model import BatchView, LlamaForCausalLM

logger = logging.getLogger("stackserve.engine")


def batch_buckets(max_num_seqs: int) -> list[int]:
    """Batch sizes a padded step runs at: 1, 2, 4, 8, then every 16, and max_num_seqs itself."""
    sizes = [b for b in (1, 2, 4, 8) if b < max_num_seqs] + list(range(16, max_num_seqs, 16))
    return sorted({*sizes, max_num_seqs})


def width_buckets(max_blocks: int) -> list[int]:
    """Block-table widths a padded step runs at: powers of two from 4 blocks, and max_blocks itself. Attention
    gathers width * block_size keys per row, so the width follows the longest context rather than the maximum."""
    widths, w = [], 4
    while w < max_blocks:
        widths.append(w)
        w *= 2
    return [*widths, max_blocks]


def bucket_for(buckets: list[int], n: int) -> int:
    """The smallest bucket >= n."""
    for b in buckets:
        if b >= n:
            return b
    raise ValueError(f"{n} is above the largest bucket ({buckets[-1]})")


class DecodeRunner:
    """Runs decode steps for the engine. `pad`: run at bucketed shapes; `graphs`: capture and replay CUDA graphs
    (needs `pad` and a CUDA device)."""

    def __init__(self, model: LlamaForCausalLM, cache: PagedKVCache, max_num_seqs: int, max_model_len: int,
                 device: torch.device, pad: bool = False, graphs: bool = False):
        if graphs and (device.type != "cuda" or not pad):
            raise ValueError("CUDA graphs need a CUDA device and padded shapes")
        self.model, self.cache, self.device = model, cache, device
        self.pad, self.graphs = pad, graphs
        self.block_size = cache.block_size
        self.max_blocks = cache.blocks_for(max_model_len + 1)
        self.batch_sizes = batch_buckets(max_num_seqs)
        self.widths = width_buckets(self.max_blocks)
        B, NB = max_num_seqs, self.max_blocks
        self.tokens = torch.zeros(B, 1, dtype=torch.long, device=device)  # [B, 1]
        self.positions = torch.zeros(B, 1, dtype=torch.long, device=device)  # [B, 1]
        self.slot_ids = torch.zeros(B, 1, dtype=torch.long, device=device)  # [B, 1]
        self.block_table = torch.zeros(B, NB, dtype=torch.long, device=device)  # [B, NB]
        self.last_index = torch.zeros(B, dtype=torch.long, device=device)  # decode: one query per row
        self.key_pos = torch.arange(NB * self.block_size, device=device)  # [NB * block_size]
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._pool = None
        self.num_captured = 0

    def shape_for(self, n: int, blocks_needed: int) -> tuple[int, int]:
        """(batch, block-table width) a step of n rows needing `blocks_needed` blocks per row at most runs at."""
        if not self.pad:
            return n, blocks_needed
        return bucket_for(self.batch_sizes, n), bucket_for(self.widths, blocks_needed)

    def fill(self, last_tokens: list[int], positions: list[int], block_rows: list[list[int]], b: int, nb: int) -> None:
        """Write a step's inputs into the buffers' first b rows and nb columns; rows past the real ones and
        entries past a row's blocks are padding (0: the scratch block)."""
        n, bs = len(last_tokens), self.block_size
        slots = [row[p // bs] * bs + p % bs for row, p in zip(block_rows, positions, strict=True)]
        table = [row[:nb] + [0] * (nb - len(row[:nb])) for row in block_rows] + [[0] * nb] * (b - n)
        pad = [0] * (b - n)
        host = torch.tensor([last_tokens + pad, positions + pad, slots + pad], dtype=torch.long)  # [3, b]
        self.tokens[:b, 0].copy_(host[0], non_blocking=True)
        self.positions[:b, 0].copy_(host[1], non_blocking=True)
        self.slot_ids[:b, 0].copy_(host[2], non_blocking=True)
        self.block_table[:b, :nb].copy_(torch.tensor(table, dtype=torch.long), non_blocking=True)

    def forward(self, b: int, nb: int) -> torch.Tensor:
        """The model over the buffers' first b rows and nb block-table columns. Returns [b, vocab] fp32 logits."""
        positions = self.positions[:b]
        view = BatchView(positions=positions, slot_ids=self.slot_ids[:b], block_table=self.block_table[:b, :nb],
                         valid=self.key_pos[:nb * self.block_size].view(1, 1, -1) <= positions.unsqueeze(-1),
                         block_size=self.block_size)
        return self.model(self.tokens[:b], view, self.cache.layers, self.last_index[:b])

    def run(self, last_tokens: list[int], positions: list[int], block_rows: list[list[int]]) -> torch.Tensor:
        """One decode step. last_tokens/positions: per row, the token to feed and its position; block_rows: each
        row's cache blocks. Returns [n, vocab] fp32 logits for the n real rows."""
        n = len(last_tokens)
        b, nb = self.shape_for(n, max(self.cache.blocks_for(p + 1) for p in positions))
        if self.graphs and (b, nb) not in self._graphs:
            try:
                self._capture(b, nb)
            except RuntimeError:  # serve on, eagerly, rather than fail every step
                logger.exception("CUDA graph capture failed at batch %d, width %d: decoding without graphs", b, nb)
                self.graphs = False
        self.fill(last_tokens, positions, block_rows, b, nb)
        if self.graphs:
            graph, logits = self._graphs[(b, nb)]
            graph.replay()
            return logits[:n]
        return self.forward(b, nb)[:n]

    def _capture(self, b: int, nb: int) -> None:
        """Capture the forward pass at (b, nb) over padding inputs: warm-up and capture write only the scratch
        block, so no live sequence's cache changes."""
        self.fill([], [], [], b, nb)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # kernels pick their algorithms and workspaces before capture
                self.forward(b, nb)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            logits = self.forward(b, nb)
        self._graphs[(b, nb)] = (graph, logits)
        self.num_captured += 1
