"""Submit: claim runnable records into batches, upload and create them, hold on 429, retry held ones.

See `lifecycle` for the record safety rules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field

from ocr_assets.core import PageFailure, PageRequest
from ocr_assets.engines.gemini.batch import BatchLine, GeminiBatchClient, shard
from ocr_assets.engines.gemini.calls import CreateRefused, SubmitUncertain
from ocr_assets.engines.gemini.context import provider_for
from ocr_assets.engines.gemini.lifecycle import (
    ENGINE,
    PREP_ENGINE,
    BatchDetail,
    finish_submit,
    new_batch_id,
    ours,
    spool_path,
)
from ocr_assets.engines.gemini.metering import load_calibration, token_room
from ocr_assets.outputs import atomic_write_bytes
from ocr_assets.page_requests import ContextProvider, placeholder_request, stored_identity, waits_for_upstream
from ocr_assets.pipeline import Pipeline, one_store_session, owner_id
from ocr_assets.schema import ErrorClass
from ocr_assets.store import BatchRow, BatchState, ClaimItem, RecordRow

log = logging.getLogger(__name__)


class SubmitReport(BaseModel):
    batches: list[str] = Field(default_factory=list)
    records: int = 0
    estimated_tokens: int = 0
    held: list[str] = Field(default_factory=list)
    resubmitted: list[str] = Field(default_factory=list)
    failed_before_submit: int = 0
    uncertain: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)  # "batch …: why" for each batch whose upload or create failed
    skipped: str | None = None  # why nothing new was submitted



def _settle_now(pipeline: Pipeline, failures: Sequence[PageFailure], records: dict[str, RecordRow],
                requests: dict[str, PageRequest], *, require_upstream: bool) -> int:
    """Records that cannot be sent (unreadable image, unreadable upstream): fail them now, counted."""
    if not failures:
        return 0
    store = pipeline.store
    batch_id = new_batch_id("prep")
    items = []
    for i, failure in enumerate(failures):
        request = requests.get(failure.key)
        identity = request.prompt_identity if request else stored_identity(records[failure.key])
        items.append(ClaimItem(key=failure.key, batch_index=i, prompt_name=identity.name or pipeline.settings.prompt.name,
                               prompt_version=identity.version or pipeline.settings.prompt.version,
                               prompt_vars_hash=identity.vars_hash))
    claimed = set(store.claim(batch_id, items, engine=PREP_ENGINE, model=pipeline.settings.model.name,
                              owner=owner_id(), require_upstream=require_upstream))
    if not claimed:
        return 0
    reqs = [requests[k] for k in claimed if k in requests] + [
        placeholder_request(records[k], stored_identity(records[k]), attempt=1) for k in claimed if k not in requests
    ]
    pipeline.ingest(batch_id, reqs, [f for f in failures if f.key in claimed], engine=PREP_ENGINE,
                    pricing_mode="batch")
    store.set_batch_state(batch_id, BatchState.INGESTED)
    return len(claimed)



def _enqueued(batches: Sequence[BatchRow]) -> int:
    """Estimated tokens our batches hold in the remote queue (a held batch holds none)."""
    return sum(b.estimated_tokens for b in batches if b.state != BatchState.HELD)


def _hold(pipeline: Pipeline, batch: BatchRow | str, error: str, *, input_file: str | None,
          spool: Path, now: datetime, enqueued: int) -> None:
    store = pipeline.store
    row = store.get_batch(batch) if isinstance(batch, str) else batch
    detail = BatchDetail.of(row)
    holds = detail.holds + 1
    g = pipeline.settings.gemini
    wait = min(g.hold_backoff_s * (2 ** (holds - 1)), g.hold_backoff_max_s)
    detail = detail.model_copy(update={
        "holds": holds, "next_try": now + timedelta(seconds=wait), "spool": str(spool),
        "enqueued_at_hold": enqueued,
        "input_file": input_file or detail.input_file,
        "input_uploaded_at": now if input_file else detail.input_uploaded_at,
    })
    store.set_batch_state(row.batch_id if row else str(batch), BatchState.HELD, error=error,
                          detail=detail.to_store())
    log.warning("batch %s held (429 on create, hold #%d): retry in %.0f s", row.batch_id if row else batch,
                holds, wait)



def _fail_create(pipeline: Pipeline, batch_id: str, error: str) -> list[str]:
    """The create was refused for good (4xx): the attempt counts, the records go back to retry."""
    store = pipeline.store
    store.mark_submitted(batch_id, "", count_attempt=True)
    return store.release_batch(batch_id, error=error, error_type="batch_create_failed", count_failure=True,
                               state=BatchState.FAILED)


def _retry_held(pipeline: Pipeline, client: GeminiBatchClient, batch: BatchRow, report: SubmitReport,
                now: datetime, enqueued: int) -> bool:
    """Try a held batch again; True when it went through (or was settled), False when still held."""
    detail = BatchDetail.of(batch)
    spool = Path(detail.spool or spool_path(client, batch.batch_id))
    input_file = detail.input_file
    uploaded_at = detail.input_uploaded_at
    # Uploaded files live 48 h; re-upload the spooled JSONL when the first upload is getting old.
    fresh = bool(uploaded_at) and now - uploaded_at < timedelta(hours=40)
    uploaded = None
    if not (input_file and fresh):
        if not spool.exists():
            pipeline.store.release_batch(batch.batch_id, error="held batch lost its input file",
                                         error_type="batch_input_lost", count_failure=False,
                                         state=BatchState.FAILED)
            return True
        try:
            input_file = uploaded = client.upload_jsonl(spool.read_bytes(), batch.batch_id)
        except SubmitUncertain as exc:
            _hold(pipeline, batch, str(exc), input_file=None, spool=spool, now=now, enqueued=enqueued)
            report.held.append(batch.batch_id)
            return False
    try:
        remote = client.create(input_file, batch.batch_id)
    except CreateRefused as exc:
        _hold(pipeline, batch, str(exc), input_file=uploaded, spool=spool, now=now, enqueued=enqueued)
        report.held.append(batch.batch_id)
        return False
    except SubmitUncertain as exc:
        if exc.definite:
            _fail_create(pipeline, batch.batch_id, str(exc))
            spool.unlink(missing_ok=True)
            return True
        pipeline.store.set_batch_state(batch.batch_id, BatchState.SUBMITTING, error=str(exc))
        report.uncertain.append(batch.batch_id)
        return False
    fresh_upload = {"input_uploaded_at": now} if uploaded else {}
    finish_submit(pipeline, batch, remote, input_file=input_file, **fresh_upload)
    spool.unlink(missing_ok=True)
    report.resubmitted.append(batch.batch_id)
    return True


def _retry_due_held(pipeline: Pipeline, client: GeminiBatchClient, held: Sequence[BatchRow],
                    report: SubmitReport, now: datetime, enqueued: int) -> bool:
    """Retry the held batches whose wait is over; False when one was refused again (quota full)."""
    for batch in held:
        detail = BatchDetail.of(batch)
        # Batches of ours that finished since the refusal freed their tokens: try now rather than sit
        # out the backoff while the queue drains (the backoff is for a quota others keep full).
        freed = enqueued < (-1 if detail.enqueued_at_hold is None else detail.enqueued_at_hold)
        if detail.next_try and detail.next_try > now and not freed:
            report.held.append(batch.batch_id)
            continue
        if not _retry_held(pipeline, client, batch, report, now, enqueued):
            return False
        enqueued += batch.estimated_tokens
    return True


def _create_batch(pipeline: Pipeline, client: GeminiBatchClient, lines_in_shard: Sequence[BatchLine],
                  by_key: dict[str, PageRequest], calibration: float, report: SubmitReport, *, now: datetime,
                  enqueued: int, require_upstream: bool) -> bool:
    """Claim one shard's records, spool, upload and create its batch; False when the wave must stop
    (429, or an upload / create that failed)."""
    settings, store, g = pipeline.settings, pipeline.store, pipeline.settings.gemini
    batch_id = new_batch_id()
    items = [
        ClaimItem(key=line.key, batch_index=i, prompt_name=by_key[line.key].prompt_identity.name,
                  prompt_version=by_key[line.key].prompt_identity.version,
                  prompt_vars_hash=by_key[line.key].prompt_identity.vars_hash)
        for i, line in enumerate(lines_in_shard)
    ]
    estimated = sum(line.estimated_tokens for line in lines_in_shard)
    claimed = set(store.claim(
        batch_id, items, engine=ENGINE, model=settings.model.name, state=BatchState.SUBMITTING,
        count_attempt=False, estimated_tokens=estimated, owner=owner_id(), require_upstream=require_upstream,
    ))
    if not claimed:
        return True
    kept = [line for line in lines_in_shard if line.key in claimed]
    data = b"".join(line.data for line in kept)
    spool = spool_path(client, batch_id)
    atomic_write_bytes(spool, data)
    sent = {"records": len(kept), "jsonl_bytes": len(data), "raw_tokens": sum(x.raw_tokens for x in kept),
            "calibration": calibration, "inline_images": g.inline_images}
    input_file = None
    try:
        input_file = client.upload_jsonl(data, batch_id)
        remote = client.create(input_file, batch_id)
    except CreateRefused as exc:
        store.set_batch_state(batch_id, BatchState.SUBMITTING, detail=BatchDetail(**sent).to_store())
        _hold(pipeline, batch_id, str(exc), input_file=input_file, spool=spool, now=now,
              enqueued=enqueued + report.estimated_tokens)
        report.held.append(batch_id)
        report.skipped = "the enqueued-token quota is full (429 on create)"
        return False
    except SubmitUncertain as exc:
        if exc.definite and input_file is None:
            # the upload failed: the job surely does not exist; put the records back untouched
            store.release_batch(batch_id, error=str(exc), error_type="batch_upload_failed",
                                count_failure=False, state=BatchState.FAILED)
            spool.unlink(missing_ok=True)
        elif exc.definite:
            _fail_create(pipeline, batch_id, str(exc))
            spool.unlink(missing_ok=True)
        else:
            store.set_batch_state(batch_id, BatchState.SUBMITTING, error=str(exc),
                                  detail=BatchDetail(**sent, input_file=input_file).to_store())
            report.uncertain.append(batch_id)
        log.warning("batch %s not submitted: %s", batch_id, exc)
        report.errors.append(f"batch {batch_id}: {exc}")
        return False
    finish_submit(pipeline, batch_id, remote, input_file=input_file, input_uploaded_at=now, **sent)
    spool.unlink(missing_ok=True)
    report.batches.append(batch_id)
    report.records += len(kept)
    report.estimated_tokens += estimated
    return True


@one_store_session
def submit_wave(
    pipeline: Pipeline,
    client: GeminiBatchClient,
    *,
    limit: int | None = None,
    books: Sequence[str] | None = None,
    provider: ContextProvider | None = None,
    now: datetime | None = None,
    active: Sequence[BatchRow] | None = None,
) -> SubmitReport:
    """Fill free batch slots with runnable records (across books), within the enqueued-token budget.

    Every batch's records are claimed (SUBMITTING, with their within-batch index) in one store
    transaction before the remote create; the attempt counts once the create succeeded.
    """
    settings, store = pipeline.settings, pipeline.store
    g, execution = settings.gemini, settings.execution
    now = now or datetime.now(UTC)
    report = SubmitReport()
    if provider is None:
        provider = provider_for(settings, store)
    require_upstream = waits_for_upstream(provider)

    active = ours(store.active_batches() if active is None else active)
    held = [b for b in active if b.state == BatchState.HELD]
    if not _retry_due_held(pipeline, client, held, report, now, _enqueued(active)):
        report.skipped = "the enqueued-token quota is full (429 on create)"
        return report
    if report.held:
        report.skipped = "waiting for held batches (429 on create) before creating new ones"
        return report
    if held:
        active = ours(store.active_batches())
    slots = execution.max_concurrent_batches - len(active)
    if slots <= 0:
        report.skipped = f"all {execution.max_concurrent_batches} batch slots are in use"
        return report
    room = token_room(active, g.max_enqueued_tokens, model=settings.model.name)
    if room <= 0 and active:
        report.skipped = "the enqueued-token budget is used up by active batches"
        return report
    want = execution.batch_size_limit * slots
    if limit is not None:
        want = min(want, limit)
    if want <= 0:
        return report
    records = store.runnable(want, books=books, require_upstream=require_upstream)
    if not records:
        report.skipped = "no runnable records"
        return report

    requests, problems = pipeline.build_requests(records, provider=provider)
    calibration = load_calibration(store, settings.model.name)
    lines, failures = client.encode(requests, calibration)
    failures += [
        PageFailure(key=record.key, error_class=ErrorClass.RETRYABLE, error_type="upstream_output_unreadable",
                    message=why, model=settings.model.name)
        for record, why in problems
    ]
    by_key = {r.key: r for r in requests}
    if failures:
        report.failed_before_submit = _settle_now(
            pipeline, failures, {r.key: r for r in records}, by_key, require_upstream=require_upstream)
    if not lines:
        return report
    if not active:
        room = max(room, lines[0].estimated_tokens)  # one oversized request must not wait forever
    shards = shard(lines, max_bytes=g.max_jsonl_bytes, max_records=execution.batch_size_limit,
                   max_tokens=room, max_shards=slots)
    if not shards:
        report.skipped = "the next request does not fit the enqueued-token budget"
    for lines_in_shard in shards:
        if not _create_batch(pipeline, client, lines_in_shard, by_key, calibration.ratio, report, now=now,
                             enqueued=_enqueued(active), require_upstream=require_upstream):
            break
    return report

