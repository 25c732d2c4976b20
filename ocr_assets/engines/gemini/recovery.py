"""Recovery: SUBMITTING batches left by a crash are adopted (the job exists) or released."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from ocr_assets.engines.gemini.batch import GeminiBatchClient
from ocr_assets.engines.gemini.client import describe_error
from ocr_assets.engines.gemini.lifecycle import SUBMIT_GRACE_S, BatchDetail, finish_submit, ours, spool_path
from ocr_assets.pipeline import Pipeline
from ocr_assets.pipeline import owner_dead as _owner_dead
from ocr_assets.store import BatchRow, BatchState

log = logging.getLogger(__name__)


class RecoveryReport(BaseModel):
    adopted: list[str] = Field(default_factory=list)
    released: list[str] = Field(default_factory=list)
    # "batch id: error" of SUBMITTING batches whose lookup failed (after the call's own retries).
    lookup_failed: list[str] = Field(default_factory=list)



def recover_submitting(pipeline: Pipeline, client: GeminiBatchClient, *, now: datetime | None = None,
                       grace_s: float = SUBMIT_GRACE_S, active: Sequence[BatchRow] | None = None) -> RecoveryReport:
    """SUBMITTING batches left by a crash (owner dead, or older than the grace period): adopt the
    remote job if one carries our batch id as display name, else release without counting."""
    report = RecoveryReport()
    naive_now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    batches = pipeline.store.batches(states=[BatchState.SUBMITTING]) if active is None else active
    for batch in ours([b for b in batches if b.state == BatchState.SUBMITTING]):
        age = (naive_now - batch.updated_at).total_seconds()
        if not (_owner_dead(batch.owner) or age > grace_s):
            continue
        try:
            found = client.find_by_display_name(batch.batch_id)
        except Exception as exc:
            log.warning("cannot look up SUBMITTING batch %s: %s", batch.batch_id, describe_error(exc))
            report.lookup_failed.append(f"{batch.batch_id}: {describe_error(exc)}")
            continue
        if found is not None:
            finish_submit(pipeline, batch, found.name, input_file=BatchDetail.of(batch).input_file,
                          adopted=True)
            if found.state != BatchState.PENDING:
                pipeline.store.set_batch_state(batch.batch_id, found.state)
            report.adopted.append(batch.batch_id)
        else:
            pipeline.store.release_batch(batch.batch_id, error="remote create never happened (recovered)",
                                         error_type="batch_never_created", count_failure=False,
                                         state=BatchState.FAILED)
            report.released.append(batch.batch_id)
        spool_path(client, batch.batch_id).unlink(missing_ok=True)
    return report

