"""Assets: corpus_plan → page_ocr (per book) → book_courses (per book) → courses (corpus table)."""

import warnings
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from ocr_assets.core import resolve_engine
from ocr_assets.course_tables import (
    COURSE_PREVIEW_COLUMNS,
    BookCourses,
    CorpusCourses,
    build_book_courses,
    build_corpus_courses,
    course_columns,
    course_preview,
)
from ocr_assets.defs.partitions import add_missing_books, books
from ocr_assets.defs.resources import (
    GeminiResource,
    LocalInferenceResource,
    RecordStoreResource,
    SettingsResource,
    TrackerResource,
    make_pipeline,
)
from ocr_assets.plan import PlanResult, build_plan
from ocr_assets.reports import (
    PAGE_COLUMNS,
    BookNotPlanned,
    BookReport,
    book_reports,
    drive_books,
    failed_pages,
    fatal_message,
    nonzero,
    preview,
)
from ocr_assets.settings import Settings

ENGINE_TAG = "ocr_assets/engine"
# Every page_ocr step takes a slot of this pool (limit 1 in dagster_home/dagster.yaml and the demo's instance),
# however its run was launched (Materialize button, backfill, `dagster asset materialize`, a job, the demo):
# the local model is CPU/GPU-bound and must not run twice at once. Run tags cannot be set on every path.
INFERENCE_POOL = "ocr_inference"

_TYPES = {"page": "int", "upstream_page": "int", "attempts": "int", "tokens": "int", "cost_usd": "float",
          "courses": "int", "books": "int", "failed": "bool"}


def table(rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str]) -> dg.TableMetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(c, _TYPES.get(c, "string")) for c in columns])
    return dg.MetadataValue.table(records=[dg.TableRecord({c: row.get(c) for c in columns}) for row in rows],
                                  schema=schema)


def course_column_schema() -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in course_columns()])


def page_metadata(report: BookReport, settings: Settings) -> dict[str, Any]:
    """One book's page_ocr metadata: the page table first (page order, failures flagged), non-zero counts."""
    shown = preview(report.rows)
    counts = nonzero({status.lower(): n for status, n in report.counts.items()})
    metadata: dict[str, Any] = {
        "page_table": table(shown, PAGE_COLUMNS), "pages": report.pages, **counts,
        **nonzero({"tokens": report.tokens, "cost_usd": report.cost_usd}),
        "rows_shown": f"{len(shown)} of {report.pages}, in page order",
    }
    if failed := failed_pages(report.rows):
        metadata["failed_pages"] = failed
    if report.full_table:
        metadata["full_table"] = dg.MetadataValue.path(str(report.full_table))
    return {**metadata, "output_root": dg.MetadataValue.path(str(settings.paths.output_root)),
            "record_store": dg.MetadataValue.path(str(settings.paths.database))}


def book_courses_metadata(built: BookCourses) -> dict[str, Any]:
    return {
        "courses": len(built.rows), "pages_with_courses": built.pages_with_courses,
        "dagster/column_schema": course_column_schema(),
        "preview": table(course_preview(built.rows), COURSE_PREVIEW_COLUMNS),
        "parquet": dg.MetadataValue.path(str(built.parquet_path)),
        "jsonl": dg.MetadataValue.path(str(built.jsonl_path)),
    }


def courses_metadata(built: CorpusCourses) -> dict[str, Any]:
    return {
        "dagster/row_count": built.rows, "books": built.books, "dagster/column_schema": course_column_schema(),
        "preview": table(built.preview, COURSE_PREVIEW_COLUMNS),
        "by_department": table(built.by_department, ["department", "courses", "books"]),
        "duckdb": dg.MetadataValue.path(str(built.duckdb_path)), "table": "courses",
        "parquet": dg.MetadataValue.path(str(built.parquet_path)),
    }


def plan_metadata(result: PlanResult, partitions_added: list[str]) -> dict[str, Any]:
    report = [{"reason": e.reason, "path": e.path} for e in result.report[:50]]
    return {
        "pages_found": result.pages_found, "books_found": result.books_found,
        "books_added": len(result.books_added), "books_replanned": len(result.books_replanned),
        "books_unchanged": result.books_unchanged, "pages_added": result.pages_added,
        "partitions_added": len(partitions_added), "report_entries": len(result.report),
        "plan_report": table(report, ["reason", "path"]), "plan_run": result.plan_run,
    }


class PageOcrConfig(dg.Config):
    """Which engine kind drives the pages; the jobs set it, a plain materialization uses settings.engine."""

    engine: str = Field("", description="local | gemini-batch | gemini-realtime | gemini-flex; empty = settings.engine")


