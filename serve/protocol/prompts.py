"""Llama Stack's Prompts API (/v1/prompts): versioned prompt templates with `{{name}}` variables, which a Responses
create names in `prompt: {id, version, variables}`. Shapes as Llama Stack 0.3's `Prompt` and its request bodies."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve.protocol.openai_common import OpenAIObject

PLACEHOLDER = re.compile(r"{{\s*(\w+)\s*}}")  # a variable in a prompt's text: {{name}} or {{ name }}
_NAME = re.compile(r"^\w+$")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _variable_names(v: list[str] | None) -> list[str] | None:
    for name in v or []:
        if not _NAME.match(name):
            raise ValueError(f"variable names are letters, digits and underscores, got {name!r}")
    return v


class CreatePromptRequest(_Lenient):
    prompt: str = Field(min_length=1)
    variables: list[str] | None = None  # None: the text's {{name}} placeholders

    _names = field_validator("variables")(_variable_names)


class UpdatePromptRequest(_Lenient):
    prompt: str = Field(min_length=1)
    version: int = Field(ge=1)  # the latest version, which this update follows (a stale one is refused)
    variables: list[str] | None = None
    set_as_default: bool = True

    _names = field_validator("variables")(_variable_names)


class SetDefaultVersionRequest(_Lenient):
    version: int = Field(ge=1)


class Prompt(OpenAIObject):
    prompt: str | None
    version: int
    prompt_id: str
    variables: list[str]
    is_default: bool


class ListPromptsResponse(OpenAIObject):
    data: list[Prompt]
