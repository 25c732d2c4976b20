"""Batch orchestration: submit waves, poll every active batch, ingest finished ones, until terminal.

Record safety rules this module keeps:
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

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ocr_assets.core import PageFailure, PageOutcome, PageRequest
from ocr_assets.engines.gemini.batch import GeminiBatchClient, IntegrityReport, shard
from ocr_assets.engines.gemini.calls import CreateRefused, SubmitUncertain
from ocr_assets.engines.gemini.client import GeminiCallError, describe_error
from ocr_assets.engines.gemini.context import provider_for
from ocr_assets.engines.gemini.metering import load_calibration, token_room, update_calibration
from ocr_assets.outputs import atomic_write_bytes
from ocr_assets.page_requests import ContextProvider, placeholder_request, stored_identity
from ocr_assets.pipeline import Pipeline, one_store_session, owner_id
from ocr_assets.pipeline import owner_dead as _owner_dead
from ocr_assets.schema import ErrorClass
from ocr_assets.store import (
    BatchRow,
    BatchState,
    BatchTransition,
    ClaimItem,
    RecordRow,
    RecordStatus,
)

log = logging.getLogger(__name__)

ENGINE = "gemini-batch"
# Records that fail before they can be sent (unreadable image, unreadable upstream output) are
# settled at once in a local batch of this engine, so their attempt counts like any other.
PREP_ENGINE = "gemini-batch-prep"
# A SUBMITTING batch younger than this is assumed to be mid-create in another thread or process.
SUBMIT_GRACE_S = 120.0


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


class IngestReport(BaseModel):
    batch_id: str
    remote_state: str
    integrity: IntegrityReport | None = None
    succeeded: int = 0
    retryable: int = 0
    fatal: int = 0
    ignored: int = 0
    released: int = 0
    blocked: int = 0
    alert: str | None = None


class RecoveryReport(BaseModel):
    adopted: list[str] = Field(default_factory=list)
    released: list[str] = Field(default_factory=list)
    # "batch id: error" of SUBMITTING batches whose lookup failed (after the call's own retries).
    lookup_failed: list[str] = Field(default_factory=list)


class BatchRunStopped(GeminiCallError):
    """The API kept failing tick after tick (each call already retried with backoff): `run --batch`
    stops rather than loop. Records of a SUBMITTING batch stay claimed (never resent) and a later run
    recovers them; records whose upload failed were put back as they were."""


class RunProgress(BaseModel):
    """One tick of `run_batches`, for progress displays."""

    tick: int
    terminal: int
    total: int
    active_batches: int
    submitted_batches: int
    ingested_batches: int
    cost_usd: float
    alerts: list[str] = Field(default_factory=list)
    stuck: list[str] = Field(default_factory=list)
    elapsed_s: float = 0.0
    failures: int = 0  # failed record attempts so far (retryable + fatal)


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


def new_batch_id(prefix: str = "gb") -> str:
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def _detail(batch: BatchRow) -> dict[str, Any]:
    if not batch.detail:
        return {}
    try:
        value = json.loads(batch.detail)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _ours(batches: Sequence[BatchRow]) -> list[BatchRow]:
    return [b for b in batches if b.engine == ENGINE]


def _spool_path(client: GeminiBatchClient, batch_id: str) -> Path:
    return client.archive_dir / "inputs" / f"{batch_id}.jsonl"


# -- requests ------------------------------------------------------------------------------------


def _rebuild_for_ingest(
    pipeline: Pipeline, records: Sequence[RecordRow], provider: ContextProvider | None
) -> list[PageRequest]:
    """The requests a batch was sent with, rebuilt from the store (attempt already counted)."""
    if not records:
        return []
    requests, problems = pipeline.build_requests(records, provider=provider)
    by_key = {r.key: r for r in records}
    rebuilt = []
    for request in requests:
        record = by_key[request.key]
        if record.prompt_vars_hash and record.prompt_vars_hash != request.prompt_identity.vars_hash:
            log.warning("prompt of %s rebuilt with vars_hash %s, sent with %s", record.key,
                        request.prompt_identity.vars_hash, record.prompt_vars_hash)
        rebuilt.append(request.model_copy(update={"attempt": max(1, record.attempts)}))
    for record, why in problems:
        log.warning("cannot rebuild the prompt of %s at ingest: %s", record.key, why)
        rebuilt.append(placeholder_request(record, stored_identity(record), attempt=max(1, record.attempts)))
    return rebuilt


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


# -- submit --------------------------------------------------------------------------------------


def _enqueued(batches: Sequence[BatchRow]) -> int:
    """Estimated tokens our batches hold in the remote queue (a held batch holds none)."""
    return sum(b.estimated_tokens for b in batches if b.state != BatchState.HELD)


def _hold(pipeline: Pipeline, batch: BatchRow | str, error: str, *, input_file: str | None,
          spool: Path, now: datetime, enqueued: int) -> None:
    store = pipeline.store
    row = store.get_batch(batch) if isinstance(batch, str) else batch
    detail = _detail(row) if row else {}
    holds = int(detail.get("holds", 0)) + 1
    g = pipeline.settings.gemini
    wait = min(g.hold_backoff_s * (2 ** (holds - 1)), g.hold_backoff_max_s)
    detail.update({
        "holds": holds, "next_try": (now + timedelta(seconds=wait)).isoformat(), "spool": str(spool),
        "enqueued_at_hold": enqueued,
        "input_file": input_file or detail.get("input_file"),
        "input_uploaded_at": detail.get("input_uploaded_at") if not input_file else now.isoformat(),
    })
    store.set_batch_state(row.batch_id if row else str(batch), BatchState.HELD, error=error, detail=detail)
    log.warning("batch %s held (429 on create, hold #%d): retry in %.0f s", row.batch_id if row else batch,
                holds, wait)


def _finish_submit(pipeline: Pipeline, batch: BatchRow | str, remote: str, *, input_file: str | None,
                   extra: dict[str, Any]) -> None:
    """Record the remote name, count the attempt and store the batch detail, in one transaction."""
    store = pipeline.store
    if isinstance(batch, str):
        batch_id, detail = batch, {}
    else:
        batch_id, detail = batch.batch_id, _detail(batch)
    for stale in ("next_try", "spool", "enqueued_at_hold"):
        detail.pop(stale, None)
    detail.update(extra)
    detail["input_file"] = input_file
    store.mark_submitted(batch_id, remote, count_attempt=True, detail=detail)


def _fail_create(pipeline: Pipeline, batch_id: str, error: str) -> list[str]:
    """The create was refused for good (4xx): the attempt counts, the records go back to retry."""
    store = pipeline.store
    store.mark_submitted(batch_id, "", count_attempt=True)
    return store.release_batch(batch_id, error=error, error_type="batch_create_failed", count_failure=True,
                               state=BatchState.FAILED)


def _retry_held(pipeline: Pipeline, client: GeminiBatchClient, batch: BatchRow, report: SubmitReport,
                now: datetime, enqueued: int) -> bool:
    """Try a held batch again; True when it went through (or was settled), False when still held."""
    detail = _detail(batch)
    spool = Path(detail.get("spool") or _spool_path(client, batch.batch_id))
    input_file = detail.get("input_file")
    uploaded_at = detail.get("input_uploaded_at")
    # Uploaded files live 48 h; re-upload the spooled JSONL when the first upload is getting old.
    fresh = bool(uploaded_at) and now - datetime.fromisoformat(uploaded_at) < timedelta(hours=40)
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
    extra = {"input_uploaded_at": now.isoformat()} if uploaded else {}
    _finish_submit(pipeline, batch, remote, input_file=input_file, extra=extra)
    spool.unlink(missing_ok=True)
    report.resubmitted.append(batch.batch_id)
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
    require_upstream = provider is None

    active = _ours(store.active_batches() if active is None else active)
    held = [b for b in active if b.state == BatchState.HELD]
    enqueued = _enqueued(active)
    for batch in held:
        detail = _detail(batch)
        next_try = detail.get("next_try")
        # Batches of ours that finished since the refusal freed their tokens: try now rather than sit
        # out the backoff while the queue drains (the backoff is for a quota others keep full).
        freed = enqueued < int(detail.get("enqueued_at_hold", -1))
        if next_try and datetime.fromisoformat(next_try) > now and not freed:
            report.held.append(batch.batch_id)
            continue
        if not _retry_held(pipeline, client, batch, report, now, enqueued):
            report.skipped = "the enqueued-token quota is full (429 on create)"
            return report
        enqueued += batch.estimated_tokens
    if report.held:
        report.skipped = "waiting for held batches (429 on create) before creating new ones"
        return report
    if held:
        active = _ours(store.active_batches())
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
            continue
        kept = [line for line in lines_in_shard if line.key in claimed]
        data = b"".join(line.data for line in kept)
        spool = _spool_path(client, batch_id)
        atomic_write_bytes(spool, data)
        extra = {"records": len(kept), "jsonl_bytes": len(data), "raw_tokens": sum(x.raw_tokens for x in kept),
                 "calibration": calibration.ratio, "inline_images": g.inline_images}
        input_file = None
        try:
            input_file = client.upload_jsonl(data, batch_id)
            remote = client.create(input_file, batch_id)
        except CreateRefused as exc:
            store.set_batch_state(batch_id, BatchState.SUBMITTING, detail=extra)
            _hold(pipeline, batch_id, str(exc), input_file=input_file, spool=spool, now=now,
                  enqueued=_enqueued(active) + report.estimated_tokens)
            report.held.append(batch_id)
            report.skipped = "the enqueued-token quota is full (429 on create)"
            break
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
                                      detail={**extra, "input_file": input_file})
                report.uncertain.append(batch_id)
            log.warning("batch %s not submitted: %s", batch_id, exc)
            report.errors.append(f"batch {batch_id}: {exc}")
            break
        _finish_submit(pipeline, batch_id, remote, input_file=input_file,
                       extra={**extra, "input_uploaded_at": now.isoformat()})
        spool.unlink(missing_ok=True)
        report.batches.append(batch_id)
        report.records += len(kept)
        report.estimated_tokens += estimated
    return report


# -- recovery and polling ------------------------------------------------------------------------


def recover_submitting(pipeline: Pipeline, client: GeminiBatchClient, *, now: datetime | None = None,
                       grace_s: float = SUBMIT_GRACE_S, active: Sequence[BatchRow] | None = None) -> RecoveryReport:
    """SUBMITTING batches left by a crash (owner dead, or older than the grace period): adopt the
    remote job if one carries our batch id as display name, else release without counting."""
    report = RecoveryReport()
    naive_now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    batches = pipeline.store.batches(states=[BatchState.SUBMITTING]) if active is None else active
    for batch in _ours([b for b in batches if b.state == BatchState.SUBMITTING]):
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
            _finish_submit(pipeline, batch, found.name, input_file=_detail(batch).get("input_file"),
                           extra={"adopted": True})
            if found.state != BatchState.PENDING:
                pipeline.store.set_batch_state(batch.batch_id, found.state)
            report.adopted.append(batch.batch_id)
        else:
            pipeline.store.release_batch(batch.batch_id, error="remote create never happened (recovered)",
                                         error_type="batch_never_created", count_failure=False,
                                         state=BatchState.FAILED)
            report.released.append(batch.batch_id)
        _spool_path(client, batch.batch_id).unlink(missing_ok=True)
    return report


def pending_ingest(pipeline: Pipeline) -> list[BatchRow]:
    """Remote-terminal batches not yet settled: SUCCEEDED/EXPIRED, or FAILED/CANCELLED with records
    still RUNNING in them (a crash between poll and release)."""
    return pipeline.store.unsettled_batches(ENGINE)


def poll_active(pipeline: Pipeline, client: GeminiBatchClient, *, now: datetime | None = None,
                active: Sequence[BatchRow] | None = None) -> list[BatchRow]:
    """One cheap GET per active batch (never waiting on one); returns the batches ready to ingest."""
    return _poll(pipeline, client, now=now, active=active)[0]


def _poll(pipeline: Pipeline, client: GeminiBatchClient, *, now: datetime | None = None,
          active: Sequence[BatchRow] | None = None) -> tuple[list[BatchRow], list[BatchRow], list[str]]:
    """(batches ready to ingest, batches still active, failed SUBMITTING lookups) after one poll."""
    active = _ours(pipeline.store.active_batches() if active is None else active)
    recovered = RecoveryReport()
    if any(b.state == BatchState.SUBMITTING for b in active):
        recovered = recover_submitting(pipeline, client, now=now, active=active)
        if recovered.adopted or recovered.released:
            active = _ours(pipeline.store.active_batches())
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
    # One transaction for the whole poll (a store round-trip per batch made a 100-batch tick take seconds).
    moved_on = {c.batch_id for c in changes} - set(pipeline.store.set_batch_states(changes))
    still = [b for b in still if b.batch_id not in moved_on]  # changed elsewhere meanwhile: state unknown here
    return pending_ingest(pipeline), still, recovered.lookup_failed


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
    return [b for b in _ours(pipeline.store.active_batches() if active is None else active)
            if (naive_now - b.created_at).total_seconds() > hours * 3600]


# -- ingest --------------------------------------------------------------------------------------


class BatchNotFinished(RuntimeError):
    """The batch is still pending or running remotely."""


@one_store_session
def ingest_batch(
    pipeline: Pipeline,
    client: GeminiBatchClient,
    batch_id: str | BatchRow,
    *,
    from_archive: bool = False,
    provider: ContextProvider | None = None,
) -> IngestReport:
    """Fetch (or replay from the archive), parse by key, and apply a finished batch; idempotent."""
    store, settings = pipeline.store, pipeline.settings
    batch = store.get_batch(batch_id) if isinstance(batch_id, str) else batch_id
    if batch is None:
        raise KeyError(f"no batch {batch_id!r} in the record store")
    batch_id = batch.batch_id
    if batch.engine != ENGINE:
        raise ValueError(f"batch {batch_id} ran on {batch.engine}, not {ENGINE}")
    if provider is None:
        provider = provider_for(settings, store)
    detail = _detail(batch)
    state = batch.state
    status = None
    if state in (BatchState.SUBMITTING, BatchState.HELD):
        raise BatchNotFinished(f"batch {batch_id} was never created remotely ({state})")
    if state in (BatchState.PENDING, BatchState.RUNNING):
        if from_archive:
            raise BatchNotFinished(f"batch {batch_id} is {state}: there is no result to replay")
        status = client.poll(batch.remote_name)
        if status.state in (BatchState.PENDING, BatchState.RUNNING):
            store.set_batch_state(batch_id, status.state)
            raise BatchNotFinished(f"batch {batch_id} is still {status.state} ({status.raw_state})")
        store.set_batch_state(batch_id, status.state)
        state = status.state
    remote_state = str(detail.get("remote_state") or state) if state == BatchState.INGESTED else str(state)
    if state == BatchState.INGESTED and remote_state == str(BatchState.INGESTED):
        remote_state = str(BatchState.SUCCEEDED)

    members = {key: index for key, index, _ in store.batch_members(batch_id)}
    use_archive = from_archive or (state == BatchState.INGESTED and client.archive_path(batch_id).exists())
    outcomes: list[PageOutcome]
    if remote_state == str(BatchState.FAILED) and not use_archive:
        outcomes, integrity = [], IntegrityReport(batch_id=batch_id, submitted=len(members),
                                                  remote_name=batch.remote_name, remote_state="JOB_STATE_FAILED")
        integrity.missing_count = len(members)
    else:
        outcomes, integrity = client.fetch(batch_id, batch.remote_name, members, from_archive=use_archive,
                                           status=status)

    running = store.records(batch_id=batch_id, status=RecordStatus.RUNNING)
    requests = _rebuild_for_ingest(pipeline, running, provider)
    report = IngestReport(batch_id=batch_id, remote_state=remote_state, integrity=integrity)
    if remote_state in (str(BatchState.SUCCEEDED), str(BatchState.INGESTED)):
        applied = pipeline.ingest(batch_id, requests, outcomes, engine=ENGINE, pricing_mode="batch")
    else:
        answered = {o.key for o in outcomes}
        applied = pipeline.ingest(batch_id, [r for r in requests if r.key in answered], outcomes,
                                  engine=ENGINE, pricing_mode="batch")
        released = store.release_batch(
            batch_id, error=f"batch {remote_state.lower()} remotely", error_type=f"batch_{remote_state.lower()}",
            count_failure=True, state=BatchState(remote_state),
        )
        report.released = len(released)
    report.succeeded, report.retryable = len(applied.succeeded), len(applied.retryable)
    report.fatal, report.ignored, report.blocked = len(applied.fatal), len(applied.ignored), applied.blocked

    if remote_state in (str(BatchState.SUCCEEDED), str(BatchState.INGESTED)) and members and (
        integrity.result_fraction < settings.gemini.min_result_fraction
    ):
        report.alert = (
            f"batch {batch_id}: only {integrity.parsed}/{integrity.submitted} records have a result line "
            f"({integrity.result_fraction:.0%} < {settings.gemini.min_result_fraction:.0%}); "
            f"{integrity.missing_count} missing, {integrity.unknown_count} unknown keys"
        )
        integrity.alert = report.alert
        log.warning("%s", report.alert)

    _calibrate(pipeline, batch, detail, outcomes, applied.applied)
    new_detail = {**detail, "integrity": integrity.model_dump(mode="json"), "remote_state": remote_state,
                  "ingest": report.model_dump(mode="json", exclude={"integrity"})}
    final = BatchState.INGESTED if remote_state in (str(BatchState.SUCCEEDED), str(BatchState.EXPIRED),
                                                    str(BatchState.INGESTED)) else BatchState(remote_state)
    store.set_batch_state(batch_id, final, detail=new_detail)
    if not from_archive and detail.get("input_file") and state != BatchState.INGESTED:
        client.delete_file(detail["input_file"])
    return report


def _calibrate(pipeline: Pipeline, batch: BatchRow, detail: dict, outcomes: Sequence[PageOutcome],
               applied: Sequence[str]) -> None:
    applied_set = set(applied)
    used = [o for o in outcomes if o.key in applied_set and o.usage.prompt_tokens > 0]
    raw_total = int(detail.get("raw_tokens") or 0)
    count = int(detail.get("records") or batch.record_count or 0)
    if not used or raw_total <= 0 or count <= 0:
        return
    try:
        update_calibration(
            pipeline.store, batch.model or pipeline.settings.model.name,
            raw_estimate_total=round(raw_total * len(used) / count),
            actual_prompt_tokens=sum(o.usage.prompt_tokens for o in used), records=len(used),
        )
    except Exception:  # calibration is advisory
        log.warning("token calibration update failed", exc_info=True)


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
        _spool_path(client, batch.batch_id).unlink(missing_ok=True)
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
        "detail": _detail(batch),
    }


# -- the loop ------------------------------------------------------------------------------------


def _progress(pipeline: Pipeline, books: Sequence[str] | None) -> tuple[int, int, float]:
    progress = pipeline.store.progress(books)
    return progress.terminal, progress.total, progress.cost_usd


def run_batches(
    pipeline: Pipeline,
    client: GeminiBatchClient,
    *,
    books: Sequence[str] | None = None,
    poll_interval: float | None = None,
    limit: int | None = None,
    provider: ContextProvider | None = None,
    on_tick: Callable[[RunProgress], None] | None = None,
    max_idle_ticks: int = 20,
    timeout_s: float | None = None,
) -> BatchRunSummary:
    """Submit / poll / ingest until every selected record is terminal, keeping up to
    `max_concurrent_batches` in flight and building cross-book waves as pages unlock."""
    settings = pipeline.settings
    interval = settings.execution.poll_interval_seconds if poll_interval is None else poll_interval
    if provider is None:
        provider = provider_for(settings, pipeline.store)
    summary = BatchRunSummary()
    pipeline.recover_orphans()
    store = pipeline.store
    start = time.monotonic()
    idle = 0
    submitted_records = 0
    # Consecutive ticks whose SUBMITTING lookup, or whose every submit, failed.
    failed_lookups = failed_submits = 0
    while True:
        with store.session():  # one tick is one unit of work: one hold of the store, released to sleep
            summary.ticks += 1
            finished, active, unresolved = _poll(pipeline, client, active=store.active_batches())
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
            terminal, total, cost_so_far = _progress(pipeline, books)
            summary.unfinished = total - terminal
            if on_tick is not None:
                on_tick(RunProgress(
                    tick=summary.ticks, terminal=terminal, total=total, active_batches=in_flight,
                    submitted_batches=len(summary.submitted), ingested_batches=len(summary.ingested),
                    cost_usd=cost_so_far, alerts=list(summary.alerts),
                    stuck=[b.batch_id for b in stuck_batches(pipeline, active=active)],
                    elapsed_s=time.monotonic() - start, failures=summary.retryable + summary.fatal,
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
