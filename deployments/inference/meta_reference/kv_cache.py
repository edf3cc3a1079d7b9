"""Paged KV cache: fixed-size blocks per layer, handed out to sequences by a block pool (block_pool.py: reference
counts, a free list, and the prefix cache).

Block 0 is reserved as scratch: padded prefill tokens write there and padded block-table entries point there,
so padding never touches a live sequence's cache.
"""

from __future__ import annotations

import torch

from deployments.inference.meta_reference.block_pool import BlockPool


class PagedKVCache:
    def __init__(self, num_layers: int, num_blocks: int, block_size: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str, enable_prefix_caching: bool = True):
        if num_blocks < 2:
            raise ValueError("the KV cache needs at least 2 blocks")
        self.block_size = block_size
        self.num_blocks = num_blocks
        shape = (num_blocks * block_size, n_kv_heads, head_dim)
        # layers: list of (k, v), each [num_blocks * block_size, n_kv_heads, head_dim]
        self.layers = [(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
                       for _ in range(num_layers)]
        self.pool = BlockPool(num_blocks, block_size, enable_prefix_caching)

    @property
    def free_blocks(self) -> int:
        """Blocks a sequence can get now: free ones and cached ones no sequence holds."""
        return self.pool.num_free

    @property
    def usable_blocks(self) -> int:
        return self.num_blocks - 1

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def allocate(self, n: int) -> list[int] | None:
        return self.pool.allocate(n)

    def release(self, blocks: list[int]) -> None:
        self.pool.release(blocks)
