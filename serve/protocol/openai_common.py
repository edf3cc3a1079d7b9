"""Shared pieces of the OpenAI response objects: the base class, optional-not-nullable fields, list pages.

OpenAI's published OpenAPI document marks many fields optional but not nullable (`system_fingerprint`, a file's
`expires_at`, most `Batch` timestamps): a strict client accepts them absent, not `null`. Such fields are declared
with `omitted()`: `None` inside, left out of the JSON, and typed without `null` in the served schema.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


def _is_none(v: Any) -> bool:
    return v is None


def omitted(default: Any = None, **kw: Any) -> Any:
    """An optional, non-nullable field: serialized only when set (not None)."""
    return Field(default=default, exclude_if=_is_none, **kw)


def _strip_null(prop: dict[str, Any]) -> dict[str, Any]:
    any_of = [s for s in prop.get("anyOf", []) if s != {"type": "null"}]
    if "anyOf" not in prop or len(any_of) == len(prop["anyOf"]):
        return prop
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**rest, **any_of[0]} if len(any_of) == 1 else {**rest, "anyOf": any_of}


def _omitted_not_nullable(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    # `omitted()` fields hold None in Python, but the JSON never carries null: say so in the schema
    for name, field in cls.model_fields.items():
        if field.exclude_if is not None and name in schema.get("properties", {}):
            schema["properties"][name] = _strip_null(schema["properties"][name])


class OpenAIObject(BaseModel):
    """A response body: unknown fields pass through (Llama Stack extensions, newer fields the producer adds)."""

    # every field but an omitted() one is always serialized: the served schema says so (required)
    model_config = ConfigDict(extra="allow", protected_namespaces=(), json_schema_extra=_omitted_not_nullable,
                              json_schema_serialization_defaults_required=True)


class ListPage(OpenAIObject, Generic[T]):
    """OpenAI's cursor page. `first_id`/`last_id` are null on an empty page (as OpenAI's own server sends)."""

    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class DeletedObject(OpenAIObject):
    id: str
    object: str
    deleted: bool
