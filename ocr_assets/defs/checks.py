"""Asset checks: valid outputs, no silently missing page, courses on content pages, cost within budget.

Checks run after their asset in the same run and look at that run's books; run on their own (from the
UI) they look at the whole corpus.
"""

import dagster as dg

from ocr_assets.defs.assets import book_courses, page_ocr, table
from ocr_assets.defs.resources import RecordStoreResource, SettingsResource
from ocr_assets.reports import (
    CheckVerdict,
    check_cost_budget,
    check_courses_on_content_pages,
    check_no_silent_loss,
    check_outputs_match_schema,
)
from ocr_assets.store import RecordRow, RecordStore


def _books_in_scope(context: dg.AssetCheckExecutionContext) -> list[str] | None:
    run = context.op_execution_context
    if run.has_partition_key or run.has_partition_key_range:
        return list(run.partition_keys)
    return None


def _records(store: RecordStore, books: list[str] | None) -> list[RecordRow]:
    if books is None:
        return store.records()
    return [record for book in books for record in store.records(book=book)]


def _result(verdict: CheckVerdict, books: list[str] | None, *,
            severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    metadata: dict = {**verdict.counts, "summary": verdict.summary,
                      "scope": "whole corpus" if books is None else f"{len(books)} book(s) of this run"}
    if verdict.problems:
        metadata["problems"] = table(verdict.problems, list(verdict.problems[0]))
    return dg.AssetCheckResult(passed=verdict.passed, severity=severity, metadata=metadata,
                               description=verdict.summary)


@dg.asset_check(asset=page_ocr)
def outputs_match_schema(context: dg.AssetCheckExecutionContext, store: RecordStoreResource) -> dg.AssetCheckResult:
    """Every SUCCESS page's output exists, is unchanged since written, and validates as OcrPageResult."""
    books = _books_in_scope(context)
    return _result(check_outputs_match_schema(_records(store.open(), books)), books)


@dg.asset_check(asset=page_ocr)
def no_page_silently_missing(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource, store: RecordStoreResource
) -> dg.AssetCheckResult:
    """Every allow-listed page is SUCCESS, FATAL with a reason, or BLOCKED with its cause."""
    books = _books_in_scope(context)
    verdict = check_no_silent_loss(_records(store.open(), books),
                                   max_attempts=settings.load().execution.max_attempts)
    return _result(verdict, books)


@dg.asset_check(asset=book_courses)
def courses_on_content_pages(context: dg.AssetCheckExecutionContext, store: RecordStoreResource) -> dg.AssetCheckResult:
    """Every successful course-listing page yielded at least one course."""
    books = _books_in_scope(context)
    verdict = check_courses_on_content_pages(_records(store.open(), books))
    return _result(verdict, books, severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=page_ocr)
def cost_within_budget(settings: SettingsResource, store: RecordStoreResource) -> dg.AssetCheckResult:
    """Total billed cost of the corpus is within settings.execution.cost_budget_usd."""
    verdict = check_cost_budget(store.open(), settings.load().execution.cost_budget_usd)
    return _result(verdict, None)
