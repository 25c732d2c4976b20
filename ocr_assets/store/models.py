"""The store's vocabulary: record and batch states, and the rows and outcomes that cross its boundary."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, Field


class RecordStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    RETRYABLE_FAILURE = "RETRYABLE_FAILURE"
    FATAL_FAILURE = "FATAL_FAILURE"
    BLOCKED = "BLOCKED"


TERMINAL_STATUSES = (RecordStatus.SUCCESS, RecordStatus.FATAL_FAILURE, RecordStatus.BLOCKED)


class BatchState(StrEnum):
    SUBMITTING = "SUBMITTING"  # claimed locally, remote create not yet confirmed
    HELD = "HELD"  # remote create refused for capacity (429); retried later, no attempt counted
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    INGESTED = "INGESTED"


ACTIVE_BATCH_STATES = (BatchState.SUBMITTING, BatchState.HELD, BatchState.PENDING, BatchState.RUNNING)
REMOTE_TERMINAL_STATES = (BatchState.SUCCEEDED, BatchState.FAILED, BatchState.CANCELLED, BatchState.EXPIRED)


class StoreError(RuntimeError):
    """The record store could not complete an operation."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class PlannedRecord(BaseModel):
    """A plan node as the store receives it."""

    key: str
    book: str
    state: str
    school: str
    year: int
    page: int
    image_path: str
    allow_list_path: str
    upstream_key: str | None = None
    chain_remaining: int = 0


class RecordRow(PlannedRecord):
    """One record as stored: its plan node plus its state."""

    upstream_done: bool = False
    status: RecordStatus
    attempts: int = 0
    last_error: str | None = None
    error_class: str | None = None
    error_type: str | None = None
    blocked_by: str | None = None
    prompt_name: str | None = None
    prompt_version: str | None = None
    prompt_vars_hash: str | None = None
    model: str | None = None
    engine: str | None = None
    batch_id: str | None = None
    batch_index: int | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    output_path: str | None = None
    output_sha256: str | None = None
    created_at: datetime
    updated_at: datetime


class BatchRow(BaseModel):
    batch_id: str
    remote_name: str | None = None
    engine: str
    model: str | None = None
    state: BatchState
    record_count: int
    estimated_tokens: int = 0
    owner: str | None = None
    error: str | None = None
    detail: str | None = None
    created_at: datetime
    updated_at: datetime
    ingested_at: datetime | None = None


class BatchTransition(NamedTuple):
    """A batch state change observed remotely: `batch_id` goes from `seen` to `state`."""

    batch_id: str
    seen: BatchState
    state: BatchState


PLAN_COLUMNS = tuple(PlannedRecord.model_fields)


class ClaimItem(BaseModel):
    """A record going into a batch (or a synchronous run), with the prompt it will be sent."""

    key: str
    batch_index: int
    prompt_name: str
    prompt_version: str
    prompt_vars_hash: str


class RecordOutcome(BaseModel):
    """What happened to one record in one attempt; `apply_outcomes` writes it transactionally."""

    key: str
    success: bool
    output_path: str | None = None
    output_sha256: str | None = None
    error_class: str | None = None  # "retryable" | "fatal"
    error_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    raw_response: str | None = None
    model: str = ""
    engine: str = ""
    pricing_mode: str = "local"
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    realtime_cost_usd: float = 0.0
    latency_s: float | None = None
    rendered_prompt: str | None = None
    prompt_template_hash: str | None = None
    previous_context: dict | None = None
    generation_config: dict | None = None
    worker: str | None = None  # where it ran when not in this process (a Ray actor)


class ApplySummary(BaseModel):
    applied: list[str] = Field(default_factory=list)
    succeeded: list[str] = Field(default_factory=list)
    retryable: list[str] = Field(default_factory=list)
    fatal: list[str] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)  # not RUNNING in this batch (stale or replayed)
    blocked: int = 0
