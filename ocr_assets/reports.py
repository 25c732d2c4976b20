"""Plain domain functions behind the Dagster layer: running books, per-page tables, check verdicts.

Nothing here imports dagster. The assets, checks and sensors in `ocr_assets/defs/` read their
resources, call these and turn the results into metadata; every branch worth a test lives here.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel, ValidationError

from ocr_assets.core import EngineSpec, SyncEngine
from ocr_assets.course_tables import PREVIEW_ROWS, TABLES_DIR, replace_atomically
from ocr_assets.keys import BookKey, RecordKey
from ocr_assets.outputs import file_sha256, read_output
from ocr_assets.pipeline import Pipeline, Progress, ProgressCallback, RunSummary, publish_progress
from ocr_assets.schema import OcrPageResult
from ocr_assets.settings import FilterSettings
from ocr_assets.store import BatchRow, RecordRow, RecordStatus, RecordStore

if TYPE_CHECKING:  # the Gemini modules load only when a batch wrapper runs
    from ocr_assets.engines.gemini.batch import GeminiBatchClient, IntegrityReport
    from ocr_assets.engines.gemini.submit import SubmitReport

CONTENT_TYPES_WITH_COURSES = ("course_listing",)

PAGE_COLUMNS = ("page", "upstream_page", "status", "failed", "attempts", "error", "tokens", "cost_usd",
                "output_path")
FAILED_STATUSES = (str(RecordStatus.FATAL_FAILURE), str(RecordStatus.BLOCKED), str(RecordStatus.RETRYABLE_FAILURE))


# -- running -----------------------------------------------------------------------------------


class BookNotPlanned(ValueError):
    """A partition names a book the record store's plan does not hold (a typo, or a book never planned)."""


def require_planned(store: RecordStore, books: Sequence[str]) -> None:
    """Raise `BookNotPlanned` naming every book of `books` that is not in the plan."""
    planned = set(store.counts_by_book(books))
    missing = [book for book in books if book not in planned]
    if missing:
        raise BookNotPlanned(
            f"book not in the plan: {', '.join(missing[:20])}" + (f" (+{len(missing) - 20} more)" if len(missing) > 20 else "")
            + ". `ocr-assets status` lists the planned books; `ocr-assets plan` (or materializing corpus_plan) "
            "adds new ones from the corpus.")


