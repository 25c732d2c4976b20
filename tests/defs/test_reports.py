"""The plain functions behind the Dagster layer (no Dagster here)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ocr_assets import reports
from ocr_assets.store import RecordStatus, RecordStore
from tests.fixtures.records import BOOK, record, with_output

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


def test_the_page_table_preview_keeps_page_order_and_flags_failures_named_in_full_beside_it() -> None:
    rows = reports.page_rows([record(p) for p in range(1, 80)] + [record(90, RecordStatus.FATAL_FAILURE),
                                                                  record(91, RecordStatus.BLOCKED)])
    shown = reports.preview(rows)
    assert [r["page"] for r in shown] == list(range(1, 51))  # chain order, not failures first
    assert not any(r["failed"] for r in shown)
    assert [r["page"] for r in rows if r["failed"]] == [90, 91]
    assert reports.failed_pages(rows) == "90 (FATAL_FAILURE), 91 (BLOCKED)"  # none hides past the preview
    assert reports.failed_pages(shown) == ""


def test_the_full_page_table_is_written_as_csv_for_the_preview_to_link(tmp_path: Path) -> None:
    import csv

    rows = reports.page_rows([record(p) for p in range(1, 80)] + [record(90, RecordStatus.FATAL_FAILURE)])
    path = reports.write_page_table(tmp_path, BOOK, rows)
    assert path == tmp_path / "_tables" / "pages" / "CA" / "Lincoln High" / "1901.csv"
    written = list(csv.DictReader(path.open()))
    assert [int(r["page"]) for r in written] == [r["page"] for r in rows] and written[-1]["failed"] == "True"


@pytest.mark.parametrize(("counts", "shown"), [
    ({"success": 3, "fatal_failure": 0, "blocked": 0}, {"success": 3}),
    ({"tokens": 0, "cost_usd": 0.0}, {}),
    ({"success": 1, "fatal_failure": 2, "cost_usd": 0.01}, {"success": 1, "fatal_failure": 2, "cost_usd": 0.01}),
])
def test_only_non_zero_counts_are_shown(counts, shown) -> None:
    assert reports.nonzero(counts) == shown


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



def test_a_poll_tick_with_no_remote_batch_in_flight_is_one_open_of_the_store(tmp_path: Path, monkeypatch) -> None:
    from ocr_assets.pipeline import Pipeline
    from ocr_assets.plan import build_plan
    from ocr_assets.store import BatchState, ClaimItem
    from ocr_assets.store import session as store_session
    from tests.fixtures.corpus import settings_for, write_book

    write_book(tmp_path, "NY:a:1902", images=range(1, 3), allow=[1, 2])
    settings = settings_for(tmp_path)
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    pipeline.store.claim("gb-done", [ClaimItem(key="NY:a:1902:1", batch_index=0, prompt_name="page_ocr",
                                               prompt_version="v1.1", prompt_vars_hash="h")],
                         engine="gemini-batch", model="m", state=BatchState.SUCCEEDED)  # finished, not ingested
    opens = []
    real_lock = store_session.FileSession.lock
    monkeypatch.setattr(store_session.FileSession, "lock", lambda self: (opens.append(1), real_lock(self))[1])

    tick = reports.poll_tick(pipeline, lambda: pytest.fail("no remote batch to poll: no client needed"))
    assert [b.batch_id for b in tick.finished] == ["gb-done"]
    assert tick.books == {"gb-done": ["NY:a:1902"]} and tick.stuck == []
    assert len(opens) == 1
