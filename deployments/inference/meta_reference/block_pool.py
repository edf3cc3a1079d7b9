"""KV-cache block bookkeeping with automatic prefix caching: reference counts, a free list, and full blocks kept
after use, findable by the hash of the tokens they hold and everything before them.

A full block's hash chains its parent's: `hash((parent_hash, block_tokens))`, so equal hashes mean equal
prefixes (up to a 64-bit hash collision), wherever the block sits in which sequence. A block whose reference count
drops to 0 keeps its K/V: if it is hashed it waits in an LRU of evictable blocks (a later prompt with the same
prefix takes it back), else it goes to the free list. New blocks come from the free list first, then from the
least recently released cached block, whose hash is forgotten.

Block 0 is the cache's scratch block and never enters the pool.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


def block_hash(parent: int | None, tokens: Sequence[int]) -> int:
    return hash((parent, tuple(tokens)))


class BlockPool:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref = [0] * num_blocks
        self._free = list(range(num_blocks - 1, 0, -1))  # pop() hands out low ids first
        self._evictable: OrderedDict[int, None] = OrderedDict()  # hashed, refcount 0; least recently released first
        self._by_hash: dict[int, int] = {}
        self._hash_of: dict[int, int] = {}
        self.num_evicted = 0  # cached blocks taken for new use so far

    @property
    def num_free(self) -> int:
        """Blocks an allocation can take: never used or released, plus cached ones nobody holds."""
        return len(self._free) + len(self._evictable)

    @property
    def num_cached(self) -> int:
        """Blocks holding a findable prefix (held by a sequence or evictable)."""
        return len(self._hash_of)

    @property
    def num_evictable(self) -> int:
        return len(self._evictable)

    def match(self, token_ids: Sequence[int], max_blocks: int) -> tuple[list[int], list[int]]:
        """The cached blocks holding the longest run of full blocks at the start of `token_ids` (at most
        `max_blocks`), and their hashes. Takes no reference: `acquire` them before the next allocation."""
        blocks: list[int] = []
        hashes: list[int] = []
        if not self.enable_prefix_caching:
            return blocks, hashes
        bs, parent = self.block_size, None
        for i in range(max_blocks):
            h = block_hash(parent, token_ids[i * bs:(i + 1) * bs])
            b = self._by_hash.get(h)
            if b is None:
                break
            blocks.append(b)
            hashes.append(h)
            parent = h
        return blocks, hashes

    def acquire(self, blocks: list[int]) -> None:
        for b in blocks:
            if self.ref[b] == 0:
                self._evictable.pop(b, None)
            self.ref[b] += 1

    def allocate(self, n: int) -> list[int] | None:
        """`n` blocks with refcount 1, or None (nothing taken) when fewer are free or evictable."""
        if n > self.num_free:
            return None
        out = []
        for _ in range(n):
            if self._free:
                b = self._free.pop()
            else:
                b, _ = self._evictable.popitem(last=False)
                del self._by_hash[self._hash_of.pop(b)]
                self.num_evicted += 1
            self.ref[b] = 1
            out.append(b)
        return out

    def release(self, blocks: list[int]) -> None:
        """Drop one reference to each block and empty the list. The tail goes first, so a sequence's last blocks
        (the least likely shared) are evicted before its first ones."""
        for b in reversed(blocks):
            self.ref[b] -= 1
            if self.ref[b] == 0:
                if b in self._hash_of:
                    self._evictable[b] = None
                else:
                    self._free.append(b)
        blocks.clear()

    def register(self, block: int, h: int) -> None:
        """Make a full, computed block findable by its hash. A second block with the same content (computed in
        the same step by another sequence) stays private and is freed when released."""
        if self.enable_prefix_caching and h not in self._by_hash and block not in self._hash_of:
            self._by_hash[h] = block
            self._hash_of[block] = h
