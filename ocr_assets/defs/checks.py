"""Asset checks: valid outputs, no silently missing page, courses on content pages, cost within budget.

Checks run after their asset in the same run and look at that run's books; run on their own (from the
UI) they look at the whole corpus. The sensors' ingest runs report materializations instead of running
the assets, so they log the same verdicts for the books they touched (`check_evaluations`).
"""

from collections.abc import Callable
from dataclasses import dataclass

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
from ocr_assets.settings import Settings
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


Verdict = Callable[[RecordStore, Settings, "list[str] | None"], CheckVerdict]


@dataclass(frozen=True)
class Check:
    """One asset check: its asset, the domain verdict over some books (None = the corpus), its severity."""

    asset_key: dg.AssetKey
    verdict: Verdict
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
    corpus_wide: bool = False


CHECKS: dict[str, Check] = {
    "outputs_match_schema": Check(page_ocr.key, lambda store, _, books: check_outputs_match_schema(
        _records(store, books))),
    "no_page_silently_missing": Check(page_ocr.key, lambda store, settings, books: check_no_silent_loss(
        _records(store, books), max_attempts=settings.execution.max_attempts)),
    "courses_on_content_pages": Check(book_courses.key, lambda store, _, books: check_courses_on_content_pages(
        _records(store, books)), severity=dg.AssetCheckSeverity.WARN),
    "cost_within_budget": Check(page_ocr.key, lambda store, settings, _: check_cost_budget(
        store, settings.execution.cost_budget_usd), corpus_wide=True),
}


def _metadata(verdict: CheckVerdict, books: list[str] | None) -> dict:
    metadata: dict = {**verdict.counts, "summary": verdict.summary,
                      "scope": "whole corpus" if books is None else f"{len(books)} book(s) of this run"}
    if verdict.problems:
        metadata["problems"] = table(verdict.problems, list(verdict.problems[0]))
    return metadata


def _run(name: str, store: RecordStore, settings: Settings, books: list[str] | None) -> dg.AssetCheckResult:
    check = CHECKS[name]
    books = None if check.corpus_wide else books
    verdict = check.verdict(store, settings, books)
    return dg.AssetCheckResult(passed=verdict.passed, severity=check.severity, metadata=_metadata(verdict, books),
                               description=verdict.summary)


def check_evaluations(store: RecordStore, settings: Settings, books: list[str]) -> list[dg.AssetCheckEvaluation]:
    """Every check's verdict on `books`, as events an op logs beside the materializations it reports.

    Dagster runs asset checks after an asset's own step only: a run that reports materializations (the
    sensors' ingest runs) must evaluate them itself, or the UI shows the books' checks as never run.
    """
    evaluations = []
    for name, check in CHECKS.items():
        scope = None if check.corpus_wide else books
        verdict = check.verdict(store, settings, scope)
        evaluations.append(dg.AssetCheckEvaluation(
            asset_key=check.asset_key, check_name=name, passed=verdict.passed, severity=check.severity,
            metadata=_metadata(verdict, scope), description=verdict.summary))
    return evaluations


@dg.asset_check(asset=page_ocr)
def outputs_match_schema(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource, store: RecordStoreResource
) -> dg.AssetCheckResult:
    """Every SUCCESS page's output exists, is unchanged since written, and validates as OcrPageResult."""
    return _run("outputs_match_schema", store.open(), settings.load(), _books_in_scope(context))


@dg.asset_check(asset=page_ocr)
def no_page_silently_missing(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource, store: RecordStoreResource
) -> dg.AssetCheckResult:
    """Every allow-listed page is SUCCESS, FATAL with a reason, or BLOCKED with its cause."""
    return _run("no_page_silently_missing", store.open(), settings.load(), _books_in_scope(context))


@dg.asset_check(asset=book_courses)
def courses_on_content_pages(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource, store: RecordStoreResource
) -> dg.AssetCheckResult:
    """Every successful course-listing page yielded at least one course."""
    return _run("courses_on_content_pages", store.open(), settings.load(), _books_in_scope(context))


@dg.asset_check(asset=page_ocr)
def cost_within_budget(settings: SettingsResource, store: RecordStoreResource) -> dg.AssetCheckResult:
    """Total billed cost of the corpus is within settings.execution.cost_budget_usd."""
    return _run("cost_within_budget", store.open(), settings.load(), None)
