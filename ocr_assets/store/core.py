"""The store's handle on its file: sessions, transactions and the small SQL helpers its modules share."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from pydantic import BaseModel

from ocr_assets.store.session import copy_database_files, file_session, open_database


class StoreBase:
    """Every call is one transaction inside a session (its own short one when none is open)."""

    def __init__(self, path: str | Path, *, max_attempts: int = 3):
        self.path = Path(path)
        self.max_attempts = max_attempts

    @contextmanager
    def session(self) -> Iterator[None]:
        """Hold the store for one unit of work: locked and opened once, closed in `finally`.

        Store calls inside share the connection; a call outside any session opens a short one.
        Keep a session to one unit of work (a sensor tick, a submit wave, one ingest): other
        processes wait for the lock while it is held.
        """
        with file_session(self.path):
            yield

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store's lock with the database closed (file-level work: backup, wipe)."""
        with file_session(self.path) as held, held.transaction:
            held.close_connection()
            yield

    def copy_to(self, target: str | Path) -> Path:
        """A consistent copy of the database file (and a WAL a crash left), taken under the lock."""
        with self.exclusive():
            return copy_database_files(self.path, Path(target))

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The session's connection; everything inside runs in one transaction, committed on exit."""
        with file_session(self.path) as held, held.transaction:
            con = held.connection(open_database)
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                finally:
                    held.close_connection()  # not trusted for the next call after a failure
                raise
            con.execute("COMMIT")

    def init(self) -> None:
        with self.connect():
            pass

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a read query and return dict rows: for tests and benchmarks, never for the package."""
        with self.connect() as con:
            return dict_rows(con.execute(sql, list(params)))


def placeholders(values: Sequence[Any]) -> str:
    """`?, ?, ?` for `col IN (...)`: DuckDB probes a column's index for a list of parameters, while
    `IN (SELECT unnest(?))` or a join scans the whole table."""
    return ", ".join("?" * len(values))


def where_equal(**columns: Any) -> tuple[str, list[Any]]:
    """` WHERE a = ? AND b = ?` and its parameters for the columns given a value (None: no filter)."""
    given = {name: value for name, value in columns.items() if value is not None}
    sql = " WHERE " + " AND ".join(f"{name} = ?" for name in given) if given else ""
    return sql, [str(value) if isinstance(value, str) else value for value in given.values()]  # StrEnum: its value


def dict_rows(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def model_rows(cursor: duckdb.DuckDBPyConnection, model: type[BaseModel]) -> list[Any]:
    names = [d[0] for d in cursor.description]
    return [model.model_validate(dict(zip(names, row))) for row in cursor.fetchall()]


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: Any) -> Iterator[None]:
    """`table` visible to SQL as `name` for the block only, so a session's connection does not keep
    a whole batch's outcomes alive until it closes."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)
