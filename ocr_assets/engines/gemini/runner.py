"""The batch loop: poll, ingest and submit, tick after tick, until every selected record is terminal;
operator actions on one batch. The stages live in `submit`, `poll`, `recovery` and `ingest`."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from ocr_assets.engines.gemini.batch import GeminiBatchClient
from ocr_assets.engines.gemini.client import GeminiCallError, describe_error
from ocr_assets.engines.gemini.context import provider_for
from ocr_assets.engines.gemini.ingest import BatchNotFinished, ingest_batch
from ocr_assets.engines.gemini.lifecycle import BatchDetail, spool_path
from ocr_assets.engines.gemini.poll import poll_batches, stuck_batches
from ocr_assets.engines.gemini.submit import SubmitReport, submit_wave
from ocr_assets.page_requests import ContextProvider
from ocr_assets.pipeline import Pipeline, Progress, ProgressCallback
from ocr_assets.store import BatchState

log = logging.getLogger(__name__)


class BatchRunStopped(GeminiCallError):
    """The API kept failing tick after tick (each call already retried with backoff): `run --batch`
    stops rather than loop. Records of a SUBMITTING batch stay claimed (never resent) and a later run
    recovers them; records whose upload failed were put back as they were."""


class BatchRunSummary(BaseModel):
    ticks: int = 0
    submitted: list[str] = Field(default_factory=list)
    ingested: list[str] = Field(default_factory=list)
    attempted: int = 0
    succeeded: int = 0
    retryable: int = 0
    fatal: int = 0
    blocked: int = 0
    released: int = 0
    held: int = 0
    alerts: list[str] = Field(default_factory=list)
    unfinished: int = 0
    stopped: str = "done"
    elapsed_s: float = 0.0


# -- operator actions ----------------------------------------------------------------------------


def cancel_batch(pipeline: Pipeline, client: GeminiBatchClient, batch_id: str) -> list[str]:
    """Cancel the remote job and return its records to retry (the attempt stands, logged)."""
    store = pipeline.store
    batch = store.get_batch(batch_id)
    if batch is None:
        raise KeyError(f"no batch {batch_id!r} in the record store")
    if batch.state in (BatchState.SUBMITTING, BatchState.HELD) or not batch.remote_name:
        keys = store.release_batch(batch.batch_id, error="cancelled before the remote create",
                                   error_type="batch_cancelled", count_failure=False, state=BatchState.CANCELLED)
        spool_path(client, batch.batch_id).unlink(missing_ok=True)
        return keys
    if batch.state in (BatchState.PENDING, BatchState.RUNNING):
        client.cancel(batch.remote_name)
    return store.release_batch(batch.batch_id, error="cancelled by operator", error_type="batch_cancelled",
                               count_failure=True, state=BatchState.CANCELLED)


def batch_status(pipeline: Pipeline, batch_id: str) -> dict[str, Any]:
    """State, record outcomes and detail of one batch (for the CLI)."""
    store = pipeline.store
    batch = store.get_batch(batch_id)
    if batch is None:
        raise KeyError(f"no batch {batch_id!r} in the record store")
    return {
        "batch": batch.model_dump(mode="json", exclude={"detail"}),
        "outcomes": store.batch_outcome_counts(batch.batch_id),
        "detail": BatchDetail.of(batch).to_store(),
    }


# -- the loop ------------------------------------------------------------------------------------


def run_batches(
    pipeline: Pipeline,
    client: GeminiBatchClient,
    *,
    books: Sequence[str] | None = None,
    poll_interval: float | None = None,
    limit: int | None = None,
    provider: ContextProvider | None = None,
    on_progress: ProgressCallback | None = None,
    max_idle_ticks: int = 20,
    timeout_s: float | None = None,
) -> BatchRunSummary:
    """Submit / poll / ingest until every selected record is terminal, keeping up to
    `max_concurrent_batches` in flight and building cross-book waves as pages unlock.

    `on_progress` gets a `Progress` after every tick: `done` of the pages unfinished when the run started
    (at most `limit`), with the batch counts."""
    settings = pipeline.settings
    interval = settings.execution.poll_interval_seconds if poll_interval is None else poll_interval
    if provider is None:
        provider = provider_for(settings, pipeline.store)
    summary = BatchRunSummary()
    pipeline.recover_orphans()
    store = pipeline.store
    start = time.monotonic()
    unfinished_at_start = store.unfinished_count(books) if on_progress is not None else 0
    goal = unfinished_at_start if limit is None else min(unfinished_at_start, limit)
    idle = 0
    submitted_records = 0
    # Consecutive ticks whose SUBMITTING lookup, or whose every submit, failed.
    failed_lookups = failed_submits = 0
    while True:
        with store.session():  # one tick is one unit of work: one hold of the store, released to sleep
            summary.ticks += 1
            finished, active, unresolved = poll_batches(pipeline, client, active=store.active_batches())
            failed_lookups = failed_lookups + 1 if unresolved else 0
            if failed_lookups >= settings.gemini.transport_retries:
                raise BatchRunStopped(
                    f"cannot look up SUBMITTING batch(es) after {failed_lookups} tries ({'; '.join(unresolved)}); "
                    "their records stay claimed and are never resent: re-run `ocr-assets run --batch` once "
                    "the API answers")
            for batch in finished:
                try:
                    result = ingest_batch(pipeline, client, batch, provider=provider)
                except BatchNotFinished:
                    continue
                except Exception as exc:  # keep the other batches moving; this one is retried next tick
                    log.error("ingest of batch %s failed: %s", batch.batch_id, describe_error(exc))
                    continue
                summary.ingested.append(batch.batch_id)
                summary.attempted += result.succeeded + result.retryable + result.fatal
                summary.succeeded += result.succeeded
                summary.retryable += result.retryable
                summary.fatal += result.fatal
                summary.blocked += result.blocked
                summary.released += result.released
                if result.alert:
                    summary.alerts.append(result.alert)
            remaining = None if limit is None else max(0, limit - submitted_records)
            wave = SubmitReport(skipped="limit reached")
            if remaining is None or remaining > 0:
                wave = submit_wave(pipeline, client, books=books, limit=remaining, provider=provider, active=active)
            failed_submits = failed_submits + 1 if wave.errors and not wave.batches else 0
            if failed_submits >= settings.gemini.transport_retries:
                raise BatchRunStopped(f"no batch could be submitted in {failed_submits} tries "
                                      f"({'; '.join(wave.errors)}); re-run `ocr-assets run --batch` once the API answers")
            submitted_records += wave.records
            summary.submitted += wave.batches + wave.resubmitted
            summary.held += len(wave.held)
            in_flight = len(active) + len(wave.batches)
            progress = store.progress(books)
            summary.unfinished = progress.total - progress.terminal
            if on_progress is not None:
                on_progress(Progress(
                    done=min(goal, max(0, unfinished_at_start - summary.unfinished)), total=goal,
                    failures=summary.retryable + summary.fatal, elapsed_s=time.monotonic() - start,
                    alerts=list(summary.alerts), cost_usd=progress.cost_usd, tick=summary.ticks,
                    active_batches=in_flight, submitted_batches=len(summary.submitted),
                    ingested_batches=len(summary.ingested),
                    stuck=[b.batch_id for b in stuck_batches(pipeline, active=active)],
                ))
            if summary.unfinished == 0:
                summary.stopped = "done"
                break
            if limit is not None and submitted_records >= limit and not in_flight:
                summary.stopped = "limit reached"
                break
            if not in_flight and not finished and not wave.failed_before_submit:
                idle += 1
                if idle >= max_idle_ticks:
                    summary.stopped = (f"{summary.unfinished} records unfinished but nothing is runnable or in "
                                       "flight here (running elsewhere?)")
                    log.warning("%s", summary.stopped)
                    break
            else:
                idle = 0
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                summary.stopped = "timeout"
                break
        time.sleep(interval)
    summary.elapsed_s = time.monotonic() - start
    return summary
