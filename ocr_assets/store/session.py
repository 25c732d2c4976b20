"""One unit of work on a store file: the exclusive file lock and one DuckDB connection, closed in `finally`.

DuckDB allows one read-write process per file and no readers beside it, while Dagster runs, the
daemon's sensors and the CLI are separate processes. So every access holds an exclusive `flock` on
`<db>.lock` around open-use-close (DESIGN.md has the measurement that rejected "retry on lock
error"). Opening (attaching the file to this process's in-memory DuckDB) costs a few ms and closing
(detaching it) checkpoints, so a unit of work (a sensor tick, a submit wave, one ingest) opens one
session and makes all its calls inside it; a call outside any session
opens a short one for itself. A process killed inside a session loses nothing: each transaction is
committed (WAL) before its call returns, and the OS drops the lock with the process.

A session belongs to the process that opened it: a child forked inside one would write through
its parent's copy of the attached file; it is refused and says so.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import duckdb
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from ocr_assets.store.models import StoreError
from ocr_assets.store.schema import migrate

# Skip extension auto-loading work the store never needs.
# Closing checkpoints, and each ingest transaction lands as its own small row group; vacuum would
# merge it into its neighbours at every checkpoint, recompressing them again and again (20k-record
# ingest bench: 11 s of checkpoints → 4 s without). The cost: deleted rows' space is not compacted.
_DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                  "max_vacuum_tasks": 0}

# Starting a DuckDB database costs ~13 ms of CPU (its catalog of built-in functions) even in memory,
# while attaching a file to a running one costs ~1 ms. So each process keeps one in-memory database
# and a session attaches the store file (taking DuckDB's file lock) and detaches it at the end
# (checkpoint, lock released), as closing a connection to the file did.
_ENGINE: tuple[int, duckdb.DuckDBPyConnection] | None = None
# A parent's, in a forked child: never closed (closing joins threads that were not forked along).
_INHERITED: list[duckdb.DuckDBPyConnection] = []
_ENGINE_GUARD = threading.Lock()
_ATTACHED = itertools.count(1)  # attachment aliases: store_1, store_2, ...


def _engine() -> duckdb.DuckDBPyConnection:
    """This process's in-memory DuckDB (a forked child starts its own)."""
    global _ENGINE
    with _ENGINE_GUARD:
        if _ENGINE is None or _ENGINE[0] != os.getpid():
            if _ENGINE is not None:
                _INHERITED.append(_ENGINE[1])
            _ENGINE = (os.getpid(), duckdb.connect(":memory:", config=_DUCKDB_CONFIG))
        return _ENGINE[1]


class _LockConflict(Exception):
    pass


def _is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflict" in text or "could not set lock" in text)


def sql_string(text: str | Path) -> str:
    """`text` as a SQL string literal, for statements that take no parameters (ATTACH, COPY ... TO)."""
    return "'" + str(text).replace("'", "''") + "'"


# Another program (a user's duckdb shell) may hold the file without our lock: retry briefly.
@retry(
    retry=retry_if_exception_type(_LockConflict),
    stop=stop_after_attempt(8),
    wait=wait_exponential_jitter(initial=0.05, max=2.0),
    reraise=True,
)
def _attach_retrying(con: duckdb.DuckDBPyConnection, path: Path, alias: str) -> None:
    try:
        con.execute(f"ATTACH {sql_string(path)} AS {alias}")
    except duckdb.IOException as exc:
        if _is_lock_conflict(exc):
            raise _LockConflict(str(exc)) from exc
        raise


def open_database(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the store file, with every migration applied.

    `close_database` ends it."""
    con = _engine().cursor()
    alias = f"store_{next(_ATTACHED)}"
    try:
        try:
            _attach_retrying(con, path, alias)
        except _LockConflict as exc:
            raise StoreError(f"record store {path} is locked by another program: {exc}") from None
        con.execute(f"USE {alias}")
        migrate(con)
    except BaseException:
        close_database(con, alias)
        raise
    return con


def close_database(con: duckdb.DuckDBPyConnection, alias: str | None = None) -> None:
    """Detach the store file (a checkpoint; DuckDB's file lock is released) and close the connection."""
    try:
        alias = alias or con.execute("SELECT current_database()").fetchone()[0]
        if alias.startswith("store_"):
            con.execute("USE memory")
            con.execute(f"DETACH DATABASE IF EXISTS {alias}")
    finally:
        con.close()


class FileSession:
    """This process's open session on one store file, shared by its threads while it lasts."""

    def __init__(self, path: Path):
        self.path = path
        self.pid = os.getpid()
        self.users = 0  # nested `session()` scopes (any thread) still inside
        self.opening = threading.Lock()
        self.transaction = threading.Lock()  # one transaction at a time on the shared connection
        self.con: duckdb.DuckDBPyConnection | None = None
        self._lock_file: IO[str] | None = None

    @property
    def locked(self) -> bool:
        return self._lock_file is not None

    def lock(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(self.path.with_name(self.path.name + ".lock"), "a+")  # noqa: SIM115 (held for the session)
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        except BaseException:
            lock_file.close()
            raise
        self._lock_file = lock_file

    def connection(self, open_: Callable[[Path], duckdb.DuckDBPyConnection]) -> duckdb.DuckDBPyConnection:
        if self.con is None:
            self.con = open_(self.path)
        return self.con

    def close_connection(self) -> None:
        con, self.con = self.con, None
        if con is not None:
            close_database(con)

    def close(self) -> None:
        """Close the connection (a checkpoint) and unlock the file."""
        try:
            self.close_connection()
        finally:
            lock_file, self._lock_file = self._lock_file, None
            if lock_file is not None:
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)
                finally:
                    lock_file.close()


_SESSIONS: dict[str, FileSession] = {}
_GUARD = threading.Lock()


@contextmanager
def file_session(path: Path) -> Iterator[FileSession]:
    """Hold the store file for the block: the first scope in this process locks, the last closes.

    Scopes nest (and other threads of this process join the open one), so a unit of work can wrap
    store calls that open scopes of their own without a second lock or connection.
    """
    key = str(path.resolve())
    with _GUARD:
        held = _SESSIONS.get(key)
        if held is not None and held.pid != os.getpid():
            raise StoreError(f"record store {path}: this process was forked inside a store session of its "
                             "parent; open the store in a process started afterwards")
        if held is None:
            held = _SESSIONS[key] = FileSession(Path(key))
        held.users += 1
    try:
        with held.opening:  # the flock may wait on another process: not under the registry's guard
            if not held.locked:
                held.lock()
        yield held
    finally:
        with _GUARD:
            held.users -= 1
            last = held.users == 0
            if last:
                del _SESSIONS[key]
        if last:
            held.close()


def copy_database_files(db: Path, target: Path) -> Path:
    """Copy a store file and a WAL a crash left; the caller holds the file with no connection open.

    Closing checkpoints, so with no connection open the file alone is consistent.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(db, target)
    wal = db.with_name(db.name + ".wal")
    if wal.exists():
        shutil.copy2(wal, target.with_name(target.name + ".wal"))
    return target
