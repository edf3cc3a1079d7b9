"""Which replica of an LLM deployment should take a request: session affinity, prompt-prefix affinity, load.

Plain Python (no Ray): the Serve request router (router.py) feeds it the live replicas and their queue lengths and
asks `ReplicaChooser.rank`. Replicas are named by any hashable id (Serve's unique replica id in the router).

- A session key goes to the replica that rendezvous hashing picks among the live ones: every router process (the
  ingress, the Agents deployment) picks the same one without sharing state, and only the sessions of a replica
  that leaves move.
- Without one, `prefix_aware` looks the prompt up in a per-replica index of the prompts this router sent there
  (hashes of leading character blocks, LRU-bounded) and prefers the replica with the longest match. The index is
  approximate: each router process keeps its own, and an engine may have evicted what the index remembers.
- Either preference yields to load when its replica holds more than `max_imbalance` requests beyond the least
  loaded one; a full replica is skipped by Serve itself (it rejects the request, Serve tries the next rank).
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

Replica = Hashable


def request_affinity(args: Iterable[Any], session_id: str = "") -> tuple[str | None, str]:
    """(session key, prompt text) of a call to the LLM deployment: its first argument is a chat or completion
    request (other calls, e.g. `stats`, have neither). The request's `prompt_cache_key` wins over the caller's
    session id (Serve's handle option `session_id`, which callers fill from x-session-id, a Responses chain or
    an agent session)."""
    req = next(iter(args), None)
    key = getattr(req, "prompt_cache_key", None) or session_id or None
    messages = getattr(req, "messages", None)
    if messages is not None:  # the messages as the chat template will lay them out, roughly
        return key, "".join(f"\x1e{_field(m, 'role')}\x1f{_text(_field(m, 'content'))}{_field(m, 'tool_calls') or ''}"
                            for m in messages)
    return key, _text(getattr(req, "prompt", None))


def _field(message: Any, name: str) -> Any:
    return message.get(name) if isinstance(message, dict) else getattr(message, name, None)


def _text(content: Any) -> str:
    """A message content or completion prompt as text: strings, lists of parts or strings, token ids."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" if isinstance(p, dict) else _text(p) if isinstance(p, list) else str(p)
                       for p in content)
    return str(content)


def rendezvous(key: str, replicas: Iterable[Replica]) -> list[Replica]:
    """`replicas` ordered by highest random weight for `key`: the same order in every process, and removing a
    replica leaves the order of the others unchanged."""
    def weight(r: Replica) -> bytes:
        return hashlib.blake2b(f"{key}\x00{r}".encode(), digest_size=8).digest()

    return sorted(replicas, key=weight, reverse=True)


def block_hashes(text: str, block_chars: int) -> list[int]:
    """Chained hashes of the text's whole leading blocks: block i's hash stands for text[: (i + 1) * block_chars]."""
    out, h = [], 0
    for start in range(0, len(text) - block_chars + 1, block_chars):
        h = hash((h, text[start:start + block_chars]))
        out.append(h)
    return out


class PrefixIndex:
    """Per replica, the block hashes of prompts recently sent there, least recently used evicted first."""

    def __init__(self, block_chars: int = 256, max_blocks_per_replica: int = 20000):
        self.block_chars = block_chars
        self.max_blocks = max_blocks_per_replica
        self._blocks: dict[Replica, OrderedDict[int, None]] = {}

    def insert(self, replica: Replica, text: str) -> None:
        blocks = self._blocks.setdefault(replica, OrderedDict())
        for h in block_hashes(text, self.block_chars):
            blocks[h] = None
            blocks.move_to_end(h)
        while len(blocks) > self.max_blocks:
            blocks.popitem(last=False)

    def matches(self, text: str, replicas: Iterable[Replica]) -> dict[Replica, int]:
        """How many leading blocks of `text` each replica holds (only replicas holding at least one)."""
        hashes = block_hashes(text, self.block_chars)
        out = {}
        for r in replicas:
            blocks = self._blocks.get(r)
            n = 0
            while blocks and n < len(hashes) and hashes[n] in blocks:
                n += 1
            if n:
                out[r] = n
        return out

    def keep(self, replicas: Iterable[Replica]) -> None:
        """Forget every replica not in `replicas` (they left the deployment)."""
        live = set(replicas)
        for r in [r for r in self._blocks if r not in live]:
            del self._blocks[r]


@dataclass(frozen=True)
class Choice:
    """Ranks of replicas, most preferred first (Serve takes the least loaded replica of the first rank that has
    room), and why: "session", "prefix" or "load" (no preference, or the preferred replica was too busy)."""

    ranks: list[list[Replica]]
    reason: str


class ReplicaChooser:
    def __init__(self, policy: str = "prefix_aware", max_imbalance: int = 4, block_chars: int = 256,
                 max_blocks_per_replica: int = 20000):
        if policy not in ("prefix_aware", "session"):
            raise ValueError(f"policy must be prefix_aware or session, got {policy!r}")
        self.policy = policy
        self.max_imbalance = max_imbalance
        self.index = PrefixIndex(block_chars, max_blocks_per_replica)

    def rank(self, replicas: list[Replica], loads: dict[Replica, int], key: str | None, text: str) -> Choice:
        """`loads`: each replica's ongoing requests as last seen (a replica missing from it counts as idle)."""
        if not replicas:
            return Choice([], "load")
        preferred: list[Replica] = []
        reason = "load"
        if key:
            preferred, reason = rendezvous(key, replicas)[:1], "session"
        elif self.policy == "prefix_aware" and text:
            found = self.index.matches(text, replicas)
            if found:
                best = max(found.values())
                preferred, reason = [r for r in replicas if found.get(r) == best], "prefix"
        least = min(loads.get(r, 0) for r in replicas)
        preferred = [r for r in preferred if loads.get(r, 0) - least <= self.max_imbalance]
        if not preferred:
            return Choice([self._by_load(replicas, loads)], "load")
        rest = [r for r in replicas if r not in preferred]
        return Choice([preferred, self._by_load(rest, loads)] if rest else [preferred], reason)

    @staticmethod
    def _by_load(replicas: list[Replica], loads: dict[Replica, int]) -> list[Replica]:
        """Least loaded first, ties in random order (so idle replicas share the requests)."""
        return sorted(random.sample(replicas, len(replicas)), key=lambda r: loads.get(r, 0))

    def routed(self, replica: Replica, text: str) -> None:
        """A request with this prompt went to `replica`: its engine now holds (or computes) the prefix."""
        if self.policy == "prefix_aware" and text:
            self.index.insert(replica, text)

    def replicas_changed(self, replicas: Iterable[Replica]) -> None:
        self.index.keep(replicas)
