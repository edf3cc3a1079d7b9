"""Llama Stack 0.2 DatasetIO schemas: dataset registration (a URI or inline rows) and appended rows."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DatasetPurpose = Literal["post-training/messages", "eval/question-answer", "eval/messages-answer"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class URIDataSource(_Lenient):
    """A file to load once, at registration: a local path or file://, data:, http(s)://, or an object-store URI."""

    type: Literal["uri"]
    uri: str = Field(min_length=1)


class RowsDataSource(_Lenient):
    type: Literal["rows"]
    rows: list[dict[str, Any]]


DataSource = Annotated[URIDataSource | RowsDataSource, Field(discriminator="type")]


class RegisterDatasetRequest(_Lenient):
    purpose: DatasetPurpose
    source: DataSource
    dataset_id: str | None = Field(default=None, min_length=1, max_length=256)
    metadata: dict[str, Any] | None = None


class AppendRowsRequest(_Lenient):
    rows: list[dict[str, Any]] = Field(min_length=1)


# ---- responses (llama-stack-client 0.2.12's Dataset and DatasetIterrowsResponse) ------------------------------

class _Out(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class URISourceInfo(_Out):
    type: Literal["uri"]
    uri: str


class RowsSourceInfo(_Out):
    type: Literal["rows"]
    rows: list[dict[str, Any]]


class Dataset(_Out):
    identifier: str
    provider_id: str
    provider_resource_id: str | None = None
    type: Literal["dataset"]
    purpose: DatasetPurpose
    source: Annotated[URISourceInfo | RowsSourceInfo, Field(discriminator="type")]
    metadata: dict[str, Any]


class ListDatasetsResponse(_Out):
    data: list[Dataset]


class IterrowsResponse(_Out):
    """A page of rows; `next_start_index` (ours) is where the next page starts, null after the last."""

    data: list[dict[str, Any]]
    has_more: bool
    url: str | None = None
    next_start_index: int | None = None