def drive_books(
    pipeline: Pipeline, books: Sequence[str], spec: EngineSpec, *, sync_engine: SyncEngine | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunSummary:
    """Drive `books` to terminal with the engine `spec` names (`sync_engine`: that engine, already loaded).

    Every book must be in the plan (`BookNotPlanned`): an unknown partition must fail, not pass with 0 pages.
    Progress goes to `on_progress` and to `ocr_assets.pipeline.progress_log`.
    """
    from ocr_assets.engines.factory import drive

    require_planned(pipeline.store, books)

    def report(progress: Progress) -> None:
        publish_progress(progress)
        if on_progress is not None:
            on_progress(progress)

    return drive(pipeline, spec, books=list(books), on_progress=report, sync_engine=sync_engine)


def books_of_keys(keys: Iterable[str]) -> list[str]:
    """The sorted distinct books of record keys."""
    return sorted({str(RecordKey.parse(key).book) for key in keys})


def batch_books(store: RecordStore, batch_ids: Sequence[str]) -> dict[str, list[str]]:
    """batch id → every book with a record in it (what an ingest run reports materializations for)."""
    return {batch_id: books_of_keys(keys) for batch_id, keys in store.batch_keys(batch_ids).items()}


# -- book discovery ----------------------------------------------------------------------------


def book_folders(allow_list_root: Path, filters: FilterSettings) -> list[str]:
    """The books `state/school/year` folders of the allow-list tree name (the filters applied), sorted.

    Lists folders only, three levels deep, never a page file: at corpus scale (1M pages) this is a few
    thousand directory reads, where a re-plan reads every allow-list file. Odd names are left to the
    plan run, which reports them.
    """
    def folders(path: str) -> list[os.DirEntry[str]]:
        try:
            return [e for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")]
        except OSError:
            return []

    found = []
    for state in folders(str(allow_list_root)):
        for school in folders(state.path):
            for year in folders(school.path):
                if year.name.isascii() and year.name.isdigit() and filters.admits(state.name, school.name,
                                                                                  int(year.name)):
                    found.append(f"{state.name}:{school.name}:{int(year.name)}")
    return sorted(found)


class BookDiscovery(BaseModel):
    """What a discovery tick found: folders the plan lacks, and planned books Dagster has no partition for."""

    folders: int
    unplanned: list[str]
    unregistered: list[str]

    @property
    def plan_run_key(self) -> str:
        """Names the unplanned set: one plan run per new set of folders, however many ticks see it."""
        import hashlib

        return "plan:" + hashlib.sha256("\n".join(self.unplanned).encode()).hexdigest()[:16]


def discover_books(store: RecordStore, allow_list_root: Path, filters: FilterSettings,
                   partitions: Iterable[str]) -> BookDiscovery:
    """Compare the corpus's book folders and the plan's books with the known partitions (two cheap reads)."""
    planned = set(store.books())
    folders = book_folders(allow_list_root, filters)
    return BookDiscovery(folders=len(folders), unplanned=[book for book in folders if book not in planned],
                         unregistered=sorted(planned - set(partitions)))


# -- per-page tables ---------------------------------------------------------------------------


def page_rows(records: Sequence[RecordRow], output_root: Path | None = None) -> list[dict[str, Any]]:
    """One row per page: page, upstream page, status, attempts, error, tokens, cost, output path.

    With `output_root`, output paths are shown relative to it (the table stays readable).
    """
    rows = []
    for r in sorted(records, key=lambda rec: (rec.book, rec.page)):
        error = r.last_error
        if r.status == RecordStatus.BLOCKED:
            error = f"blocked by {r.blocked_by}" if r.blocked_by else "blocked by a failed upstream page"
        rows.append(
            {
                "page": r.page,
                "upstream_page": RecordKey.parse(r.upstream_key).page if r.upstream_key else None,
                "status": str(r.status),
                "failed": str(r.status) in FAILED_STATUSES,
                "attempts": r.attempts,
                "error": (error or "")[:300],
                "tokens": r.prompt_tokens + r.output_tokens,
                "cost_usd": round(r.cost_usd, 6),
                "output_path": _relative(r.output_path, output_root),
            }
        )
    return rows


def _relative(path: str | None, root: Path | None) -> str:
    if not path:
        return ""
    if root is not None:
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            pass
    return path


def preview(rows: Sequence[dict[str, Any]], limit: int = PREVIEW_ROWS) -> list[dict[str, Any]]:
    """The first `limit` page rows, in page (chain) order; the full table is linked beside them."""
    return list(rows[:limit])


def failed_pages(rows: Sequence[dict[str, Any]], limit: int = PREVIEW_ROWS) -> str:
    """`3 (FATAL_FAILURE), 4 (BLOCKED)`: every failed page of a table, so none hides past the preview."""
    failed = [f"{row['page']} ({row['status']})" for row in rows if row["failed"]]
    more = f" … and {len(failed) - limit} more" if len(failed) > limit else ""
    return ", ".join(failed[:limit]) + more


def page_table_path(output_root: Path, book: str) -> Path:
    key = BookKey.parse(book)
    return Path(output_root, TABLES_DIR, "pages", key.state, key.school, f"{key.year}.csv")


def write_page_table(output_root: Path, book: str, rows: Sequence[dict[str, Any]]) -> Path:
    """The book's full page table as CSV (atomically), the file its ≤ 50-row preview links to."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PAGE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = page_table_path(output_root, book)
    replace_atomically(path, lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8"))
    return path


def status_counts(records: Iterable[RecordRow]) -> dict[str, int]:
    """Count per status, every status present (zeros included) in the store's order."""
    found = Counter(str(r.status) for r in records)
    return {str(s): found.get(str(s), 0) for s in RecordStatus}


def nonzero(counts: dict[str, int | float]) -> dict[str, int | float]:
    """The counts a reader needs: the non-zero ones (seven zero counters are noise)."""
    return {name: n for name, n in counts.items() if n}


class BookReport(BaseModel):
    """What one book's pages look like after a run: counts, totals and the page table."""

    book: str
    pages: int
    counts: dict[str, int]
    tokens: int
    cost_usd: float
    rows: list[dict[str, Any]]
    fatal_keys: list[str]
    blocked_keys: list[str]
    full_table: Path | None = None  # the whole page table as CSV (the metadata shows ≤ 50 rows)

    @property
    def complete(self) -> bool:
        """Every page terminal and none of them failed."""
        return self.pages == self.counts[RecordStatus.SUCCESS]


def book_report(book: str, records: Sequence[RecordRow], output_root: Path | None = None) -> BookReport:
    counts = status_counts(records)
    return BookReport(
        book=book, pages=len(records), counts=counts,
        tokens=sum(r.prompt_tokens + r.output_tokens for r in records),
        cost_usd=round(sum(r.cost_usd for r in records), 6),
        rows=page_rows(records, output_root),
        fatal_keys=sorted((r.key for r in records if r.status == RecordStatus.FATAL_FAILURE), key=_key_order),
        blocked_keys=sorted((r.key for r in records if r.status == RecordStatus.BLOCKED), key=_key_order),
    )


def book_reports(store: RecordStore, books: Sequence[str], output_root: Path | None = None) -> list[BookReport]:
    """Reports for `books` in the given order (one store read per book); with `output_root`, each book's
    full page table is written under it too (`BookReport.full_table`)."""
    reports = [book_report(book, store.records(book=book), output_root) for book in books]
    if output_root is not None:
        for report in reports:
            report.full_table = write_page_table(output_root, report.book, report.rows)
    return reports


def fatal_message(reports: Sequence[BookReport], store: RecordStore | None = None, limit: int = 20) -> str | None:
    """The failure message of a run with FATAL pages (None when there are none), naming each one."""
    fatal = [key for rep in reports for key in rep.fatal_keys]
    if not fatal:
        return None
    errors: dict[str, str] = {}
    for rep in reports:
        for row in rep.rows:
            key = f"{rep.book}:{row['page']}"
            if key in rep.fatal_keys:
                errors[key] = row["error"]
    blocked = sum(len(rep.blocked_keys) for rep in reports)
    books = [rep.book for rep in reports if rep.fatal_keys]
    done = [rep.book for rep in reports if rep.complete]
    lines = [
        f"{len(fatal)} page(s) FATAL in {len(books)} book(s) ({', '.join(books)}); "
        f"{blocked} page(s) BLOCKED behind them. Books fully succeeded: {len(done)} of {len(reports)}.",
    ]
    lines += [f"  {key}: {errors.get(key) or 'no error recorded'}" for key in fatal[:limit]]
    if len(fatal) > limit:
        lines.append(f"  … and {len(fatal) - limit} more (`ocr-assets records --status FATAL_FAILURE`)")
    lines.append("Fix the cause, then `ocr-assets retry` the pages and re-materialize the partitions.")
    return "\n".join(lines)


def _key_order(key: str) -> tuple[str, int]:
    book, _, page = key.rpartition(":")
    return book, int(page) if page.isdigit() else 0


# -- check verdicts ----------------------------------------------------------------------------


class CheckVerdict(BaseModel):
    """An asset check's outcome in domain terms: passed, a one-line summary, the offending rows."""

    passed: bool
    summary: str
    problems: list[dict[str, Any]] = []
    counts: dict[str, Any] = {}


def check_outputs_match_schema(records: Sequence[RecordRow]) -> CheckVerdict:
    """Every SUCCESS record has its output on disk, byte-identical to what was written, and valid."""
    problems = []
    checked = 0
    for r in records:
        if r.status != RecordStatus.SUCCESS:
            continue
        checked += 1
        if not r.output_path:
            problems.append({"key": r.key, "problem": "SUCCESS without an output path"})
            continue
        path = Path(r.output_path)
        try:
            OcrPageResult.model_validate_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append({"key": r.key, "problem": f"output unreadable: {exc.strerror or exc}"})
            continue
        except ValidationError as exc:
            problems.append({"key": r.key, "problem": f"output fails the schema: {str(exc)[:200]}"})
            continue
        if r.output_sha256 and file_sha256(path) != r.output_sha256:
            problems.append({"key": r.key, "problem": "output changed since it was written (sha256 differs)"})
    return CheckVerdict(
        passed=not problems, counts={"outputs_checked": checked, "problems": len(problems)},
        summary=f"{checked - len(problems)} of {checked} outputs valid", problems=problems[:PREVIEW_ROWS],
    )


def check_no_silent_loss(records: Sequence[RecordRow], *, max_attempts: int) -> CheckVerdict:
    """Every planned page is SUCCESS, FATAL with a reason, or BLOCKED with its cause — nothing else."""
    problems = []
    for r in records:
        status = r.status
        if status == RecordStatus.SUCCESS:
            continue
        if status == RecordStatus.FATAL_FAILURE and r.last_error:
            continue
        if status == RecordStatus.BLOCKED and r.blocked_by:
            continue
        if status == RecordStatus.FATAL_FAILURE:
            why = "FATAL without a recorded reason"
        elif status == RecordStatus.BLOCKED:
            why = "BLOCKED without a recorded cause"
        elif status == RecordStatus.RETRYABLE_FAILURE and r.attempts >= max_attempts:
            why = f"retries exhausted ({r.attempts}) but not marked FATAL"
        else:
            why = f"not terminal ({status}, {r.attempts} attempt(s))"
        problems.append({"key": r.key, "status": str(status), "problem": why})
    return CheckVerdict(
        passed=not problems, counts={"pages": len(records), "unaccounted": len(problems)},
        summary=f"{len(records) - len(problems)} of {len(records)} pages accounted for", problems=problems[:PREVIEW_ROWS],
    )


def check_courses_on_content_pages(records: Sequence[RecordRow]) -> CheckVerdict:
    """Every successful course-listing page yielded at least one course."""
    problems = []
    content = 0
    for r in records:
        if r.status != RecordStatus.SUCCESS or not r.output_path:
            continue
        try:
            result = read_output(Path(r.output_path))
        except (OSError, ValueError):
            continue  # the schema check owns unreadable outputs
        if result.page_info.content_type not in CONTENT_TYPES_WITH_COURSES:
            continue
        content += 1
        if not result.courses:
            problems.append({"key": r.key, "content_type": result.page_info.content_type, "problem": "no courses"})
    return CheckVerdict(
        passed=not problems, counts={"content_pages": content, "without_courses": len(problems)},
        summary=f"{content - len(problems)} of {content} course-listing pages have courses",
        problems=problems[:PREVIEW_ROWS],
    )


def check_cost_budget(store: RecordStore, budget_usd: float | None) -> CheckVerdict:
    """Total billed cost (every attempt, from the cost ledger) is within the configured budget."""
    spent, listed = store.cost_totals()
    counts = {"cost_usd": round(spent, 6), "realtime_equivalent_usd": round(listed, 6),
              "budget_usd": budget_usd}
    if budget_usd is None:
        return CheckVerdict(passed=True, counts=counts, summary=f"${spent:.4f} spent; no budget configured")
    return CheckVerdict(
        passed=spent <= budget_usd, counts=counts,
        summary=f"${spent:.4f} spent of a ${budget_usd:.2f} budget (execution.cost_budget_usd)",
    )


# -- batch sensors and runs ----------------------------------------------------------------------
# The Gemini batch loop (`engines.gemini.runner`) and its stages (`submit`, `poll`, `ingest`) live in `engines.gemini`;
# these wrappers are the only place the Dagster layer reaches it.


def is_remote_batch(engine: str) -> bool:
    """Batches that occupy a Gemini batch slot (synchronous runs and pre-submit settling record batches too)."""
    from ocr_assets.engines.gemini.lifecycle import ENGINE

    return engine == ENGINE


def batch_engine_blocker(engine: str) -> str | None:
    """Why the batch sensors must not act: they only serve `engine: gemini-batch` (a local corpus never goes to Gemini)."""
    from ocr_assets.engines.gemini.lifecycle import ENGINE

    if engine != ENGINE:
        return f"the configured engine is {engine!r}; the batch sensors act only when it is {ENGINE!r}"
    return None


def submit_blocker(store: RecordStore, max_concurrent_batches: int) -> str | None:
    """Why a submit run should not start now (None: free slots and runnable records exist)."""
    with store.session():  # one open of the store for the tick's two reads
        busy = sum(1 for batch in store.active_batches() if is_remote_batch(batch.engine))
        if busy >= max_concurrent_batches:
            return f"all {max_concurrent_batches} batch slots are busy"
        if not store.runnable(1):
            return "no runnable records"
    return None


def submit_batches(pipeline: Pipeline, client: GeminiBatchClient) -> SubmitReport:
    """Claim runnable records across books into new batches (up to the free slots); a `SubmitReport`."""
    from ocr_assets.engines.gemini.submit import submit_wave

    return submit_wave(pipeline, client)


class PollTick(NamedTuple):
    """What one poll of the batches found: the finished ones still to ingest (oldest first), the books
    each touches, and a line per stuck batch."""

    finished: list[BatchRow]
    books: dict[str, list[str]]
    stuck: list[str]


def poll_tick(pipeline: Pipeline, client: Callable[[], GeminiBatchClient], limit: int = 25) -> PollTick:
    """Poll every active batch once (one GET each); then the finished batches still to ingest.

    `client` builds the Gemini batch client, only when a remote batch is active (an idle tick needs no key).
    """
    from ocr_assets.engines.gemini.poll import pending_ingest, poll_active

    def found(finished: list[BatchRow], active: Sequence[BatchRow] | None) -> PollTick:
        return PollTick(finished, batch_books(pipeline.store, [b.batch_id for b in finished]),
                        stuck_batch_alerts(pipeline, active=active))

    with pipeline.store.session():  # no remote batch: the whole tick is one open of the store
        active = pipeline.store.active_batches()
        if not any(is_remote_batch(batch.engine) for batch in active):
            return found(pending_ingest(pipeline)[:limit], active)
    # Remote GETs happen outside any store session: other processes may use the store meanwhile.
    finished = poll_active(pipeline, client(), active=active)[:limit]
    with pipeline.store.session():
        return found(finished, None)


def stuck_batch_alerts(pipeline: Pipeline, *, now: datetime | None = None,
                       active: Sequence[BatchRow] | None = None) -> list[str]:
    """One line per batch still pending or running past `gemini.stuck_batch_hours`, saying what to do
    (among `active` when given, else the store's active batches)."""
    from ocr_assets.engines.gemini.poll import stuck_batches

    hours = pipeline.settings.gemini.stuck_batch_hours
    naive_now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    return [
        f"STUCK: batch {b.batch_id} ({b.remote_name or 'not created remotely'}) has been {b.state} for "
        f"{(naive_now - b.created_at).total_seconds() / 3600:.1f} h (> {hours:g} h); "
        f"`ocr-assets batch-cancel {b.batch_id}` cancels it and returns its {b.record_count} records to retry"
        for b in stuck_batches(pipeline, now=now, active=active)
    ]


def batch_integrity(store: RecordStore, batch_id: str) -> IntegrityReport | None:
    """The batch's `IntegrityReport` from its typed detail (`BatchDetail.of`); None before ingest or for a
    synchronous run's batch."""
    from ocr_assets.engines.gemini.lifecycle import BatchDetail

    return BatchDetail.of(store.get_batch(batch_id)).integrity


def ingest_finished_batch(pipeline: Pipeline, batch_id: str, client: Callable[[], GeminiBatchClient]) -> list[str]:
    """Ingest one finished batch (idempotent; a synchronous run's batch is already ingested); returns its books.

    `client` builds the Gemini batch client, only when there is something to fetch.
    """
    from ocr_assets.engines.gemini.ingest import ingest_batch
    from ocr_assets.store import BatchState

    batch = pipeline.store.get_batch(batch_id)
    if batch is None:
        raise ValueError(f"no batch {batch_id!r} in the record store")
    if is_remote_batch(batch.engine) and batch.state != BatchState.INGESTED:
        ingest_batch(pipeline, client(), batch.batch_id)
    return batch_books(pipeline.store, [batch.batch_id])[batch.batch_id]
