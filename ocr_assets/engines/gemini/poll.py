"""Poll: one cheap GET per active batch, state changes applied in one transaction; stuck batches."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from ocr_assets.engines.gemini.batch import GeminiBatchClient
from ocr_assets.engines.gemini.client import describe_error
from ocr_assets.engines.gemini.lifecycle import ENGINE, ours
from ocr_assets.engines.gemini.recovery import RecoveryReport, recover_submitting
from ocr_assets.pipeline import Pipeline
from ocr_assets.store import BatchRow, BatchState, BatchTransition

log = logging.getLogger(__name__)


def pending_ingest(pipeline: Pipeline) -> list[BatchRow]:
    """Remote-terminal batches not yet settled: SUCCEEDED/EXPIRED, or FAILED/CANCELLED with records
    still RUNNING in them (a crash between poll and release)."""
    return pipeline.store.unsettled_batches(ENGINE)


def poll_active(pipeline: Pipeline, client: GeminiBatchClient, *, now: datetime | None = None,
                active: Sequence[BatchRow] | None = None) -> list[BatchRow]:
    """One cheap GET per active batch (never waiting on one); returns the batches ready to ingest."""
    return poll_batches(pipeline, client, now=now, active=active)[0]


def poll_batches(pipeline: Pipeline, client: GeminiBatchClient, *, now: datetime | None = None,
                 active: Sequence[BatchRow] | None = None) -> tuple[list[BatchRow], list[BatchRow], list[str]]:
    """(batches ready to ingest, batches still active, failed SUBMITTING lookups) after one poll."""
    active = ours(pipeline.store.active_batches() if active is None else active)
    recovered = RecoveryReport()
    if any(b.state == BatchState.SUBMITTING for b in active):
        recovered = recover_submitting(pipeline, client, now=now, active=active)
        if recovered.adopted or recovered.released:
            active = ours(pipeline.store.active_batches())
    still: list[BatchRow] = []
    changes: list[BatchTransition] = []
    remote = [b for b in active if b.state in (BatchState.PENDING, BatchState.RUNNING) and b.remote_name]
    statuses = _poll_remote(client, remote, pipeline.settings.gemini.poll_concurrency)
    for batch in active:
        status = statuses.get(batch.batch_id)
        if status is None:  # not remote yet (submitting, held), or its poll failed: unchanged this tick
            still.append(batch)
            continue
        if status.state != batch.state:
            changes.append(BatchTransition(batch.batch_id, batch.state, status.state))
            batch = batch.model_copy(update={"state": status.state})
        if batch.state in (BatchState.PENDING, BatchState.RUNNING):
            still.append(batch)
    # One transaction for the whole poll (a store round-trip per batch made a 100-batch tick take seconds),
    # and one open of the store for it and the read after it.
    with pipeline.store.session():
        moved_on = {c.batch_id for c in changes} - set(pipeline.store.set_batch_states(changes))
        ready = pending_ingest(pipeline)
    still = [b for b in still if b.batch_id not in moved_on]  # changed elsewhere meanwhile: state unknown here
    return ready, still, recovered.lookup_failed


def _poll_remote(client: GeminiBatchClient, batches: Sequence[BatchRow], concurrency: int) -> dict[str, Any]:
    """batch_id → RemoteStatus for every batch whose GET answered, `concurrency` GETs at a time."""

    def one(batch: BatchRow) -> tuple[str, Any]:
        try:
            return batch.batch_id, client.poll(batch.remote_name)
        except Exception as exc:  # one unreachable job must not stop the others
            log.warning("poll of batch %s failed: %s", batch.batch_id, describe_error(exc))
            return batch.batch_id, None

    if len(batches) <= 1 or concurrency <= 1:
        results = [one(b) for b in batches]
    else:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(batches)), thread_name_prefix="poll") as pool:
            results = list(pool.map(one, batches))
    return {batch_id: status for batch_id, status in results if status is not None}


def stuck_batches(pipeline: Pipeline, *, now: datetime | None = None, hours: float | None = None,
                  active: Sequence[BatchRow] | None = None) -> list[BatchRow]:
    """Active batches (read from the store unless given) older than `gemini.stuck_batch_hours`
    (jobs pending for a day happen)."""
    hours = pipeline.settings.gemini.stuck_batch_hours if hours is None else hours
    naive_now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    return [b for b in ours(pipeline.store.active_batches() if active is None else active)
            if (naive_now - b.created_at).total_seconds() > hours * 3600]

