"""Jobs: one per engine mode over page_ocr + book_courses, plus the batch submit and ingest jobs."""

from collections.abc import Sequence

import dagster as dg

from ocr_assets.defs.assets import (
    ENGINE_TAG,
    book_courses,
    book_courses_metadata,
    courses,
    courses_metadata,
    page_metadata,
    page_ocr,
    table,
)
from ocr_assets.defs.checks import check_evaluations
from ocr_assets.defs.partitions import add_missing_books
from ocr_assets.defs.resources import GeminiResource, RecordStoreResource, SettingsResource, TrackerResource, make_pipeline
from ocr_assets.operations import batch_records_table
from ocr_assets.course_tables import build_book_courses, build_corpus_courses
from ocr_assets.reports import batch_integrity, book_reports, ingest_finished_batch, submit_batches
from ocr_assets.settings import Settings
from ocr_assets.store import RecordStore

BATCH_TAG = "ocr_assets/batch_id"
BOOKS_TAG = "ocr_assets/books"
BATCH_RECORD_COLUMNS = ("key", "status", "error", "attempt")
INTEGRITY_COUNTS = ("submitted", "parsed", "missing_count", "duplicate_count", "unknown_count", "malformed_lines")


def _ocr_job(name: str, engine: str, description: str, **kwargs):
    return dg.define_asset_job(
        name, selection=dg.AssetSelection.assets(page_ocr, book_courses),
        config={"ops": {"page_ocr": {"config": {"engine": engine}}}}, tags={ENGINE_TAG: engine},
        description=description, **kwargs,
    )


plan_corpus_job = dg.define_asset_job(
    "plan_corpus_job", selection=dg.AssetSelection.assets("corpus_plan"),
    description="Plan the corpus: add new books and pages to the record store and the books partitions "
                "(launched by book_discovery_sensor when it sees new book folders).")

# In-process: the local model loads once per run instead of once per step process.
ocr_local_job = _ocr_job("ocr_local_job", "local", "OCR the selected books with the local model.",
                         executor_def=dg.in_process_executor)
ocr_gemini_batch_job = _ocr_job("ocr_gemini_batch_job", "gemini-batch",
                                "OCR the selected books through the Gemini Batch API (50% price).")
ocr_gemini_realtime_job = _ocr_job("ocr_gemini_realtime_job", "gemini-realtime",
                                   "OCR the selected books with real-time Gemini calls.")


def report_books(context: dg.OpExecutionContext, store: RecordStore, settings: Settings, keys: Sequence[str]) -> None:
    """Report what an asset run would have for books changed outside one: page_ocr + book_courses
    materializations, the asset checks' verdicts on those books, and a fresh `courses` corpus table."""
    if not keys:
        return
    add_missing_books(context.instance, list(keys))  # a partition never added is accepted silently
    for report in book_reports(store, list(keys), settings.paths.output_root):
        context.log_event(dg.AssetMaterialization(asset_key=page_ocr.key, partition=report.book,
                                                  metadata=page_metadata(report, settings)))
        built = build_book_courses(store, settings.paths.output_root, report.book)
        context.log_event(dg.AssetMaterialization(asset_key=book_courses.key, partition=report.book,
                                                  metadata=book_courses_metadata(built)))
    for evaluation in check_evaluations(store, settings, list(keys)):
        context.log_event(evaluation)
    corpus = build_corpus_courses(settings.paths.output_root)  # keeps `courses` current in the sensor flow
    context.log_event(dg.AssetMaterialization(asset_key=courses.key, metadata=courses_metadata(corpus)))


@dg.op(name="submit_batches")
def submit_batches_op(
    context: dg.OpExecutionContext, settings: SettingsResource, store: RecordStoreResource,
    gemini: GeminiResource, tracker: TrackerResource,
) -> dg.Output[list[str]]:
    """Claim runnable records across all books into Gemini batches, up to the free batch slots."""
    pipeline = make_pipeline(gemini.configure(settings.load()), store, tracker)
    report = submit_batches(pipeline, gemini.batch_client(pipeline))  # claims are transactional: no record twice
    context.log.info(f"submitted {len(report.batches)} batch(es) of {report.records} records"
                     + (f"; {report.skipped}" if report.skipped else ""))
    return dg.Output(report.batches, metadata={
        "batches": len(report.batches), "records": report.records, "estimated_tokens": report.estimated_tokens,
        "held": len(report.held), "batch_ids": ", ".join(report.batches), "skipped": report.skipped or "",
    })


class IngestConfig(dg.Config):
    """The batch to ingest (its local batch id or remote name)."""

    batch_id: str


@dg.op(name="ingest_batch")
def ingest_batch_op(
    context: dg.OpExecutionContext, config: IngestConfig, settings: SettingsResource,
    store: RecordStoreResource, gemini: GeminiResource, tracker: TrackerResource,
) -> dg.Output[list[str]]:
    """Download, archive and ingest one finished batch; report materializations for every book it touched."""
    run_settings = gemini.configure(settings.load())
    pipeline = make_pipeline(run_settings, store, tracker)
    touched = ingest_finished_batch(pipeline, config.batch_id, lambda: gemini.batch_client(pipeline))  # idempotent
    report_books(context, pipeline.store, run_settings, touched)
    return dg.Output(touched, metadata={"batch_id": config.batch_id, "books": len(touched),
                                        "book_keys": ", ".join(touched),
                                        **batch_metadata(context, pipeline.store, config.batch_id)})


def batch_metadata(context: dg.OpExecutionContext, store: RecordStore, batch_id: str) -> dict[str, object]:
    """The batch's per-record table and integrity counts; a low result fraction is logged as a warning."""
    rows = batch_records_table(store, batch_id)
    metadata: dict[str, object] = {"records": table(rows[:500], BATCH_RECORD_COLUMNS),
                                   "rows_shown": f"{min(len(rows), 500)} of {len(rows)}"}
    integrity = batch_integrity(store, batch_id)
    if integrity is None:  # not ingested (yet), or a synchronous run's batch
        return metadata
    metadata.update({f"integrity_{name}": getattr(integrity, name) for name in INTEGRITY_COUNTS})
    if integrity.alert:
        context.log.warning(f"ALERT {integrity.alert}")
        metadata["ALERT"] = integrity.alert
    return metadata


@dg.job(tags={ENGINE_TAG: "gemini-batch"})
def submit_batches_job() -> None:
    """Fill free Gemini batch slots with runnable records (launched by batch_submit_sensor)."""
    submit_batches_op()


@dg.job(tags={ENGINE_TAG: "gemini-batch"})
def ingest_batch_job() -> None:
    """Ingest one finished Gemini batch (launched by batch_poll_sensor, one run per batch)."""
    ingest_batch_op()
