"""Inference tracking: one event per record inference, sent to Braintrust when configured.

The DuckDB inference log (written by the store with every outcome) is always on; this module adds
the optional Braintrust span. It never fails a run: the first error (bad key, unreachable endpoint)
is logged once as a warning — with the API key redacted — and tracking turns itself off.

Pointing the real SDK elsewhere (a self-hosted Braintrust, or a test's local endpoint) uses the SDK's
own variables: `BRAINTRUST_APP_URL` (login) and `BRAINTRUST_API_URL` (log ingestion).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "ocr-assets"
API_KEY_ENV = "BRAINTRUST_API_KEY"
PROJECT_ENV = "BRAINTRUST_PROJECT_NAME"


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
    prompt_template_hash: str | None = None
    rendered_prompt: str | None = None
    previous_context: dict[str, Any] | None = None
    generation_config: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] | None = None
    error_class: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    raw_response: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float | None = None
    worker: str | None = None  # where it ran when not in the driver (a Ray actor: "host/node id")


class Tracker(Protocol):
    # False when events would be dropped: callers skip building them (they re-parse every output).
    @property
    def enabled(self) -> bool: ...

    def log_inferences(self, events: list[InferenceEvent]) -> None: ...

    def flush(self) -> None: ...


class NullTracker:
    """Tracking off."""

    enabled = False

    def log_inferences(self, events: list[InferenceEvent]) -> None:
        return None

    def flush(self) -> None:
        return None


def _book_parts(book: str) -> tuple[str | None, str | None, int | None]:
    parts = book.split(":")
    if len(parts) != 3:
        return None, None, None
    return parts[0], parts[1], int(parts[2]) if parts[2].isdigit() else None


def span_fields(event: InferenceEvent) -> dict[str, Any]:
    """The Braintrust span content for one inference: input, output, metadata, metrics, error.

    Metric names follow Braintrust's conventions (`prompt_tokens`, `completion_tokens`,
    `prompt_cached_tokens`, `tokens`) so its UI shows token columns; the DuckDB inference log keeps
    the same values as `prompt_tokens`, `output_tokens`, `cached_tokens`.
    """
    state, school, year = _book_parts(event.book)
    metrics: dict[str, float | int] = {
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.output_tokens,
        "prompt_cached_tokens": event.cached_tokens,
        "tokens": event.prompt_tokens + event.output_tokens,
        "cost_usd": event.cost_usd,
        "attempt": event.attempt,
    }
    if event.latency_s is not None:
        metrics["latency_s"] = event.latency_s
    fields: dict[str, Any] = {
        "input": {
            "key": event.key,
            "prompt": {
                "name": event.prompt_name,
                "version": event.prompt_version,
                "vars_hash": event.prompt_vars_hash,
                "template_hash": event.prompt_template_hash,
            },
            "rendered_prompt": event.rendered_prompt,
            "previous_context": event.previous_context,
            "generation_config": event.generation_config,
        },
        "output": event.output,
        "metadata": {
            "key": event.key,
            "batch_id": event.batch_id,
            "engine": event.engine,
            "model": event.model,
            "book": event.book,
            "state": state,
            "school": school,
            "year": year,
            "page": event.page,
            "success": event.success,
            "prompt_version": event.prompt_version,
            **({"worker": event.worker} if event.worker else {}),  # only where a Ray worker ran it
        },
        "metrics": metrics,
        "tags": [event.prompt_version] if event.prompt_version else [],
    }
    if not event.success:
        fields["error"] = {
            "class": event.error_class,
            "type": event.error_type,
            "message": event.error_message,
            "traceback": event.traceback,
            "raw_response": event.raw_response,
        }
    return fields


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class BraintrustTracker:
    """One Braintrust span per record inference, through the real SDK, on a private SDK state.

    A private `BraintrustState` keeps this tracker's login and background logger apart from any
    global Braintrust use in the same process (and from other trackers).
    """

    def __init__(self, project: str, *, api_key: str | None = None, app_url: str | None = None):
        self.project = project
        self._api_key = api_key or os.environ.get(API_KEY_ENV)
        if not self._api_key:
            raise ValueError(f"BraintrustTracker needs {API_KEY_ENV}")
        self._app_url = app_url
        self._lock = threading.Lock()
        self._logger: Any = None
        self._state: Any = None
        self.disabled = False

    def __repr__(self) -> str:  # never show the key
        return f"BraintrustTracker(project={self.project!r}, disabled={self.disabled})"

    @property
    def enabled(self) -> bool:
        return not self.disabled

    def _fail(self, exc: BaseException, doing: str) -> None:
        if not self.disabled:
            self.disabled = True
            log.warning(
                "Braintrust tracking is off for the rest of this run (%s failed: %s: %s); "
                "the DuckDB inference log still has every record",
                doing, type(exc).__name__, _redact(str(exc), self._api_key)[:500],
            )

    def _ensure_logger(self) -> Any:
        if self._logger is None:
            from braintrust.logger import BraintrustState, init_logger

            self._state = BraintrustState()
            logger = init_logger(
                project=self.project, api_key=self._api_key, app_url=self._app_url,
                set_current=False, state=self._state,
            )
            logger.id  # log in and register the project now, so a bad key or endpoint fails here, once
            self._logger = logger
        return self._logger

    def log_inferences(self, events: list[InferenceEvent]) -> None:
        if self.disabled or not events:
            return
        with self._lock:
            try:
                logger = self._ensure_logger()
            except Exception as exc:  # noqa: BLE001 - tracking never fails a run
                self._fail(exc, "login")
                return
            try:
                now = time.time()
                for event in events:
                    start = now - event.latency_s if event.latency_s else now
                    span = logger.start_span(
                        name=f"page_ocr {event.key}", type="llm", start_time=start, set_current=False,
                    )
                    span.log(**span_fields(event))
                    span.end(end_time=now)
                logger.flush()  # one ingest per batch: deliver before the step's process may exit
            except Exception as exc:  # noqa: BLE001
                self._fail(exc, "logging spans")

    def flush(self) -> None:
        if self.disabled or self._logger is None:
            return
        try:
            self._logger.flush()
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, "flush")

    def log_experiment(
        self, name: str, rows: Sequence[dict[str, Any]], *, metadata: dict[str, Any] | None = None
    ) -> str | None:
        """Log evaluation rows (input/output/expected/scores/metrics/metadata) as one experiment.

        Returns the experiment name, or None when tracking is (or turns) off.
        """
        if self.disabled:
            return None
        from braintrust.logger import BraintrustState, init_experiment

        with self._lock:
            try:
                experiment = init_experiment(
                    project=self.project, experiment=name, metadata=metadata or {}, api_key=self._api_key,
                    app_url=self._app_url, set_current=False, state=BraintrustState(),
                )
                for row in rows:
                    experiment.log(**row)
                experiment.flush()
                return name
            except Exception as exc:  # noqa: BLE001
                self._fail(exc, "experiment logging")
                return None


def make_tracker(project: str | None = None) -> Tracker:
    """Braintrust when `BRAINTRUST_API_KEY` is set, else the null tracker (said once, at info level)."""
    if not os.environ.get(API_KEY_ENV):
        log.info("Braintrust tracking off (%s not set); the DuckDB inference log is always on", API_KEY_ENV)
        return NullTracker()
    return BraintrustTracker(project or os.environ.get(PROJECT_ENV) or DEFAULT_PROJECT)
