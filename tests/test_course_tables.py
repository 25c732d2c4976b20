"""Course tables: each book's courses flattened into Parquet + JSONL, the corpus table in its own DuckDB file."""

from pathlib import Path

import pyarrow.parquet as pq

from ocr_assets import course_tables
from ocr_assets.store import RecordStatus
from tests.fixtures.records import BOOK, record, with_output


def test_book_courses_are_flattened_from_outputs_into_parquet_and_jsonl(tmp_path: Path) -> None:
    records = [with_output(tmp_path, 1, 0, "title_page"), with_output(tmp_path, 2, 3),
               record(3, RecordStatus.FATAL_FAILURE, last_error="x")]
    rows = course_tables.flatten_courses(records)
    assert [(r["page"], r["course_index"]) for r in rows] == [(2, 0), (2, 1), (2, 2)]
    assert rows[0]["textbooks"] == [{"title": "Elements", "author": None}] and rows[0]["catalog_year"] == "1901"
    parquet, jsonl = course_tables.write_book_courses(tmp_path / "out", BOOK, rows)
    assert pq.read_table(parquet).num_rows == 3
    assert len(jsonl.read_text().splitlines()) == 3
    assert parquet == tmp_path / "out" / "_tables" / "book_courses" / "CA" / "Lincoln High" / "1901.parquet"


def test_corpus_courses_union_every_book_table_into_a_separate_duckdb_file(tmp_path: Path) -> None:
    import duckdb

    out = tmp_path / "out"
    empty = course_tables.build_corpus_courses(out)
    assert empty.rows == 0 and empty.duckdb_path.exists()
    course_tables.write_book_courses(out, BOOK, course_tables.flatten_courses([with_output(tmp_path, 2, 2)]))
    course_tables.write_book_courses(out, "NY:Adams:1902", [])
    built = course_tables.build_corpus_courses(out)
    assert (built.rows, built.books) == (2, 1)
    assert built.duckdb_path == out / "courses.duckdb"
    con = duckdb.connect(str(built.duckdb_path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM courses").fetchall()[0][0] == 2
    finally:
        con.close()
    assert pq.read_table(built.parquet_path).num_rows == 2


def test_the_course_preview_names_each_courses_book(tmp_path: Path) -> None:
    rows = course_tables.flatten_courses([with_output(tmp_path, 2, 2)])
    preview = course_tables.course_preview(rows)
    assert [(r["book"], r["page"]) for r in preview] == [(BOOK, 2), (BOOK, 2)]
    assert set(preview[0]) == set(course_tables.COURSE_PREVIEW_COLUMNS)


def test_course_columns_name_every_column_of_the_tables_with_its_type(tmp_path: Path) -> None:
    parquet, _ = course_tables.write_book_courses(tmp_path, BOOK, [])
    columns = dict(course_tables.course_columns())
    assert list(columns) == pq.read_schema(parquet).names
    assert (columns["book"], columns["page"], columns["topics"]) == ("string", "int32", "list<item: string>")
