"""Workloads generated locally, reproducibly from a seed: prompts of exact token lengths and their output budgets.

A workload is named by a spec string so a sweep can list several on one command line:

    fixed:128:128          every prompt 128 tokens, 128 output tokens
    chat                   chat-like lengths: lognormal input (median 256) and output (median 128), clipped
    chat:512:64            the same shape with other medians
    prefix:512:64:128:4    4 shared 512-token prefixes, each request adds a unique 64-token suffix, 128 output tokens
    multiturn:512:32:64:8  8 users in multi-turn chats: a 512-token first prompt, then each turn resends the whole
                           history plus the previous answer (64 tokens) and a new 32-token question; 64 output tokens

Prompts are random words from the tokenizer's own vocabulary: tokens that decode to " word" and re-encode to the
same single id, so a prompt of N such words is exactly N tokens (byte-level BPE splits before every space-word).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL_CACHE = Path(os.environ.get("STACKSERVE_MODEL_CACHE", "~/.cache/stackserve/models")).expanduser()
DEFAULT_TOKENIZER = str(DEFAULT_MODEL_CACHE / "SmolLM2-135M-Instruct.Q4_1")

# Chat-like defaults: roughly the shape of ShareGPT-style conversations (long-tailed both ways).
CHAT_INPUT_MEDIAN, CHAT_INPUT_SIGMA, CHAT_INPUT_RANGE = 256, 1.0, (16, 2048)
CHAT_OUTPUT_MEDIAN, CHAT_OUTPUT_SIGMA, CHAT_OUTPUT_RANGE = 128, 0.8, (8, 1024)


class WorkloadError(ValueError):
    """A workload spec that cannot be parsed."""


@dataclass(frozen=True)
class WorkItem:
    """One request's content: the prompt text, its length in tokens (before any chat template) and output budget."""

    prompt: str
    input_tokens: int
    output_tokens: int
    prefix_id: int | None = None


@dataclass(frozen=True)
class WorkloadSpec:
    kind: str  # fixed | chat | prefix | multiturn
    input_len: int
    output_len: int
    prefix_len: int = 0
    num_prefixes: int = 0  # prefix: shared prefixes; multiturn: users

    @property
    def name(self) -> str:
        if self.kind == "fixed":
            return f"fixed-{self.input_len}-{self.output_len}"
        if self.kind == "chat":
            return f"chat-{self.input_len}-{self.output_len}"
        return f"{self.kind}-{self.prefix_len}-{self.input_len}-{self.output_len}-{self.num_prefixes}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "input_len": self.input_len, "output_len": self.output_len,
                "prefix_len": self.prefix_len, "num_prefixes": self.num_prefixes}


def parse_workload(spec: str) -> WorkloadSpec:
    """`fixed:IN:OUT`, `chat[:IN_MEDIAN:OUT_MEDIAN]`, `prefix:PREFIX:SUFFIX:OUT[:GROUPS]`,
    `multiturn:FIRST:TURN:OUT[:USERS]`."""
    kind, *parts = spec.strip().split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise WorkloadError(f"workload {spec!r}: lengths must be integers") from None
    if any(n <= 0 for n in nums):
        raise WorkloadError(f"workload {spec!r}: lengths must be positive")
    if kind == "fixed" and len(nums) == 2:
        return WorkloadSpec("fixed", nums[0], nums[1])
    if kind == "chat" and len(nums) in (0, 2):
        i, o = nums or (CHAT_INPUT_MEDIAN, CHAT_OUTPUT_MEDIAN)
        return WorkloadSpec("chat", i, o)
    if kind == "prefix" and len(nums) in (3, 4):
        groups = nums[3] if len(nums) == 4 else 1
        return WorkloadSpec("prefix", nums[1], nums[2], prefix_len=nums[0], num_prefixes=groups)
    if kind == "multiturn" and len(nums) in (3, 4):
        users = nums[3] if len(nums) == 4 else 4
        return WorkloadSpec("multiturn", nums[1], nums[2], prefix_len=nums[0], num_prefixes=users)
    raise WorkloadError(f"workload {spec!r}: expected fixed:IN:OUT, chat[:IN:OUT], prefix:PREFIX:SUFFIX:OUT[:GROUPS] "
                        "or multiturn:FIRST:TURN:OUT[:USERS]")


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str | os.PathLike) -> Any:
    """A tokenizer from a local HF directory (transformers AutoTokenizer; nothing is downloaded). Cached: a
    comparison loads it once for all its targets."""
    from transformers import AutoTokenizer

    if not Path(path).expanduser().is_dir():
        raise FileNotFoundError(f"tokenizer directory {path} does not exist (pass --tokenizer DIR)")
    return AutoTokenizer.from_pretrained(str(Path(path).expanduser()), local_files_only=True)


