"""Whole OpenAI responses as the fold of their streamed chunks.

The OpenAI layer produces every answer as a stream; a non-streamed request gets these folds of it, so both shapes
carry the same text, tool calls, logprobs, finish reasons and usage by construction.
"""

from __future__ import annotations

from typing import Any


def fold_chat(chunks: list[dict[str, Any]], logprobs: bool) -> dict[str, Any]:
    """`chat.completion.chunk`s (with a usage chunk last) -> one `chat.completion`."""
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for c in chunks:
        usage = c.get("usage") or usage
        for ch in c["choices"]:
            acc = choices.setdefault(ch["index"], {"content": [], "calls": {}, "logprobs": [], "reason": None,
                                                       "stop": None})
            delta = ch["delta"]
            if delta.get("content"):
                acc["content"].append(delta["content"])
            for tc in delta.get("tool_calls") or []:
                call = acc["calls"].setdefault(tc["index"], {"id": None, "type": "function",
                                                             "function": {"name": "", "arguments": ""}})
                call["id"] = tc.get("id") or call["id"]
                fn = tc.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
            if ch.get("logprobs"):
                acc["logprobs"] += ch["logprobs"]["content"]
            acc["reason"] = ch.get("finish_reason") or acc["reason"]
            acc["stop"] = ch.get("stop_reason") or acc["stop"]
    out = []
    for i in sorted(choices):
        acc = choices[i]
        message: dict[str, Any] = {"role": "assistant", "content": "".join(acc["content"]), "refusal": None}
        if acc["calls"]:
            message = {"role": "assistant", "content": None, "refusal": None,
                       "tool_calls": [acc["calls"][k] for k in sorted(acc["calls"])]}
        choice = {"index": i, "message": message, "finish_reason": acc["reason"],
                  "logprobs": {"content": acc["logprobs"]} if logprobs else None}
        if acc["stop"]:
            choice["stop_reason"] = acc["stop"]  # the stop string that ended it (vLLM's extension)
        out.append(choice)
    first = chunks[0]
    return {"id": first["id"], "object": "chat.completion", "created": first["created"], "model": first["model"],
            "choices": out, "usage": usage}


_LOGPROB_FIELDS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")


def fold_completion(chunks: list[dict[str, Any]], logprobs: bool) -> dict[str, Any]:
    """`text_completion` chunks (with a usage chunk last) -> one `text_completion`."""
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for c in chunks:
        usage = c.get("usage") or usage
        for ch in c["choices"]:
            acc = choices.setdefault(ch["index"], {"text": [], "reason": None,
                                                   "logprobs": {k: [] for k in _LOGPROB_FIELDS}})
            acc["text"].append(ch["text"])
            for k in _LOGPROB_FIELDS if ch.get("logprobs") else ():
                acc["logprobs"][k] += ch["logprobs"][k]
            acc["reason"] = ch.get("finish_reason") or acc["reason"]
    out = [{"index": i, "text": "".join(acc["text"]), "finish_reason": acc["reason"],
            "logprobs": acc["logprobs"] if logprobs else None}
           for i, acc in sorted(choices.items())]
    first = chunks[0]
    return {"id": first["id"], "object": "text_completion", "created": first["created"], "model": first["model"],
            "choices": out, "usage": usage}
