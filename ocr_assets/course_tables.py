"""Course tables: each book's courses flattened from its page outputs, and the corpus table over all books.

Per book: Parquet + JSONL under `output_root/_tables/book_courses/`. Corpus: `courses` in its own DuckDB
file (`output_root/courses.duckdb`, never the record store's) plus `_tables/courses.parquet`. Every file
is written to a temp name and renamed, so a reader never sees half a table. Nothing here imports dagster.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ocr_assets.keys import BookKey
from ocr_assets.outputs import read_output
from ocr_assets.schema import OcrPageResult
from ocr_assets.store import RecordRow, RecordStatus, RecordStore
from ocr_assets.store.courses import write_courses_db

PREVIEW_ROWS = 50
# Derived tables live under this folder of output_root; a leading '_' can never be a state name.
TABLES_DIR = "_tables"
COURSES_DUCKDB = "courses.duckdb"
COURSE_PREVIEW_COLUMNS = ("book", "page", "course_name", "department", "level", "term", "instructors")


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


def replace_atomically(path: Path, write) -> None:
    """Write `path` through `write(tmp)` on a temp name beside it, then rename (readers never see half a file)."""
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
    replace_atomically(parquet_path, lambda p: pq.write_table(table, p))
    text = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
    replace_atomically(jsonl_path, lambda p: p.write_text(text, encoding="utf-8"))
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


def course_columns() -> list[tuple[str, str]]:
    """(name, type) of every column of the course tables, for column schemas in the UI."""
    return [(field.name, str(field.type)) for field in _course_schema()]


def course_preview(rows: Sequence[dict[str, Any]], limit: int = PREVIEW_ROWS) -> list[dict[str, Any]]:
    return [
        {
            "book": row["book"], "page": row["page"], "course_name": row["course_name"], "department": row["department"] or "",
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
            export_parquet=lambda write: replace_atomically(parquet_path, write)))

    replace_atomically(duckdb_path, write_db)
    return CorpusCourses(
        rows=stats["rows"], books=stats["books"], duckdb_path=duckdb_path, parquet_path=parquet_path,
        by_department=stats["by_department"], preview=course_preview(stats["preview"]),
    )