class PromptMaker:
    """Random-word prompts of an exact token count, from a pool of single-token words of the tokenizer."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        special = set(tokenizer.all_special_ids)
        # Byte-level BPE marks a leading space with "Ġ", SentencePiece with "▁".
        pool = [i for i, s in enumerate(vocab) if i not in special and s and re.fullmatch(r"[Ġ▁][a-z]{2,}", s)]
        self.pool = np.array(pool[:20000] if len(pool) >= 100 else [], dtype=np.int64)
        self.exact = len(self.pool) > 0 and self._round_trips(self.pool[:200])
        if not self.exact:  # unusual tokenizer: any non-special id, lengths fixed up by re-encoding (approximate)
            self.pool = np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)

    def _round_trips(self, ids: np.ndarray) -> bool:
        text = self.tokenizer.decode(ids.tolist())
        return self.tokenizer.encode(text, add_special_tokens=False) == ids.tolist()

    def ids(self, n: int, rng: np.random.Generator) -> list[int]:
        return rng.choice(self.pool, size=n).tolist()

    def text(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids)
        if not self.exact:
            text = self.tokenizer.decode(self.tokenizer.encode(text, add_special_tokens=False)[: len(ids)])
        return text

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))


def _lognormal_lengths(rng: np.random.Generator, n: int, median: int, sigma: float, bounds: tuple[int, int]):
    lo, hi = bounds
    return np.clip(np.round(rng.lognormal(np.log(median), sigma, size=n)), lo, max(hi, median)).astype(int)


def generate(spec: WorkloadSpec, n: int, maker: PromptMaker, seed: int) -> list[WorkItem]:
    """`n` work items for `spec`; the same spec, n, tokenizer and seed always give the same items."""
    rng = np.random.default_rng(seed)
    if spec.kind == "fixed":
        return [WorkItem(maker.text(ids), len(ids), spec.output_len) for ids in
                (maker.ids(spec.input_len, rng) for _ in range(n))]
    if spec.kind == "chat":
        ins = _lognormal_lengths(rng, n, spec.input_len, CHAT_INPUT_SIGMA, CHAT_INPUT_RANGE)
        outs = _lognormal_lengths(rng, n, spec.output_len, CHAT_OUTPUT_SIGMA, CHAT_OUTPUT_RANGE)
        return [WorkItem(maker.text(maker.ids(int(i), rng)), int(i), int(o)) for i, o in zip(ins, outs, strict=True)]
    if spec.kind == "prefix":
        prefixes = [maker.ids(spec.prefix_len, rng) for _ in range(spec.num_prefixes)]
        items = []
        for k in range(n):
            group = k % spec.num_prefixes
            ids = prefixes[group] + maker.ids(spec.input_len, rng)
            items.append(WorkItem(maker.text(ids), len(ids), spec.output_len, prefix_id=group))
        return items
    if spec.kind == "multiturn":
        return _multiturn(spec, n, maker, rng)
    raise WorkloadError(f"unknown workload kind {spec.kind!r}")


def _multiturn(spec: WorkloadSpec, n: int, maker: PromptMaker, rng: np.random.Generator) -> list[WorkItem]:
    """Item k is turn k // users of user k % users (turn-major: a closed loop at `users` concurrency sends each
    user's next turn about when its previous one ends). A turn's prompt is the user's whole history as one
    message: its previous prompt, a stand-in for the answer (`output_len` tokens, what the model was asked to
    write) and a new question, so each prompt starts with the previous one token for token."""
    users = spec.num_prefixes
    history = [maker.ids(spec.prefix_len, rng) for _ in range(users)]
    items = []
    for k in range(n):
        u = k % users
        if k >= users:
            history[u] = history[u] + maker.ids(spec.output_len + spec.input_len, rng)
        items.append(WorkItem(maker.text(history[u]), len(history[u]), spec.output_len, prefix_id=u))
    return items
