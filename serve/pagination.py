"""The one list-pagination rule for every OpenAI-style list: after/before cursors (ids), limit, order."""

from __future__ import annotations

from typing import Any

from serve.errors import InvalidRequestError


def paginate(items: list[dict[str, Any]], *, after: str | None = None, before: str | None = None,
             limit: int = 20, order: str = "desc") -> dict[str, Any]:
    """`items` oldest first. Returns {"object": "list", "data", "first_id", "last_id", "has_more"}."""
    if order not in ("asc", "desc"):
        raise InvalidRequestError("order must be 'asc' or 'desc'", param="order")
    if not 1 <= limit <= 100:
        raise InvalidRequestError("limit must be between 1 and 100", param="limit")
    seq = list(items) if order == "asc" else list(reversed(items))
    ids = [it["id"] for it in seq]
    if after is not None:
        if after not in ids:
            raise InvalidRequestError(f"unknown cursor '{after}'", param="after")
        seq = seq[ids.index(after) + 1:]
    if before is not None:
        ids = [it["id"] for it in seq]
        if before not in ids:
            raise InvalidRequestError(f"unknown cursor '{before}'", param="before")
        seq = seq[:ids.index(before)]
        seq = seq[-limit:] if len(seq) > limit else seq
        has_more = len(ids[:ids.index(before)]) > limit
    else:
        has_more = len(seq) > limit
        seq = seq[:limit]
    return {"object": "list", "data": seq, "first_id": seq[0]["id"] if seq else None,
            "last_id": seq[-1]["id"] if seq else None, "has_more": has_more}


def paginate_records(records: list[dict[str, Any]], start_index: int | None = None,
                     limit: int | None = None) -> dict[str, Any]:
    """Llama Stack 0.2's offset pagination ({"data", "has_more"}); no limit (or -1) returns everything."""
    if start_index is not None and start_index < 0:
        raise InvalidRequestError("start_index must not be negative", param="start_index")
    if limit is None or limit == -1:
        return {"data": records, "has_more": False, "url": None}
    if limit < 1:
        raise InvalidRequestError("limit must be positive (or -1 for all)", param="limit")
    start = start_index or 0
    return {"data": records[start:start + limit], "has_more": start + limit < len(records), "url": None}
