"""Strict shape checks of response bodies against llama-stack-client's pydantic types (test-only).

The SDK's models accept missing fields and nulls; `check_shape` does not: every field the type marks required
must be present, a null only where the type allows None, literals must match, recursively through unions,
lists and dicts. `validate` runs it, then the SDK's own `model_validate` (or a TypeAdapter for aliases).
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Any

import pydantic


class ShapeError(AssertionError):
    pass


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def check_shape(tp: Any, value: Any, path: str = "$") -> None:
    tp = _unwrap(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return
    if origin in (typing.Union, types.UnionType):
        _check_union(args, value, path)
    elif value is None:
        if tp is not type(None):
            raise ShapeError(f"{path}: null where {tp!r} is required")
    elif origin is typing.Literal:
        if value not in args:
            raise ShapeError(f"{path}: {value!r} not one of {args}")
    elif origin in (list, typing.List, dict, typing.Dict):  # noqa: UP006
        _check_container(origin, args, value, path)
    elif isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        _check_model(tp, value, path)
    else:
        _check_scalar(tp, value, path)


def _check_union(args: tuple, value: Any, path: str) -> None:
    if value is None:
        if type(None) not in args:
            raise ShapeError(f"{path}: null where the type does not allow it")
        return
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            check_shape(arg, value, path)
            return
        except ShapeError as e:
            errors.append(str(e))
    raise ShapeError(f"{path}: matches no member of the union: {errors}")


def _check_container(origin: Any, args: tuple, value: Any, path: str) -> None:
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise ShapeError(f"{path}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            check_shape(args[0] if args else Any, item, f"{path}[{i}]")
        return
    if not isinstance(value, dict):
        raise ShapeError(f"{path}: expected an object, got {type(value).__name__}")
    for k, v in value.items():
        check_shape(args[1] if args else Any, v, f"{path}.{k}")


def _check_model(model: type[pydantic.BaseModel], value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise ShapeError(f"{path}: expected an object ({model.__name__}), got {type(value).__name__}")
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in value:
            if field.is_required():
                raise ShapeError(f"{path}: required field {key!r} of {model.__name__} is missing")
            continue
        check_shape(field.annotation, value[key], f"{path}.{key}")


def _check_scalar(tp: Any, value: Any, path: str) -> None:
    ok = {str: lambda v: isinstance(v, str), bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, int | float) and not isinstance(v, bool)}
    if tp is datetime:
        try:
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ShapeError(f"{path}: {value!r} is not a date-time") from None
        return
    check = ok.get(tp)
    if check is None:
        raise ShapeError(f"{path}: no rule for type {tp!r}")
    if not check(value):
        raise ShapeError(f"{path}: {value!r} is not a {tp.__name__}")


def validate(tp: Any, body: Any) -> Any:
    """Strict shape check, then the SDK's own parse (which must succeed too)."""
    check_shape(tp, body)
    return pydantic.TypeAdapter(tp).validate_python(body)
