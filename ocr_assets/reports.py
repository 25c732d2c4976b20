"""Plain domain functions behind the Dagster layer: per-page tables, course tables, check verdicts.

Nothing here imports dagster. The assets, checks and sensors in `ocr_assets/defs/` read their
resources, call these and turn the results into metadata; every branch worth a test lives here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ocr_assets.engines.base import SyncEngine
from ocr_assets.keys import BookKey, RecordKey
from ocr_assets.outputs import file_sha256, read_output
from ocr_assets.pipeline import Pipeline, RunSummary
from ocr_assets.schema import OcrPageResult
from ocr_assets.store import RecordRow, RecordStatus, RecordStore
from ocr_assets.store.courses import write_courses_db

PREVIEW_ROWS = 50
# Derived tables live under this folder of output_root; a leading '_' can never be a state name.
TABLES_DIR = "_tables"
COURSES_DUCKDB = "courses.duckdb"
CONTENT_TYPES_WITH_COURSES = ("course_listing",)

PAGE_COLUMNS = ("page", "upstream_page", "status", "attempts", "error", "tokens", "cost_usd", "output_path")
COURSE_PREVIEW_COLUMNS = ("page", "course_name", "department", "level", "term", "instructors")


# -- running -----------------------------------------------------------------------------------


def drive_books(
    pipeline: Pipeline, books: Sequence[str], *, sync_engine: SyncEngine | None = None
) -> RunSummary:
    """Drive `books` to terminal: with an already-loaded synchronous engine, else the configured one."""
    if sync_engine is not None:
        return pipeline.run_sync(sync_engine, books=list(books))
    from ocr_assets.engines.factory import drive

    return drive(pipeline, books=list(books))


def books_of_keys(keys: Iterable[str]) -> list[str]:
    """The sorted distinct books of record keys."""
    return sorted({str(RecordKey.parse(key).book) for key in keys})


def batch_books(store: RecordStore, batch_ids: Sequence[str]) -> dict[str, list[str]]:
    """batch id → every book with a record in it (what an ingest run reports materializations for)."""
    return {batch_id: books_of_keys(keys) for batch_id, keys in store.batch_keys(batch_ids).items()}


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
    """At most `limit` page rows, failures first, shown in page order."""
    if len(rows) <= limit:
        return list(rows)
    ranked = sorted(range(len(rows)), key=lambda i: (rows[i]["status"] == str(RecordStatus.SUCCESS), i))
    return [rows[i] for i in sorted(ranked[:limit])]


def status_counts(records: Iterable[RecordRow]) -> dict[str, int]:
    """Count per status, every status present (zeros included) in the store's order."""
    found = Counter(str(r.status) for r in records)
    return {str(s): found.get(str(s), 0) for s in RecordStatus}


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
    """Reports for `books` in the given order (one store read per book)."""
    return [book_report(book, store.records(book=book), output_root) for book in books]


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


# -- course tables -----------------------------------------------------------------------------


def _course_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("key", pa.string()), ("book", pa.string()), ("state", pa.string()), ("school", pa.string()),
            ("year", pa.int32()), ("page", pa.int32()), ("course_index", pa.int32()),
            ("course_name", pa.string()), ("department", pa.string()), ("level", pa.string()),
            ("term", pa.string()), ("description", pa.string()),
            ("topics", pa.list_(pa.string())), ("instructors", pa.list_(pa.string())),
            ("textbooks", pa.list_(pa.struct([("title", pa.string()), ("author", pa.string())]))),
            ("school_name", pa.string()), ("catalog_year", pa.string()), ("academic_year", pa.string()),
            ("content_type", pa.string()), ("output_path", pa.string()),
        ]
    )


