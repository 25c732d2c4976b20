"""The plain functions behind the Dagster layer (no Dagster here)."""

import ast
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ocr_assets import reports
from ocr_assets.outputs import write_output
from ocr_assets.schema import OcrPageResult
from ocr_assets.store import RecordRow, RecordStatus, RecordStore

NOW = datetime(2026, 1, 1)
BOOK = "CA:Lincoln High:1901"


def record(page: int, status: RecordStatus = RecordStatus.SUCCESS, **fields) -> RecordRow:
    base = dict(
        key=f"{BOOK}:{page}", book=BOOK, state="CA", school="Lincoln High", year=1901, page=page,
        image_path=f"/img/{page}.png", allow_list_path=f"/allow/{page}.json",
        upstream_key=f"{BOOK}:{page - 1}" if page > 1 else None, status=status, attempts=1,
        created_at=NOW, updated_at=NOW,
    )
    return RecordRow(**{**base, **fields})


def page_result(page: int, courses: int, content_type: str = "course_listing") -> OcrPageResult:
    return OcrPageResult.model_validate({
        "raw_ocr": {"text_blocks": [{"block_id": 1, "text": f"page {page}"}]},
        "page_info": {"page_number": page, "content_type": content_type},
        "school_name": "Lincoln High", "catalog_year": 1901,
        "courses": [{"course_name": f"Course {page}.{i}", "department": "Math", "instructors": ["Ada"],
                     "textbooks": [{"title": "Elements"}]} for i in range(courses)],
    })


def with_output(tmp_path: Path, page: int, courses: int, content_type: str = "course_listing") -> RecordRow:
    path, sha = write_output(tmp_path / "out", f"{BOOK}:{page}", page_result(page, courses, content_type))
    return record(page, output_path=str(path), output_sha256=sha)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (record(1, prompt_tokens=10, output_tokens=5, cost_usd=0.0012345678, output_path="/o/1.json"),
         {"page": 1, "upstream_page": None, "status": "SUCCESS", "tokens": 15, "cost_usd": 0.001235,
          "error": "", "output_path": "/o/1.json"}),
        (record(3, RecordStatus.FATAL_FAILURE, last_error="image unreadable"),
         {"page": 3, "upstream_page": 2, "status": "FATAL_FAILURE", "error": "image unreadable"}),
        (record(4, RecordStatus.BLOCKED, blocked_by=f"{BOOK}:3", attempts=0),
         {"status": "BLOCKED", "error": f"blocked by {BOOK}:3", "attempts": 0}),
    ],
)
def test_page_rows_show_page_upstream_status_error_tokens_cost_and_output(row, expected) -> None:
    [shown] = reports.page_rows([row])
    assert set(shown) == set(reports.PAGE_COLUMNS)
    assert {k: shown[k] for k in expected} == expected


def test_preview_keeps_fifty_rows_with_failures_first_in_page_order() -> None:
    rows = reports.page_rows([record(p) for p in range(1, 80)] + [record(90, RecordStatus.FATAL_FAILURE)])
    shown = reports.preview(rows)
    assert len(shown) == 50
    assert shown[-1]["page"] == 90  # the failure made the cut although it is last
    assert [r["page"] for r in shown] == sorted(r["page"] for r in shown)


def test_fatal_message_names_every_fatal_page_with_its_error_and_the_blocked_count() -> None:
    good = reports.book_report("NY:Adams:1902", [record(1, key="NY:Adams:1902:1", book="NY:Adams:1902")])
    bad = reports.book_report(BOOK, [
        record(1), record(2, RecordStatus.FATAL_FAILURE, last_error="safety block"),
        record(3, RecordStatus.BLOCKED, blocked_by=f"{BOOK}:2"),
    ])
    message = reports.fatal_message([good, bad])
    assert message is not None
    assert f"{BOOK}:2: safety block" in message
    assert "1 page(s) FATAL in 1 book(s)" in message and "1 page(s) BLOCKED" in message
    assert "fully succeeded: 1 of 2" in message
    assert reports.fatal_message([good]) is None
    assert good.complete and not bad.complete


def test_book_courses_are_flattened_from_outputs_into_parquet_and_jsonl(tmp_path: Path) -> None:
    records = [with_output(tmp_path, 1, 0, "title_page"), with_output(tmp_path, 2, 3),
               record(3, RecordStatus.FATAL_FAILURE, last_error="x")]
    rows = reports.flatten_courses(records)
    assert [(r["page"], r["course_index"]) for r in rows] == [(2, 0), (2, 1), (2, 2)]
    assert rows[0]["textbooks"] == [{"title": "Elements", "author": None}] and rows[0]["catalog_year"] == "1901"
    parquet, jsonl = reports.write_book_courses(tmp_path / "out", BOOK, rows)
    assert pq.read_table(parquet).num_rows == 3
    assert len(jsonl.read_text().splitlines()) == 3
    assert parquet == tmp_path / "out" / "_tables" / "book_courses" / "CA" / "Lincoln High" / "1901.parquet"


