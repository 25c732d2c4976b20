"""Store sessions: one lock and connection per unit of work, closed at its end; safe across processes,
kills, replaced files and forks."""

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from ocr_assets.store import RecordStore, StoreError

REPO = Path(__file__).resolve().parents[2]


def _lock_is_free(store: RecordStore) -> bool:
    """Whether another open file description could take the store's flock right now."""
    with open(store.path.with_name(store.path.name + ".lock"), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    from ocr_assets.store import session

    opened: list[Path] = []
    real_open = session.open_database

    def counting_open(path: Path) -> duckdb.DuckDBPyConnection:
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr("ocr_assets.store.core.open_database", counting_open)
    return opened


def test_calls_inside_a_session_share_one_connection_and_its_end_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    opened = _count_opens(monkeypatch)
    with store.session():
        for i in range(5):
            store.kv_set(f"k{i}", str(i))
        with RecordStore(store.path).session():  # a nested scope (another handle, same file) joins it
            assert store.kv_get("k4") == "4"
        assert not _lock_is_free(store)
    assert len(opened) == 1
    assert _lock_is_free(store)
    # Closed means checkpointed: a plain DuckDB connection sees every committed row.
    con = duckdb.connect(str(store.path))
    try:
        assert con.execute("SELECT count(*) FROM kv").fetchone()[0] == 5
    finally:
        con.close()


def test_a_call_outside_a_session_opens_and_closes_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    opened = _count_opens(monkeypatch)
    store.kv_set("a", "1")
    assert _lock_is_free(store)
    store.kv_set("b", "2")
    assert len(opened) == 2


def test_another_process_waits_for_a_session_and_then_sees_its_rows(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    store.init()
    with store.session():
        store.kv_set("mine", "1")
        waiter = subprocess.Popen(
            [sys.executable, "-c", (
                "import sys\n"
                "from ocr_assets.store import RecordStore\n"
                "s = RecordStore(sys.argv[1]); print(s.kv_get('mine'), s.kv_get('late'))\n"
            ), str(store.path)],
            stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        time.sleep(1.0)
        assert waiter.poll() is None  # blocked on the lock, not reading beside us
        store.kv_set("late", "2")
    out, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0
    assert out.split() == ["1", "2"]


def test_a_database_file_replaced_between_sessions_is_never_written_through_an_old_connection(
    tmp_path: Path,
) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    with store.session():
        store.kv_set("a", "1")
        with store.exclusive():  # file-level work under the lock, the connection closed
            store.path.unlink()
        store.kv_set("b", "2")  # a fresh file, migrated, in the same session
    con = duckdb.connect(str(store.path))
    try:
        assert con.execute("SELECT name FROM kv").fetchall() == [("b",)]
    finally:
        con.close()


def test_a_failed_transaction_rolls_back_and_drops_the_connection(tmp_path: Path, monkeypatch) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    opened = _count_opens(monkeypatch)
    with store.session():
        store.kv_set("a", "1")
        with pytest.raises(RuntimeError):
            with store.connect() as con:
                con.execute("INSERT INTO kv VALUES ('b', '2')")
                raise RuntimeError("boom")
        assert store.kv_get("b") is None and store.kv_get("a") == "1"
    assert len(opened) == 2  # not trusted after a failure: reopened for the next call


def test_a_process_killed_inside_a_session_loses_no_committed_row(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    child = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\n"
            "from ocr_assets.store import RecordStore\n"
            "s = RecordStore(sys.argv[1])\n"
            "with s.session():\n"
            "    for i in range(20): s.kv_set(f'k{i}', str(i))\n"
            "    print('committed', flush=True); time.sleep(3600)\n"
        ), str(db)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert child.stdout.readline().strip() == "committed"
        store = RecordStore(db)
        assert not _lock_is_free(store)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
    assert [store.kv_get(f"k{i}") for i in range(20)] == [str(i) for i in range(20)]


def test_a_child_forked_inside_a_session_refuses_that_store_and_the_parent_carries_on(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    with store.session():
        store.kv_set("a", "1")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                RecordStore(store.path).kv_get("a")
            except StoreError as exc:
                code = 0 if "forked inside a store session" in str(exc) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        store.kv_set("b", "2")
    assert (store.kv_get("a"), store.kv_get("b")) == ("1", "2")


def test_a_child_forked_outside_a_session_uses_the_store_itself(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    store.kv_set("parent", "1")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            RecordStore(store.path).kv_set("child", "1")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (store.kv_get("parent"), store.kv_get("child")) == ("1", "1")


def test_a_store_in_a_folder_whose_name_has_a_quote_opens(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "it's here" / "s.duckdb")  # the path is a SQL literal in ATTACH
    store.kv_set("a", "1")
    assert RecordStore(store.path).kv_get("a") == "1"
