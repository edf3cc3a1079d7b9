"""Llama Stack 0.2 agents responses: agents, sessions, turns, their steps and the streamed turn events."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from serve.protocol.agents import AgentConfig
from serve.protocol.llama_common import (
    CompletionMessage,
    DateTime,
    ImageURL,
    InterleavedContent,
    LlamaObject,
    Metadata,
    SafetyViolation,
    ToolCall,
    ToolResponse,
    ToolResponseMessage,
    UserMessage,
)

StepType = Literal["inference", "tool_execution", "shield_call", "memory_retrieval"]


class AgentCreateResponse(LlamaObject):
    agent_id: str


class Agent(LlamaObject):
    agent_id: str
    agent_config: AgentConfig
    created_at: DateTime


class ListAgentsResponse(LlamaObject):
    data: list[Agent]
    has_more: bool
    url: str | None = None


class _Step(LlamaObject):
    step_id: str
    turn_id: str
    started_at: DateTime | None = None
    completed_at: DateTime | None = None


class InferenceStep(_Step):
    step_type: Literal["inference"]
    model_response: CompletionMessage


class ToolExecutionStep(_Step):
    step_type: Literal["tool_execution"]
    tool_calls: list[ToolCall]
    tool_responses: list[ToolResponse]


class ShieldCallStep(_Step):
    step_type: Literal["shield_call"]
    violation: SafetyViolation | None = None


class MemoryRetrievalStep(_Step):
    step_type: Literal["memory_retrieval"]
    vector_db_ids: str
    inserted_context: InterleavedContent


Step = Annotated[InferenceStep | ToolExecutionStep | ShieldCallStep | MemoryRetrievalStep,
                 Field(discriminator="step_type")]
InputMessage = Annotated[UserMessage | ToolResponseMessage, Field(discriminator="role")]


class Attachment(LlamaObject):
    content: InterleavedContent | ImageURL  # or a URL: {uri}
    mime_type: str


class Turn(LlamaObject):
    turn_id: str
    session_id: str
    input_messages: list[InputMessage]
    steps: list[Step]
    output_message: CompletionMessage
    output_attachments: list[Attachment] | None = None
    started_at: DateTime
    completed_at: DateTime | None = None


class StepResponse(LlamaObject):
    step: Step


class SessionCreateResponse(LlamaObject):
    session_id: str


class Session(LlamaObject):
    session_id: str
    session_name: str
    started_at: DateTime
    turns: list[Turn]


class ListSessionsResponse(LlamaObject):
    data: list[Session]
    has_more: bool
    url: str | None = None


# ---- the streamed turn (`stream: true`): `data: {"event": {"payload": ...}}` events ------------------------------

class TextDelta(LlamaObject):
    type: Literal["text"]
    text: str


class ImageDelta(LlamaObject):
    type: Literal["image"]
    image: str


class ToolCallDelta(LlamaObject):
    type: Literal["tool_call"]
    parse_status: Literal["started", "in_progress", "failed", "succeeded"]
    tool_call: ToolCall | str


ContentDelta = Annotated[TextDelta | ImageDelta | ToolCallDelta, Field(discriminator="type")]


class StepStartPayload(LlamaObject):
    event_type: Literal["step_start"]
    step_type: StepType
    step_id: str
    metadata: Metadata | None = None


class StepProgressPayload(LlamaObject):
    event_type: Literal["step_progress"]
    step_type: StepType
    step_id: str
    delta: ContentDelta


class StepCompletePayload(LlamaObject):
    event_type: Literal["step_complete"]
    step_type: StepType
    step_id: str
    step_details: Step


class TurnStartPayload(LlamaObject):
    event_type: Literal["turn_start"]
    turn_id: str


class TurnCompletePayload(LlamaObject):
    event_type: Literal["turn_complete"]
    turn: Turn


class TurnAwaitingInputPayload(LlamaObject):
    event_type: Literal["turn_awaiting_input"]
    turn: Turn


TurnEventPayload = Annotated[StepStartPayload | StepProgressPayload | StepCompletePayload | TurnStartPayload
                             | TurnCompletePayload | TurnAwaitingInputPayload, Field(discriminator="event_type")]


class TurnResponseEvent(LlamaObject):
    payload: TurnEventPayload


class AgentTurnResponseStreamChunk(LlamaObject):
    """One SSE event of a streamed turn."""

    event: TurnResponseEvent
