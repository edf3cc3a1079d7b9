"""Llama Stack 0.2 vector-io and rag-tool shapes over the same vector stores."""

from __future__ import annotations

from typing import Any

from serve.protocol.content import content_text as protocol_content_text


def content_text(content: Any, param: str) -> str:
    """InterleavedContent (a string, a text item or a list of items) as plain text, items on their own lines."""
    return protocol_content_text(content, param, sep="\n")


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
