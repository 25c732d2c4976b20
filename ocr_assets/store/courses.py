"""The corpus `courses` table: its own DuckDB file (never the record store's), rebuilt from the books'
course Parquet files, so a reader of the old file is never blocked by the record store's lock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ocr_assets.store.session import sql_string


def write_courses_db(path: Path, parquet_files: Sequence[str], empty_courses: Any, *, preview_rows: int,
                     export_parquet: Callable[[Callable[[Path], None]], None]) -> dict[str, Any]:
    """Create `courses` in a new DuckDB file at `path` from `parquet_files` (or the empty Arrow table
    `empty_courses`), hand `export_parquet` a writer of its Parquet copy, and return its stats: rows,
    books, courses by department, and a preview."""
    import duckdb

    con = duckdb.connect(str(path))
    try:
        con.register("empty_courses", empty_courses)
        source = "read_parquet(?, union_by_name = true)" if parquet_files else "empty_courses"
        con.execute(f"CREATE TABLE courses AS SELECT * FROM {source} ORDER BY book, page, course_index",
                    [list(parquet_files)] if parquet_files else [])
        rows, books = con.execute("SELECT count(*), count(DISTINCT book) FROM courses").fetchall()[0]
        by_department = con.sql(
            "SELECT coalesce(department, '(none)') AS department, count(*) AS courses, count(DISTINCT book) "
            f"AS books FROM courses GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {int(preview_rows)}"
        ).to_arrow_table().to_pylist()
        preview = con.sql(f"SELECT * FROM courses LIMIT {int(preview_rows)}").to_arrow_table().to_pylist()
        export_parquet(lambda target: con.execute(f"COPY courses TO {sql_string(target)} (FORMAT parquet)"))
    finally:
        con.close()
    return {"rows": rows, "books": books, "by_department": by_department, "preview": preview}
