"""Sensors (all STOPPED by default): book discovery, batch submission, batch polling → ingest runs."""

import dagster as dg

from ocr_assets.defs.jobs import BATCH_TAG, BOOKS_TAG, ingest_batch_job, plan_corpus_job, submit_batches_job
from ocr_assets.defs.partitions import books
from ocr_assets.defs.resources import GeminiResource, RecordStoreResource, SettingsResource, TrackerResource, make_pipeline
from ocr_assets.reports import (
    batch_engine_blocker,
    discover_books,
    poll_tick,
    submit_blocker,
)

def _sensor(**kwargs):
    """`dg.sensor` whose UI description is the function's docstring (as for assets); STOPPED by default."""
    return lambda fn: dg.sensor(description=fn.__doc__, default_status=dg.DefaultSensorStatus.STOPPED, **kwargs)(fn)


IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED]


@_sensor(job=plan_corpus_job, minimum_interval_seconds=300)
def book_discovery_sensor(
    context: dg.SensorEvaluationContext, settings: SettingsResource, store: RecordStoreResource
) -> dg.SensorResult | dg.SkipReason:
    """Launch a plan run when book folders appear that the plan lacks, and add a `books` partition for every
    planned book the instance lacks (never removes one). The tick lists folders only; the run reads files."""
    config = settings.load()
    known = context.instance.get_dynamic_partitions(books.name)
    found = discover_books(store.open(), config.paths.allow_list_root, config.filters, known)
    if not found.unplanned and not found.unregistered:
        return dg.SkipReason(f"no new books ({found.folders} book folders, {len(known)} partitions)")
    requests = []
    if found.unplanned:  # planning reads every allow-list file: a run's work, not a tick's
        context.log.info(f"{len(found.unplanned)} book folder(s) not in the plan: {', '.join(found.unplanned[:20])}")
        requests.append(dg.RunRequest(run_key=found.plan_run_key,
                                      tags={BOOKS_TAG: ",".join(found.unplanned)[:2000]}))
    additions = [books.build_add_request(found.unregistered)] if found.unregistered else []
    if found.unregistered:
        context.log.info(f"adding {len(found.unregistered)} book partition(s): {', '.join(found.unregistered[:20])}")
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=additions)


@_sensor(job=submit_batches_job, minimum_interval_seconds=30)
def batch_submit_sensor(
    context: dg.SensorEvaluationContext, settings: SettingsResource, store: RecordStoreResource
) -> dg.RunRequest | dg.SkipReason:
    """Launch a submit run when the engine is gemini-batch and runnable records and free batch slots exist."""
    config = settings.load()
    blocker = batch_engine_blocker(config.engine) or submit_blocker(store.open(), config.execution.max_concurrent_batches)
    if blocker:
        return dg.SkipReason(blocker)
    waiting = context.instance.get_runs(
        dg.RunsFilter(job_name=submit_batches_job.name, statuses=IN_PROGRESS), limit=1
    )
    if waiting:  # one submit run at a time; the store's claim would make a second one harmless anyway
        return dg.SkipReason(f"submit run {waiting[0].run_id} is still queued or running")
    return dg.RunRequest(tags={"ocr_assets/trigger": "batch_submit_sensor"})


@_sensor(job=ingest_batch_job, minimum_interval_seconds=30)
def batch_poll_sensor(
    context: dg.SensorEvaluationContext, settings: SettingsResource, store: RecordStoreResource,
    gemini: GeminiResource, tracker: TrackerResource,
) -> dg.SensorResult | dg.SkipReason:
    """Poll every active batch (one cheap get each) and launch one ingest run per finished batch;
    batches pending or running past `gemini.stuck_batch_hours` are reported in the tick's log."""
    config = settings.load()
    if blocker := batch_engine_blocker(config.engine):
        return dg.SkipReason(blocker)
    pipeline = make_pipeline(gemini.configure(config), store, tracker)
    finished, touched, stuck = poll_tick(pipeline, lambda: gemini.batch_client(pipeline))
    for line in stuck:
        context.log.warning(line)
    requests = []
    for batch in finished:  # launch only: each ingest runs in its own run, never inline in the tick
        name = batch.remote_name or batch.batch_id
        requests.append(dg.RunRequest(
            run_key=f"ingest:{name}",  # dedupes forever: a finished batch is ingested by one run only
            run_config={"ops": {"ingest_batch": {"config": {"batch_id": batch.batch_id}}}},
            tags={BATCH_TAG: batch.batch_id, "ocr_assets/batch_name": name,
                  BOOKS_TAG: ",".join(touched[batch.batch_id])[:2000]},
        ))
    if not requests:
        return dg.SkipReason("no finished batch to ingest" + (f"; {len(stuck)} stuck: {stuck[0]}" if stuck else ""))
    return dg.SensorResult(run_requests=requests)
