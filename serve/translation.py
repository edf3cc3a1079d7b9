"""What the API translation layers share (Llama Stack's native inference in serve/llama_inference.py, Anthropic's
Messages API in serve/anthropic_messages.py): each turns its request into the OpenAI request the LLM deployments
serve, and their answers back into its own shape. Errors about an OpenAI field are renamed to the field the client
sent (`rename`: an OpenAI param path -> the translated API's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from serve.errors import APIError, InvalidRequestError, unwrap

Rename = Callable[[str], str]


class Events(Protocol):
    """OpenAI chunks in, the translated API's stream events out."""

    def start(self) -> list[dict[str, Any]]: ...
    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]: ...
    def end(self) -> list[dict[str, Any]]: ...


def renamed(exc: BaseException, rename: Rename) -> BaseException:
    """A deployment's error about an OpenAI field, naming the translated API's field instead; others unchanged."""
    err = unwrap(exc)
    if isinstance(err, APIError) and err.param:
        err.param = rename(err.param)
        return err
    return exc


async def answer(call: Any, rename: Rename) -> Any:
    """Await a deployment call, with `renamed` errors."""
    try:
        return await call
    except Exception as e:
        raise renamed(e, rename) from None


def build(request_type: type[BaseModel], rename: Rename, **fields: Any) -> Any:
    """The OpenAI request; what it refuses is a 400 naming the field it came from."""
    try:
        return request_type(**fields)
    except ValidationError as e:
        first = e.errors()[0]
        loc = [str(p) for p in first.get("loc", ())]
        param = rename(".".join(loc)) if loc else None
        raise InvalidRequestError(f"Invalid request: '{param}': {first.get('msg')}", param=param,
                                  code="invalid_value") from None


class TranslatedStream:
    """A streaming handle call whose items (lists of OpenAI chunks) come out translated (lists of events);
    `cancel` reaches the replica's generator, as the OpenAI routes' streams do."""

    def __init__(self, source: Any, events: Events, rename: Rename):
        self.source = source
        self.events = events
        self.rename = rename
        self._pending: list[dict[str, Any]] | None = events.start()
        self._ended = False

    def __aiter__(self) -> TranslatedStream:
        return self

    async def __anext__(self) -> list[dict[str, Any]]:
        while True:
            if self._ended:
                raise StopAsyncIteration
            try:
                items = await self.source.__anext__()
            except StopAsyncIteration:
                self._ended = True
                return self._take(self.events.end())
            except Exception as e:
                raise renamed(e, self.rename) from None
            out = [e for chunk in (items if isinstance(items, list) else [items]) for e in self.events.feed(chunk)]
            if self._pending is not None or out:
                return self._take(out)

    def _take(self, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pending, self._pending = self._pending or [], None
        return pending + out

    def cancel(self) -> None:
        self.source.cancel()