@dg.asset(kinds={"duckdb"}, group_name="ocr")
def corpus_plan(
    context: dg.AssetExecutionContext, settings: SettingsResource, store: RecordStoreResource
) -> dg.MaterializeResult:
    """The immutable corpus plan: allow-listed pages and their page-chain deps, in the record store."""
    config = settings.load()
    record_store = store.open()
    result = build_plan(record_store, config.paths.images_root, config.paths.allow_list_root, config.filters)
    added = add_missing_books(context.instance, record_store.books())
    return dg.MaterializeResult(metadata=plan_metadata(result, added))


def book_asset(**kwargs: Any):
    """`dg.asset` over the `books` partitions with a single-run backfill policy (cross-book waves in one run).

    `backfill_policy` is a beta parameter in Dagster 1.13: we use it on purpose, so its BetaWarning is
    silenced here, for these decorators only (user code keeps its warnings).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.asset(partitions_def=books, backfill_policy=dg.BackfillPolicy.single_run(), **kwargs)


@book_asset(deps=[corpus_plan], kinds={"python", "json"}, group_name="ocr", pool=INFERENCE_POOL)
def page_ocr(
    context: dg.AssetExecutionContext, config: PageOcrConfig, settings: SettingsResource,
    store: RecordStoreResource, gemini: GeminiResource, local_inference: LocalInferenceResource,
    tracker: TrackerResource,
) -> Iterator[dg.AssetMaterialization | dg.MaterializeResult]:
    """Each book's page outputs (one validated JSON per page), every page chain driven to a terminal state."""
    keys = list(context.partition_keys)  # a single-run backfill covers many books: one run, cross-book waves
    run_settings = gemini.configure(settings.load())
    spec = resolve_engine(run_settings, config.engine, source="page_ocr run config and local_inference resource",
                          **local_inference.overrides())  # the run's engine, decided once
    if context.run.tags.get(ENGINE_TAG) != spec.kind:  # runs from the UI or CLI carry no engine tag
        context.instance.add_run_tags(context.run.run_id, {ENGINE_TAG: spec.kind})
    pipeline = make_pipeline(run_settings, store, tracker)
    try:
        summary = drive_books(pipeline, keys, spec, sync_engine=local_inference.get(spec),
                              on_progress=lambda progress: context.log.info(progress.line()))
    except BookNotPlanned as exc:  # a typo'd partition must fail, not pass green with 0 pages
        raise dg.Failure(description=str(exc)) from None
    reports = book_reports(pipeline.store, keys, run_settings.paths.output_root)
    # Run-wide facts belong to the run (its log and engine tag), not copied onto every book.
    context.log.info(f"{spec.describe()}: {len(keys)} book(s), {summary.waves} wave(s), {summary.attempted} "
                     f"attempted, {summary.succeeded} succeeded, {summary.retryable} retried, {summary.fatal} fatal")
    for report in reports:  # per-book metadata; the page table comes first in the UI
        context.add_asset_metadata(page_metadata(report, run_settings), partition_key=report.book)
    if message := fatal_message(reports):
        for report in (r for r in reports if r.complete):  # report what succeeded before failing
            yield dg.AssetMaterialization(asset_key=context.asset_key, partition=report.book,
                                          metadata=page_metadata(report, run_settings))
        raise dg.Failure(description=message, metadata={"fatal_pages": sum(len(r.fatal_keys) for r in reports)})
    yield dg.MaterializeResult()


@book_asset(deps=[page_ocr], kinds={"parquet"}, group_name="ocr")
def book_courses(
    context: dg.AssetExecutionContext, settings: SettingsResource, store: RecordStoreResource
) -> dg.MaterializeResult:
    """Each book's courses flattened from its page outputs (Parquet + JSONL under output_root/_tables)."""
    output_root = settings.load().paths.output_root
    record_store = store.open()
    total = 0
    for book in context.partition_keys:
        built = build_book_courses(record_store, output_root, book)
        context.add_asset_metadata(book_courses_metadata(built), partition_key=book)
        total += len(built.rows)
    context.log.info(f"{total} courses in {len(context.partition_keys)} book(s)")
    return dg.MaterializeResult()


@dg.asset(deps=[book_courses], kinds={"duckdb", "parquet"}, group_name="ocr")
def courses(settings: SettingsResource) -> dg.MaterializeResult:
    """The corpus course table: every book's courses in output_root/courses.duckdb plus a Parquet export."""
    return dg.MaterializeResult(metadata=courses_metadata(build_corpus_courses(settings.load().paths.output_root)))
