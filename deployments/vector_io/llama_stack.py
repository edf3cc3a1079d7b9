"""Llama Stack 0.2 vector-io and rag-tool shapes over the same vector stores."""

from __future__ import annotations

from typing import Any

from serve.errors import InvalidRequestError


def content_text(content: Any, param: str) -> str:
    """InterleavedContent (a string, a text item or a list of items) as plain text."""
    if isinstance(content, str):
        return content
    items = content if isinstance(content, list) else [content]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and item.get("type") == "text":
            out.append(str(item.get("text", "")))
        else:
            kind = item.get("type") if isinstance(item, dict) else type(item).__name__
            raise InvalidRequestError(f"content of type {kind!r} is not supported (text only)", param=param)
    return "\n".join(out)


def vector_db_object(store: dict[str, Any]) -> dict[str, Any]:
    return {"identifier": store["id"], "provider_id": store["provider_id"], "provider_resource_id": store["id"],
            "embedding_model": store["embedding_model"], "embedding_dimension": store["embedding_dimension"],
            "type": "vector_db", "vector_db_name": store.get("name")}


def rag_query_result(found: list[tuple[Any, float, dict]], max_chunks: int) -> dict[str, Any]:
    """The rag-tool query answer: text items an agent can put in its context, plus ids and scores."""
    found = sorted(found, key=lambda f: -f[1])[:max_chunks]
    items = [{"type": "text", "text": f"knowledge_search found {len(found)} chunks:\n"}]
    for i, (row, _score, _attrs) in enumerate(found, 1):
        doc = (row.metadata or {}).get("document_id", row.file_id)
        items.append({"type": "text", "text": f"[{i}] document_id: {doc}\n{row.text}\n"})
    items.append({"type": "text", "text": "end of knowledge_search results\n"})
    return {"content": items,
            "metadata": {"document_ids": [(r.metadata or {}).get("document_id", r.file_id) for r, _, _ in found],
                         "chunks": [r.text for r, _, _ in found], "scores": [float(s) for _, s, _ in found]}}
