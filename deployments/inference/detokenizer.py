"""Incremental detokenization and stop-string matching for streams.

Text is released only when it is final: a token that ends inside a multi-byte character waits for the next one,
and text that could be the start of a stop string is held back until it is known not to be one, so a stop
string is never emitted even when it is split across tokens.
"""

from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    """Turns token ids into text deltas. Decodes a short window (prefix_offset..) each step, not the whole text."""

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        dec = self.tokenizer.decode
        prefix = dec(self.ids[self.prefix_offset:self.read_offset], skip_special_tokens=self.skip)
        full = dec(self.ids[self.prefix_offset:], skip_special_tokens=self.skip)
        if full.endswith("\ufffd"):
            return ""  # an incomplete UTF-8 sequence: wait for more tokens
        delta = full[len(prefix):] if full.startswith(prefix) else full
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        return delta


class StopStringMatcher:
    """Feed text deltas; get back the text that is safe to emit and whether a stop string was hit (`matched`:
    which one)."""

    def __init__(self, stops: list[str] | None):
        self.stops = [s for s in (stops or []) if s]
        self.pending = ""
        self.stopped = False
        self.matched: str | None = None

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return delta
        text = self.pending + delta
        hits = [(text.find(s), s) for s in self.stops if s in text]
        if hits:
            cut, self.matched = min(hits, key=lambda hit: hit[0])  # the earliest; on a tie, the first listed
            self.pending, self.stopped = "", True
            return text[:cut]
        # hold back the longest suffix of `text` that is a prefix of some stop string
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), hold, -1):
                if text.endswith(s[:k]):
                    hold = k
                    break
        self.pending = text[len(text) - hold:] if hold else ""
        return text[:len(text) - hold] if hold else text

    def flush(self) -> str:
        """At the end of generation, release held-back text that never became a stop string."""
        out, self.pending = self.pending, ""
        return "" if self.stopped else out
