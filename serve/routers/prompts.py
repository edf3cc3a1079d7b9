"""Llama Stack's Prompts API (`/v1` only): stored, versioned prompt templates, run by the Agents deployment (whose
Responses use them as instructions)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from serve.context import get_stack
from serve.protocol.openapi_bodies import NULL_BODY
from serve.protocol.prompts import (
    CreatePromptRequest,
    ListPromptsResponse,
    Prompt,
    SetDefaultVersionRequest,
    UpdatePromptRequest,
)

router = APIRouter(tags=["prompts"])


@router.post("/prompts", response_model=Prompt)
async def create_prompt(body: CreatePromptRequest) -> dict[str, Any]:
    return await get_stack().agents().create_prompt.remote(body)


@router.get("/prompts", response_model=ListPromptsResponse)
async def list_prompts() -> dict[str, Any]:
    """Every prompt, at its default version."""
    return await get_stack().agents().list_prompts.remote()


@router.get("/prompts/{prompt_id}", response_model=Prompt)
async def get_prompt(prompt_id: str, version: int | None = Query(None, ge=1)) -> dict[str, Any]:
    """The prompt at `version`, else at its default version (the latest unless set-default-version chose one)."""
    return await get_stack().agents().get_prompt.remote(prompt_id, version)


@router.get("/prompts/{prompt_id}/versions", response_model=ListPromptsResponse)
async def list_prompt_versions(prompt_id: str) -> dict[str, Any]:
    return await get_stack().agents().list_prompt_versions.remote(prompt_id)


# both methods are served (llama-stack-client POSTs; Llama Stack 0.3's server documents PUT), each with its own
# OpenAPI operation id: one route with two methods would publish the same id twice
@router.post("/prompts/{prompt_id}", response_model=Prompt, operation_id="update_prompt")
@router.put("/prompts/{prompt_id}", response_model=Prompt, operation_id="update_prompt_put")
async def update_prompt(prompt_id: str, body: UpdatePromptRequest) -> dict[str, Any]:
    """A new version of the prompt."""
    return await get_stack().agents().update_prompt.remote(prompt_id, body)


@router.post("/prompts/{prompt_id}/set-default-version", response_model=Prompt, operation_id="set_default_version")
@router.put("/prompts/{prompt_id}/set-default-version", response_model=Prompt,
            operation_id="set_default_version_put")
async def set_default_version(prompt_id: str, body: SetDefaultVersionRequest) -> dict[str, Any]:
    return await get_stack().agents().set_default_prompt_version.remote(prompt_id, body.version)


@router.delete("/prompts/{prompt_id}", responses=NULL_BODY)
async def delete_prompt(prompt_id: str) -> None:
    await get_stack().agents().delete_prompt.remote(prompt_id)
