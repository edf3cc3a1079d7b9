"""Llama Stack 0.2 vector-io and rag-tool shapes over the same vector stores, and how a chunk shows in each API.

A store holds two kinds of chunks: those of files attached through the OpenAI routes (their attributes are the
file's, kept on the attachment and editable) and those inserted through `/v1/vector-io/insert` (their attributes
are their own Llama Stack metadata). Both APIs search both kinds.
"""

from __future__ import annotations

import json
import math
import re
import string
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import numpy as np

from serve.errors import InvalidRequestError
from serve.protocol.content import content_text as protocol_content_text

QUERY_MODES = ("vector", "keyword", "hybrid")
MAX_QUERY_CHUNKS = 1000


def content_text(content: Any, param: str) -> str:
    """InterleavedContent (a string, a text item or a list of items) as plain text, items on their own lines."""
    return protocol_content_text(content, param, sep="\n")


DOCUMENT_URL = re.compile(r"^(https?://|data:)\S+$")


def document_url(content: Any) -> str | None:
    """The URL a rag-tool document names instead of holding its text (Llama Stack: a URL object `{"uri": ...}`, or a
    string that is one http(s):// or data: URL), else None."""
    if isinstance(content, dict) and isinstance(content.get("uri"), str):
        return content["uri"]
    if isinstance(content, str) and DOCUMENT_URL.match(content.strip()):
        return content.strip()
    return None


def fetch_document(url: str, param: str, max_bytes: int, timeout_s: float = 30.0) -> tuple[str, bytes]:
    """(a file name for the type, the bytes) of a document URL; unreachable, an error status or too large: 400."""
    from urllib.error import URLError
    from urllib.request import urlopen

    name = urlparse(url).path.rsplit("/", 1)[-1] if not url.startswith("data:") else ""
    try:
        with urlopen(url, timeout=timeout_s) as r:  # noqa: S310  (http(s) and data: only: DOCUMENT_URL)
            data = r.read(max_bytes + 1)
            kind = (r.headers.get_content_type() or "") if r.headers else ""
    except (URLError, OSError, ValueError) as e:
        raise InvalidRequestError(f"could not fetch the document at {url[:200]}: {e}", param=param,
                                  code="document_unreachable") from None
    if len(data) > max_bytes:
        raise InvalidRequestError(f"the document at {url[:200]} is larger than {max_bytes} bytes", param=param,
                                  code="document_too_large")
    if "." not in name:  # no extension in the URL: name it for its media type
        name += {"text/html": ".html", "application/pdf": ".pdf", "application/json": ".json"}.get(kind, ".txt")
    return name, data


def vector_db_object(store: dict[str, Any]) -> dict[str, Any]:
    return {"identifier": store["id"], "provider_id": store["provider_id"], "provider_resource_id": store["id"],
            "embedding_model": store["embedding_model"], "embedding_dimension": store["embedding_dimension"],
            "type": "vector_db", "vector_db_name": store.get("name")}


