"""Llama Stack 0.2 safety responses: the shields registry and run-shield."""

from __future__ import annotations

from typing import Literal

from serve.protocol.llama_common import LlamaObject, Metadata, SafetyViolation


class Shield(LlamaObject):
    identifier: str
    provider_id: str
    provider_resource_id: str | None = None
    type: Literal["shield"]
    params: Metadata | None = None


class ListShieldsResponse(LlamaObject):
    data: list[Shield]


class RunShieldResponse(LlamaObject):
    violation: SafetyViolation | None = None
