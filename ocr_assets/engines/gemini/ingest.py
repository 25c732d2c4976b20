"""Ingest: fetch (or replay) a finished batch's results, apply them by key, settle the rest."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import BaseModel

from ocr_assets.core import PageOutcome, PageRequest
from ocr_assets.engines.gemini.batch import GeminiBatchClient, IntegrityReport
from ocr_assets.engines.gemini.context import provider_for
from ocr_assets.engines.gemini.lifecycle import ENGINE, BatchDetail
from ocr_assets.engines.gemini.metering import update_calibration
from ocr_assets.page_requests import ContextProvider, placeholder_request, stored_identity
from ocr_assets.pipeline import Pipeline, one_store_session
from ocr_assets.store import BatchRow, BatchState, RecordRow, RecordStatus

log = logging.getLogger(__name__)


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



class BatchNotFinished(RuntimeError):
    """The batch is still pending or running remotely."""



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
    detail = BatchDetail.of(batch)
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
    remote_state = str(detail.remote_state or state) if state == BatchState.INGESTED else str(state)
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
    new_detail = detail.model_copy(update={
        "integrity": integrity, "remote_state": remote_state,
        "ingest": report.model_dump(mode="json", exclude={"integrity"})})
    final = BatchState.INGESTED if remote_state in (str(BatchState.SUCCEEDED), str(BatchState.EXPIRED),
                                                    str(BatchState.INGESTED)) else BatchState(remote_state)
    store.set_batch_state(batch_id, final, detail=new_detail.to_store())
    if not from_archive and detail.input_file and state != BatchState.INGESTED:
        client.delete_file(detail.input_file)
    return report


def _calibrate(pipeline: Pipeline, batch: BatchRow, detail: BatchDetail, outcomes: Sequence[PageOutcome],
               applied: Sequence[str]) -> None:
    applied_set = set(applied)
    used = [o for o in outcomes if o.key in applied_set and o.usage.prompt_tokens > 0]
    raw_total = detail.raw_tokens or 0
    count = detail.records or batch.record_count or 0
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

