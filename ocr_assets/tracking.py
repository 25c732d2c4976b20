"""Inference tracking: one event per record inference, sent to Braintrust when configured.

The DuckDB inference log (written by the store with every outcome) is always on; this module adds
the optional Braintrust span. It never fails a run.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


class InferenceEvent(BaseModel):
    """Everything known about one record inference (the Braintrust span's content)."""

    key: str
    book: str
    page: int
    engine: str
    model: str
    batch_id: str | None = None
    attempt: int = 1
    success: bool
    prompt_name: str | None = None
    prompt_version: str | None = None
    prompt_vars_hash: str | None = None
    rendered_prompt: str | None = None
    previous_context: dict[str, Any] | None = None
    generation_config: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    raw_response: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float | None = None


class Tracker(Protocol):
    def log_inferences(self, events: list[InferenceEvent]) -> None: ...

    def flush(self) -> None: ...


class NullTracker:
    """Tracking off."""

    def log_inferences(self, events: list[InferenceEvent]) -> None:
        return None

    def flush(self) -> None:
        return None