def flatten_result(record: RecordRow, result: OcrPageResult) -> list[dict[str, Any]]:
    """One row per course on the page, with the page's book, school and catalog fields."""
    rows = []
    for index, course in enumerate(result.courses):
        rows.append(
            {
                "key": record.key, "book": record.book, "state": record.state, "school": record.school,
                "year": record.year, "page": record.page, "course_index": index,
                "course_name": course.course_name, "department": course.department, "level": course.level,
                "term": course.term, "description": course.description, "topics": list(course.topics),
                "instructors": list(course.instructors),
                "textbooks": [{"title": t.title, "author": t.author} for t in course.textbooks],
                "school_name": result.school_name,
                "catalog_year": None if result.catalog_year is None else str(result.catalog_year),
                "academic_year": result.academic_year, "content_type": result.page_info.content_type,
                "output_path": record.output_path,
            }
        )
    return rows


def flatten_courses(records: Sequence[RecordRow]) -> list[dict[str, Any]]:
    """Courses of every SUCCESS record's output, in page order (unreadable outputs are skipped)."""
    rows: list[dict[str, Any]] = []
    for record in sorted(records, key=lambda r: (r.book, r.page)):
        if record.status != RecordStatus.SUCCESS or not record.output_path:
            continue
        try:
            result = read_output(Path(record.output_path))
        except (OSError, ValueError):
            continue  # the schema check reports it; a table build must not die on one page
        rows.extend(flatten_result(record, result))
    return rows


def book_table_paths(output_root: Path, book: str) -> tuple[Path, Path]:
    """(parquet, jsonl) paths of one book's course table."""
    key = BookKey.parse(book)
    folder = Path(output_root, TABLES_DIR, "book_courses", key.state, key.school)
    return folder / f"{key.year}.parquet", folder / f"{key.year}.jsonl"


def corpus_table_paths(output_root: Path) -> tuple[Path, Path]:
    """(duckdb, parquet) paths of the corpus course table."""
    return Path(output_root, COURSES_DUCKDB), Path(output_root, TABLES_DIR, "courses.parquet")