def query_params(params: dict[str, Any] | None, where: str = "params") -> tuple[int, float, str]:
    """(max_chunks, score_threshold, mode) from `/vector-io/query` params: 3 chunks, threshold 0, vector search.

    A threshold <= 0 keeps every chunk: Llama Stack's default is 0.0 and its FAISS scores are never negative, while
    ours are cosine similarities, negative for some unrelated text."""
    params = params or {}
    k = params.get("max_chunks", 3)
    if isinstance(k, float) and k.is_integer():
        k = int(k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_QUERY_CHUNKS:
        raise InvalidRequestError(f"{where}.max_chunks must be an integer from 1 to {MAX_QUERY_CHUNKS}",
                                  param=f"{where}.max_chunks")
    threshold = params.get("score_threshold", 0.0)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise InvalidRequestError(f"{where}.score_threshold must be a number", param=f"{where}.score_threshold")
    mode = params.get("mode", "vector")
    if mode not in QUERY_MODES:
        raise InvalidRequestError(f"{where}.mode must be vector, keyword or hybrid", param=f"{where}.mode")
    return k, float(threshold), mode


def chunk_id_of(chunk: Any) -> str | None:
    """The id a Llama Stack chunk carries, if any: `stored_chunk_id`, `chunk_id` or `chunk_metadata.chunk_id`."""
    given = chunk.stored_chunk_id or chunk.chunk_id or (chunk.chunk_metadata or {}).get("chunk_id")
    return None if given is None else str(given)[:256]


def document_id_of(chunk: Any) -> str:
    """The document a chunk belongs to (`metadata.document_id`, else `chunk_metadata.document_id`): chunks of one
    document are stored together, as a file's are."""
    doc = chunk.metadata.get("document_id")
    if doc is None:
        doc = (chunk.chunk_metadata or {}).get("document_id")
    return "" if doc is None else str(doc)


def given_embedding(values: list[float], dimension: int, param: str) -> np.ndarray:
    """A precomputed embedding checked against the store (its dimension, finite, not all zeros) at unit length."""
    if len(values) != dimension:
        raise InvalidRequestError(f"the embedding has {len(values)} dimensions; the vector store's have {dimension}",
                                  param=param, code="embedding_dimension_mismatch")
    vec = np.asarray(values, dtype=np.float64)
    scale = float(np.abs(vec).max()) if np.isfinite(vec).all() else 0.0
    if scale == 0.0:
        raise InvalidRequestError("an embedding must be finite numbers, not all zero", param=param)
    vec = vec / scale  # first to the largest component (no overflow), then to unit length
    return (vec / np.linalg.norm(vec)).astype(np.float32)


def openai_attributes(metadata: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """An inserted chunk's metadata as OpenAI search attributes (strings, numbers, booleans): nulls are left out,
    lists and objects become their JSON text."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = str(value)
        elif isinstance(value, str | int | float | bool):
            out[key] = value
        else:
            out[key] = json.dumps(value, ensure_ascii=False, default=str)
    return out


def search_attributes(row: Any, file_attrs: dict[str, Any] | None) -> dict[str, str | int | float | bool]:
    """What an OpenAI search result shows as `attributes`: the attached file's, or the inserted chunk's metadata."""
    return file_attrs if file_attrs is not None else openai_attributes(row.metadata or {})


def llama_chunk(row: Any, file_attrs: dict[str, Any] | None) -> dict[str, Any]:
    """A `/vector-io/query` chunk. A file's chunk carries the file's attributes and `document_id` (the file id), as
    Llama Stack's own file chunks do; an inserted chunk comes back with the metadata and ids it was inserted with."""
    if file_attrs is None:
        metadata = row.metadata or {}
    else:
        metadata = {**(row.metadata or {}), **file_attrs, "document_id": row.file_id}
    out: dict[str, Any] = {"content": row.text, "metadata": metadata}
    if row.chunk_id is not None:
        out["stored_chunk_id"] = row.chunk_id
    if row.chunk_metadata is not None:
        out["chunk_metadata"] = row.chunk_metadata
    return out


# Llama Stack's RAGQueryConfig.chunk_template: how each retrieved chunk reads in the tool result; its placeholders
CHUNK_TEMPLATE = "Result {index}\nContent: {chunk.content}\nMetadata: {metadata}\n"
TEMPLATE_FIELDS = {"index", "chunk.content", "metadata"}


def chunk_template(query_config: dict[str, Any] | None) -> str:
    """The query's chunk_template: it must name {index} and {chunk.content}, and nothing but those and {metadata}."""
    template = (query_config or {}).get("chunk_template", CHUNK_TEMPLATE)
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None} \
            if isinstance(template, str) else None
    except ValueError:
        fields = None
    if fields is None or not {"index", "chunk.content"} <= fields or not fields <= TEMPLATE_FIELDS:
        raise InvalidRequestError("query_config.chunk_template must be a string with {index} and {chunk.content} "
                                  "(and optionally {metadata}), and no other placeholders",
                                  param="query_config.chunk_template")
    return template


def rag_query_result(found: list[tuple[Any, float, dict | None]], max_chunks: int,
                     template: str = CHUNK_TEMPLATE) -> dict[str, Any]:
    """The rag-tool query answer: text items an agent can put in its context, plus ids and scores."""
    found = sorted(found, key=lambda f: -f[1])[:max_chunks]
    hits = []
    for row, score, attrs in found:
        meta = llama_chunk(row, attrs)["metadata"]
        hits.append((meta.get("document_id", row.file_id), row.text, score, meta))
    return knowledge_search_result(hits, template)


def knowledge_search_result(hits: list[tuple], template: str = CHUNK_TEMPLATE) -> dict[str, Any]:
    """[(document id, chunk text, score[, metadata])] best first -> {"content": text items (each chunk as the
    template writes it), "metadata": ids, chunks, scores}."""
    items = [{"type": "text", "text": f"knowledge_search found {len(hits)} chunks:\n"}]
    for i, (doc, text, _score, *meta) in enumerate(hits, 1):
        metadata = meta[0] if meta else {"document_id": doc}
        items.append({"type": "text", "text": template.format(index=i, chunk=SimpleNamespace(content=text),
                                                              metadata=metadata)})
    items.append({"type": "text", "text": "end of knowledge_search results\n"})
    return {"content": items, "metadata": {"document_ids": [h[0] for h in hits], "chunks": [h[1] for h in hits],
                                           "scores": [float(h[2]) for h in hits]}}
