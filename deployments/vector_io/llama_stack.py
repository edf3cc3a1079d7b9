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
    return knowledge_search_result([((row.metadata or {}).get("document_id", row.file_id), row.text, score)
                                    for row, score, _attrs in found])


def knowledge_search_result(hits: list[tuple[str, str, float]]) -> dict[str, Any]:
    """[(document id, chunk text, score)] best first -> {"content": text items, "metadata": ids, chunks, scores}."""
    items = [{"type": "text", "text": f"knowledge_search found {len(hits)} chunks:\n"}]
    for i, (doc, text, _score) in enumerate(hits, 1):
        items.append({"type": "text", "text": f"[{i}] document_id: {doc}\n{text}\n"})
    items.append({"type": "text", "text": "end of knowledge_search results\n"})
    return {"content": items, "metadata": {"document_ids": [d for d, _, _ in hits], "chunks": [t for _, t, _ in hits],
                                           "scores": [float(s) for _, _, s in hits]}}