def _replace_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.unlink(tmp)  # writers below create the file themselves
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        for leftover in (tmp, tmp + ".wal"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
        raise


def write_book_courses(output_root: Path, book: str, rows: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    """Write one book's course rows as Parquet and JSONL (atomically); returns both paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet_path, jsonl_path = book_table_paths(output_root, book)
    table = pa.Table.from_pylist(list(rows), schema=_course_schema())
    _replace_atomically(parquet_path, lambda p: pq.write_table(table, p))
    text = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
    _replace_atomically(jsonl_path, lambda p: p.write_text(text, encoding="utf-8"))
    return parquet_path, jsonl_path


class BookCourses(BaseModel):
    book: str
    rows: list[dict[str, Any]]
    parquet_path: Path
    jsonl_path: Path
    pages_with_courses: int


def build_book_courses(store: RecordStore, output_root: Path, book: str) -> BookCourses:
    """Flatten one book's outputs into its course table files."""
    rows = flatten_courses(store.records(book=book, status=RecordStatus.SUCCESS))
    parquet_path, jsonl_path = write_book_courses(output_root, book, rows)
    return BookCourses(
        book=book, rows=rows, parquet_path=parquet_path, jsonl_path=jsonl_path,
        pages_with_courses=len({row["page"] for row in rows}),
    )


def course_preview(rows: Sequence[dict[str, Any]], limit: int = PREVIEW_ROWS) -> list[dict[str, Any]]:
    return [
        {
            "page": row["page"], "course_name": row["course_name"], "department": row["department"] or "",
            "level": row["level"] or "", "term": row["term"] or "", "instructors": ", ".join(row["instructors"]),
        }
        for row in rows[:limit]
    ]


class CorpusCourses(BaseModel):
    rows: int
    books: int
    duckdb_path: Path
    parquet_path: Path
    by_department: list[dict[str, Any]]
    preview: list[dict[str, Any]]


def build_corpus_courses(output_root: Path) -> CorpusCourses:
    """Union every book's course Parquet into `courses` in its own DuckDB file, plus a Parquet export.

    The record store's DuckDB file is never opened here: the corpus table lives in a separate file
    (written to a temp name and renamed, so a reader holding the old file is never blocked).
    """
    import pyarrow as pa

    duckdb_path, parquet_path = corpus_table_paths(output_root)
    files = sorted(str(p) for p in Path(output_root, TABLES_DIR, "book_courses").glob("*/*/*.parquet"))
    stats: dict[str, Any] = {}

    def write_db(path: Path) -> None:
        stats.update(write_courses_db(
            path, files, pa.Table.from_pylist([], schema=_course_schema()), preview_rows=PREVIEW_ROWS,
            export_parquet=lambda write: _replace_atomically(parquet_path, write)))

    _replace_atomically(duckdb_path, write_db)
    return CorpusCourses(
        rows=stats["rows"], books=stats["books"], duckdb_path=duckdb_path, parquet_path=parquet_path,
        by_department=stats["by_department"], preview=course_preview(stats["preview"]),
    )


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
# The Gemini batch loop itself (submit, poll, ingest) lives in `ocr_assets.engines.gemini.runner`;
# these wrappers are the only place the Dagster layer reaches it.


def is_remote_batch(engine: str) -> bool:
    """Batches that occupy a Gemini batch slot (synchronous runs and pre-submit settling record batches too)."""
    from ocr_assets.engines.gemini.runner import ENGINE

    return engine == ENGINE


def submit_blocker(store: RecordStore, max_concurrent_batches: int) -> str | None:
    """Why a submit run should not start now (None: free slots and runnable records exist)."""
    busy = sum(1 for batch in store.active_batches() if is_remote_batch(batch.engine))
    if busy >= max_concurrent_batches:
        return f"all {max_concurrent_batches} batch slots are busy"
    if not store.runnable(1):
        return "no runnable records"
    return None


def submit_batches(pipeline: Pipeline, client: Any) -> Any:
    """Claim runnable records across books into new batches (up to the free slots); a `SubmitReport`."""
    from ocr_assets.engines.gemini.runner import submit_wave

    return submit_wave(pipeline, client)


def poll_batches(pipeline: Pipeline, client: Callable[[], Any], limit: int = 25) -> list[Any]:
    """Poll every active batch once (one GET each), then the finished ones still to ingest, oldest first.

    `client` builds the Gemini batch client, only when a remote batch is active (an idle tick needs no key).
    """
    from ocr_assets.engines.gemini.runner import pending_ingest, poll_active

    active = pipeline.store.active_batches()
    if not any(is_remote_batch(batch.engine) for batch in active):
        return pending_ingest(pipeline)[:limit]
    return poll_active(pipeline, client(), active=active)[:limit]


def stuck_batch_alerts(pipeline: Pipeline, *, now: datetime | None = None) -> list[str]:
    """One line per batch still pending or running past `gemini.stuck_batch_hours`, saying what to do."""
    from ocr_assets.engines.gemini.runner import stuck_batches

    hours = pipeline.settings.gemini.stuck_batch_hours
    naive_now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    return [
        f"STUCK: batch {b.batch_id} ({b.remote_name or 'not created remotely'}) has been {b.state} for "
        f"{(naive_now - b.created_at).total_seconds() / 3600:.1f} h (> {hours:g} h); "
        f"`ocr-assets batch-cancel {b.batch_id}` cancels it and returns its {b.record_count} records to retry"
        for b in stuck_batches(pipeline, now=now)
    ]


def ingest_finished_batch(pipeline: Pipeline, batch_id: str, client: Callable[[], Any]) -> list[str]:
    """Ingest one finished batch (idempotent; a synchronous run's batch is already ingested); returns its books.

    `client` builds the Gemini batch client, only when there is something to fetch.
    """
    from ocr_assets.engines.gemini.runner import ingest_batch
    from ocr_assets.store import BatchState

    batch = pipeline.store.get_batch(batch_id)
    if batch is None:
        raise ValueError(f"no batch {batch_id!r} in the record store")
    if is_remote_batch(batch.engine) and batch.state != BatchState.INGESTED:
        ingest_batch(pipeline, client(), batch.batch_id)
    return batch_books(pipeline.store, [batch.batch_id])[batch.batch_id]
