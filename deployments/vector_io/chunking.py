"""Token-window chunking with overlap, counted in the embedding model's tokens."""

from __future__ import annotations

from typing import Any

from serve.protocol.vector_io import ChunkingStrategy

OPENAI_AUTO = (800, 400)


def resolve_chunking(strategy: ChunkingStrategy | dict | None, model_max_tokens: int) -> dict[str, Any]:
    """The strategy object stored with a file. `auto` follows OpenAI (800/400) capped to what the embedding model
    reads: all-MiniLM-L6-v2 truncates at 256 tokens, so auto chunks are 256 tokens with 128 overlap."""
    if isinstance(strategy, dict):
        strategy = ChunkingStrategy.model_validate(strategy)
    if strategy is None or strategy.type == "auto":
        size = min(OPENAI_AUTO[0], model_max_tokens)
        overlap = min(OPENAI_AUTO[1], size // 2)
        return {"type": "static", "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap}}
    return {"type": "static", "static": strategy.static.model_dump()}


def chunk_text(text: str, tokenizer: Any, max_tokens: int, overlap: int) -> list[str]:
    """Split `text` into windows of at most `max_tokens` tokens, consecutive windows sharing `overlap` tokens.

    Windows are cut at token offsets mapped back to character spans, so each chunk is a verbatim slice of the
    text (no detokenization artefacts)."""
    text = text.strip()
    if not text:
        return []
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    offsets = enc["offset_mapping"]
    if len(offsets) <= max_tokens:
        return [text]
    step = max(1, max_tokens - overlap)
    out = []
    for start in range(0, len(offsets), step):
        window = offsets[start:start + max_tokens]
        out.append(text[window[0][0]:window[-1][1]].strip())
        if start + max_tokens >= len(offsets):
            break
    return [c for c in out if c]
