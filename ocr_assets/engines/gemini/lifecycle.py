"""What every stage of a Gemini batch shares: the engine names, the batch detail, batch ids, spools.

Record safety rules the batch modules (submit, poll, recovery, ingest) keep:
- A batch's records (key + within-batch index) are claimed in the store, in one transaction, as
  SUBMITTING *before* the remote create; the attempt is counted only once the create succeeded.
- 429 on create → the batch is HELD (records stay claimed, no attempt counted) and retried with
  backoff, or at once when batches of ours finished since the refusal (their tokens are free
  again); while a hold is pending no new batch is created.
- A SUBMITTING batch left by a crash is looked up by display name (= our batch id): adopted if the
  job exists, else released without counting an attempt.
- Ingest joins results by key, rebuilds each record's prompt from the store (deterministic), and
  is idempotent: the store ignores results for records no longer RUNNING in the batch.
- FAILED → release (attempt counted); EXPIRED / CANCELLED → ingest what came back, release the rest.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ocr_assets.engines.gemini.batch import GeminiBatchClient, IntegrityReport
from ocr_assets.pipeline import Pipeline
from ocr_assets.store import BatchRow

log = logging.getLogger(__name__)

ENGINE = "gemini-batch"
# Records that fail before they can be sent (unreadable image, unreadable upstream output) are
# settled at once in a local batch of this engine, so their attempt counts like any other.
PREP_ENGINE = "gemini-batch-prep"
# A SUBMITTING batch younger than this is assumed to be mid-create in another thread or process.
SUBMIT_GRACE_S = 120.0


class BatchDetail(BaseModel):
    """What a batch row's `detail` JSON column holds, stage by stage (every field optional: a row
    gains fields as the batch moves on, and rows written by older versions must still parse)."""

    # Unknown keys of older (or newer) rows are kept, so a rewrite loses nothing.
    model_config = ConfigDict(extra="allow")

    # submit: what was sent
    records: int | None = None
    jsonl_bytes: int | None = None
    raw_tokens: int | None = None
    calibration: float | None = None
    inline_images: bool | None = None
    input_file: str | None = None  # the uploaded JSONL (deleted after ingest)
    input_uploaded_at: datetime | None = None  # uploads live 48 h
    adopted: bool | None = None  # found remotely by recovery after a crash mid-create
    # held (429 on create)
    holds: int = 0
    next_try: datetime | None = None
    spool: str | None = None  # the JSONL kept locally until the create goes through
    enqueued_at_hold: int | None = None  # our enqueued tokens when refused: fewer now means tokens freed
    # ingest
    remote_state: str | None = None
    integrity: IntegrityReport | None = None
    ingest: dict[str, Any] | None = None  # the IngestReport, less its integrity

    @classmethod
    def of(cls, batch: BatchRow | None) -> BatchDetail:
        """The batch's detail; an empty one when it has none or it cannot be read (logged)."""
        if batch is None or not batch.detail:
            return cls()
        try:
            return cls.model_validate_json(batch.detail)
        except (ValidationError, ValueError) as exc:
            log.warning("batch %s: unreadable detail ignored: %s", batch.batch_id, exc)
            return cls()

    def to_store(self) -> dict[str, Any]:
        # Unset top-level fields are left out; nested reports keep their nulls.
        return {k: v for k, v in self.model_dump(mode="json").items() if v is not None}


def new_batch_id(prefix: str = "gb") -> str:
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def ours(batches: Sequence[BatchRow]) -> list[BatchRow]:
    return [b for b in batches if b.engine == ENGINE]


def spool_path(client: GeminiBatchClient, batch_id: str) -> Path:
    return client.archive_dir / "inputs" / f"{batch_id}.jsonl"


def finish_submit(pipeline: Pipeline, batch: BatchRow | str, remote: str, *, input_file: str | None,
                  **sent: Any) -> None:
    """Record the remote name, count the attempt and store the batch detail, in one transaction."""
    detail = BatchDetail() if isinstance(batch, str) else BatchDetail.of(batch)
    batch_id = batch if isinstance(batch, str) else batch.batch_id
    # The hold is over: its retry time, spool and queue snapshot no longer apply.
    detail = detail.model_copy(update={"next_try": None, "spool": None, "enqueued_at_hold": None,
                                       "input_file": input_file, **sent})
    pipeline.store.mark_submitted(batch_id, remote, count_attempt=True, detail=detail.to_store())
