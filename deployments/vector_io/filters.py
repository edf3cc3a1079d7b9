"""OpenAI attribute filters: comparison (eq, ne, gt, gte, lt, lte, in, nin) and compound (and, or), on a file's
attributes or an inserted chunk's metadata; plus Llama Stack 0.2's `{key: value}` shorthand."""

from __future__ import annotations

from typing import Any

from serve.errors import InvalidRequestError

COMPARISONS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"}
MAX_DEPTH = 32  # compound filters nest at most this deep (matching recurses)


def normalize_filter(f: Any) -> Any:
    """OpenAI's filter as given; Llama Stack 0.2's shorthand, a non-empty `{key: value}` mapping without a `type`
    whose values are strings, numbers or booleans, as the equality of every pair. Anything else is left for
    validate_filter to judge."""
    if not isinstance(f, dict) or not f or "type" in f \
            or not all(isinstance(v, str | int | float | bool) for v in f.values()):
        return f
    equal = [{"type": "eq", "key": k, "value": v} for k, v in f.items()]
    return equal[0] if len(equal) == 1 else {"type": "and", "filters": equal}


def validate_filter(f: Any, path: str = "filters", depth: int = 0) -> None:
    if not isinstance(f, dict) or not isinstance(f.get("type"), str):
        raise InvalidRequestError("a filter is an object with a 'type'", param=path)
    if depth > MAX_DEPTH:
        raise InvalidRequestError(f"filters nest deeper than {MAX_DEPTH} levels", param="filters")
    kind = f["type"]
    if kind in ("and", "or"):
        subs = f.get("filters")
        if not isinstance(subs, list) or not subs:
            raise InvalidRequestError(f"a compound '{kind}' filter needs a non-empty 'filters' list", param=path)
        for i, sub in enumerate(subs):
            validate_filter(sub, f"{path}.filters.{i}", depth + 1)
        return
    if kind not in COMPARISONS:
        raise InvalidRequestError(f"unknown filter type '{kind}' (comparison: {', '.join(sorted(COMPARISONS))}; "
                                  "compound: and, or)", param=f"{path}.type")
    if not isinstance(f.get("key"), str) or "value" not in f:
        raise InvalidRequestError("a comparison filter needs 'key' (string) and 'value'", param=path)
    value = f["value"]
    if kind in ("in", "nin"):
        if not isinstance(value, list):
            raise InvalidRequestError(f"'{kind}' needs a list value", param=f"{path}.value")
    elif not isinstance(value, str | int | float | bool):
        raise InvalidRequestError("comparison values are strings, numbers or booleans", param=f"{path}.value")


def matches(f: dict[str, Any], attrs: dict[str, Any]) -> bool:
    kind = f["type"]
    if kind == "and":
        return all(matches(s, attrs) for s in f["filters"])
    if kind == "or":
        return any(matches(s, attrs) for s in f["filters"])
    if f["key"] not in attrs:
        return kind in ("ne", "nin")
    have, want = attrs[f["key"]], f["value"]
    try:
        return {
            "eq": lambda: have == want, "ne": lambda: have != want,
            "gt": lambda: have > want, "gte": lambda: have >= want,
            "lt": lambda: have < want, "lte": lambda: have <= want,
            "in": lambda: have in want, "nin": lambda: have not in want,
        }[kind]()
    except TypeError:  # comparing a string attribute with a number: no match, not an error
        return False
