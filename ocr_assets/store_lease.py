"""This process's hold on a store file: the exclusive file lock and the DuckDB connection behind it.

Every store call runs under an exclusive `flock` on `<db>.lock` (DuckDB allows one read-write
process per file). Opening DuckDB costs ~30 ms and closing checkpoints, which made a store call cost
~40 ms whatever it did; the Gemini run loop makes ~8 calls a tick. So the lock and the connection
are *leased*: kept after a call for `IDLE_S` in case another call follows, and handed back by a
reaper thread once idle, or at the end of the first call past `MAX_HOLD_S` so that other processes
(the Dagster daemon, a second CLI) wait at most about that long. A process killed while holding a
lease loses nothing: every transaction is committed (WAL) before its call returns, and the OS drops
the lock with the process.

Fork safety: DuckDB caches open database instances per process, so a child forked while a lease
is open would reach the parent's instance through that cache and write through a stale copy of it.
Leases are therefore handed back just before `os.fork()` (subprocesses, which exec, are not
affected); a child forked while the forking thread itself was inside a store call cannot use that
store and says so.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import duckdb

IDLE_S = 0.25  # hand back after this long without a call
MAX_HOLD_S = 0.5  # and at the end of the first call after holding this long


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class StoreLease:
    """The flock and the open connection of one store file, shared by this process's threads."""

    def __init__(self, path: Path):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.mutex = threading.Lock()  # one thread at a time uses the lease
        self.owner: int | None = None  # the thread inside a store call, if any
        self.unusable: str | None = None  # set in a child forked mid-call
        self._lock_file: IO[str] | None = None
        self._lock_identity: tuple[int, int] | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._db_identity: tuple[int, int] | None = None
        self._held_since = 0.0
        self.last_used = 0.0

    @property
    def held(self) -> bool:
        return self._lock_file is not None

    @contextmanager
    def use(self) -> Iterator[StoreLease]:
        """This thread's exclusive use of the lease for one store call."""
        if self.unusable:
            raise RuntimeError(self.unusable)
        with self.mutex:
            self.owner = threading.get_ident()
            try:
                yield self
            finally:
                self.owner = None

    def acquire(self) -> None:
        """Hold the file lock (blocking). Call with `mutex` held."""
        if self._lock_file is not None and _identity(self.lock_path) == self._lock_identity:
            return
        self.release()  # the lock file was replaced under us: our flock guards nothing any more
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(self.lock_path, "a+")  # noqa: SIM115 (held across calls)
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        except BaseException:
            lock_file.close()
            raise
        self._lock_file = lock_file
        self._lock_identity = _identity(self.lock_path)
        self._held_since = time.monotonic()

    def connection(self, open_: Callable[[], duckdb.DuckDBPyConnection]) -> duckdb.DuckDBPyConnection:
        """The leased connection, opened with `open_` when there is none."""
        if self._con is not None and _identity(self.path) != self._db_identity:
            self.close_connection()  # the file was deleted or replaced: never write into the old one
        if self._con is None:
            self._con = open_()
            self._db_identity = _identity(self.path)
        return self._con

    def close_connection(self) -> None:
        con, self._con, self._db_identity = self._con, None, None
        if con is not None:
            con.close()

    def release(self) -> None:
        """Close the connection (checkpoint) and unlock the file."""
        try:
            self.close_connection()
        finally:
            lock_file, self._lock_file, self._lock_identity = self._lock_file, None, None
            if lock_file is not None:
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)
                finally:
                    lock_file.close()

    def done(self, *, keep: bool) -> None:
        """End of a call: keep the lease for the next one, or hand it back now."""
        now = time.monotonic()
        self.last_used = now
        if not keep or now - self._held_since >= MAX_HOLD_S:
            self.release()
        else:
            _REAPER.wake()


_LEASES: dict[str, StoreLease] = {}
_LEASES_GUARD = threading.Lock()
_ORPHANS: list[StoreLease] = []


def lease_for(path: Path) -> StoreLease:
    key = str(path.resolve())
    with _LEASES_GUARD:
        lease = _LEASES.get(key)
        if lease is None:
            lease = _LEASES[key] = StoreLease(Path(key))
        return lease


class _Reaper:
    """One daemon thread that hands back leases idle for `IDLE_S`."""

    def __init__(self) -> None:
        self.wakeup = threading.Condition()
        self.thread: threading.Thread | None = None

    def wake(self) -> None:
        with self.wakeup:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="ocr-assets-store-lease", daemon=True)
                self.thread.start()
            self.wakeup.notify()

    def _run(self) -> None:
        while True:
            with _LEASES_GUARD:
                leases = list(_LEASES.values())
            now = time.monotonic()
            next_due: float | None = None
            for lease in leases:
                if not lease.held:
                    continue
                due = lease.last_used + IDLE_S
                if due > now:
                    next_due = due if next_due is None else min(next_due, due)
                elif lease.mutex.acquire(blocking=False):  # busy means in use: it reschedules itself
                    try:
                        if lease.held and time.monotonic() - lease.last_used >= IDLE_S:
                            lease.release()
                    finally:
                        lease.mutex.release()
            with self.wakeup:
                self.wakeup.wait(None if next_due is None else max(0.001, next_due - time.monotonic()))


_REAPER = _Reaper()


def release_all() -> None:
    """Hand back every lease of this process now (at exit, and for tests)."""
    with _LEASES_GUARD:
        leases = list(_LEASES.values())
    for lease in leases:
        with lease.mutex:
            lease.release()


_FORK_HELD: list[StoreLease] = []  # leases whose mutex the forking thread holds across the fork


def _before_fork() -> None:
    me = threading.get_ident()
    with _LEASES_GUARD:
        leases = list(_LEASES.values())
    for lease in leases:
        if lease.owner == me:  # forking from inside a store call: cannot hand back what is in use
            continue
        if lease.mutex.acquire(timeout=30):
            lease.release()
            _FORK_HELD.append(lease)


def _after_fork_in_parent() -> None:
    while _FORK_HELD:
        _FORK_HELD.pop().mutex.release()


def _after_fork_in_child() -> None:
    global _LEASES_GUARD, _REAPER
    released = {id(lease) for lease in _FORK_HELD}
    _FORK_HELD.clear()
    fresh: dict[str, StoreLease] = {}
    for key, old in _LEASES.items():
        lease = fresh[key] = StoreLease(old.path)
        if id(old) not in released and old.held:
            lease.unusable = (f"record store {old.path}: this process was forked while the parent was inside a "
                              "store call; open the store in a process started afterwards")
            _ORPHANS.append(old)  # never closed or collected here: the parent owns that connection
    _LEASES.clear()
    _LEASES.update(fresh)
    _LEASES_GUARD = threading.Lock()  # may have been held by another thread at fork time
    _REAPER = _Reaper()


atexit.register(release_all)
os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