def test_corpus_courses_union_every_book_table_into_a_separate_duckdb_file(tmp_path: Path) -> None:
    import duckdb

    out = tmp_path / "out"
    empty = reports.build_corpus_courses(out)
    assert empty.rows == 0 and empty.duckdb_path.exists()
    reports.write_book_courses(out, BOOK, reports.flatten_courses([with_output(tmp_path, 2, 2)]))
    reports.write_book_courses(out, "NY:Adams:1902", [])
    built = reports.build_corpus_courses(out)
    assert (built.rows, built.books) == (2, 1)
    assert built.duckdb_path == out / "courses.duckdb"
    con = duckdb.connect(str(built.duckdb_path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM courses").fetchall()[0][0] == 2
    finally:
        con.close()
    assert pq.read_table(built.parquet_path).num_rows == 2


def test_schema_check_flags_missing_changed_and_invalid_outputs(tmp_path: Path) -> None:
    ok = with_output(tmp_path, 1, 1)
    changed = with_output(tmp_path, 2, 1)
    Path(changed.output_path).write_text(Path(changed.output_path).read_text() + " ")
    invalid = with_output(tmp_path, 3, 1)
    Path(invalid.output_path).write_text('{"courses": []}')
    missing = record(4, output_path=str(tmp_path / "nope.json"))
    verdict = reports.check_outputs_match_schema([ok, changed, invalid, missing, record(5, RecordStatus.PENDING)])
    assert not verdict.passed and verdict.counts == {"outputs_checked": 4, "problems": 3}
    problems = {p["key"].rsplit(":", 1)[1]: p["problem"] for p in verdict.problems}
    assert "sha256" in problems["2"] and "schema" in problems["3"] and "unreadable" in problems["4"]
    assert reports.check_outputs_match_schema([ok]).passed


@pytest.mark.parametrize(
    ("row", "accounted"),
    [
        (record(1), True),
        (record(1, RecordStatus.FATAL_FAILURE, last_error="bad image"), True),
        (record(1, RecordStatus.FATAL_FAILURE), False),
        (record(1, RecordStatus.BLOCKED, blocked_by=f"{BOOK}:0"), True),
        (record(1, RecordStatus.BLOCKED), False),
        (record(1, RecordStatus.PENDING, attempts=0), False),
        (record(1, RecordStatus.RUNNING), False),
        (record(1, RecordStatus.RETRYABLE_FAILURE, attempts=3), False),
    ],
)
def test_every_page_must_be_success_fatal_with_reason_or_blocked_with_cause(row, accounted) -> None:
    assert reports.check_no_silent_loss([row], max_attempts=3).passed is accounted


def test_course_listing_pages_without_courses_fail_the_content_check(tmp_path: Path) -> None:
    title = with_output(tmp_path, 1, 0, "title_page")
    listing = with_output(tmp_path, 2, 2)
    empty_listing = with_output(tmp_path, 3, 0)
    assert reports.check_courses_on_content_pages([title, listing]).passed
    verdict = reports.check_courses_on_content_pages([title, listing, empty_listing])
    assert not verdict.passed and [p["key"] for p in verdict.problems] == [f"{BOOK}:3"]


def test_cost_check_compares_the_ledger_total_with_the_budget(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "store.duckdb")
    store.init()
    with store.connect() as con:
        con.execute("INSERT INTO cost_ledger (key, engine, pricing_mode, prompt_tokens, output_tokens, "
                    "cached_tokens, cost_usd, realtime_cost_usd, created_at) "
                    "VALUES ('k', 'gemini-batch', 'batch', 1, 1, 0, 0.75, 1.5, now())")
    assert reports.check_cost_budget(store, None).passed
    assert reports.check_cost_budget(store, 1.0).passed
    verdict = reports.check_cost_budget(store, 0.5)
    assert not verdict.passed and verdict.counts["cost_usd"] == 0.75


def test_batch_books_are_the_books_of_every_member_record() -> None:
    assert reports.books_of_keys(["NY:a:1902:3", "CA:b:1901:1", "NY:a:1902:1"]) == ["CA:b:1901", "NY:a:1902"]


def _imports_dagster_at_module_level(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only: a CLI command may import Dagster lazily when it runs
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(name == "dagster" or name.startswith("dagster.") for name in names):
            return True
    return False


def test_domain_modules_and_the_cli_never_import_dagster() -> None:
    root = Path(reports.__file__).parent
    offenders = [str(path.relative_to(root)) for path in root.rglob("*.py")
                 if path.parts[-2] != "defs" and path.name != "definitions.py" and _imports_dagster_at_module_level(path)]
    assert offenders == []
    code = "import sys, ocr_assets.reports, ocr_assets.pipeline, ocr_assets.cli; print('dagster' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
