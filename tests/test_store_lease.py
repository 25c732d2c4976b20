"""The store's connection lease: reused between close calls, handed back when idle, safe across
processes, forks, replaced files and kills."""

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from ocr_assets.store import RecordStore
from ocr_assets.store_lease import IDLE_S, MAX_HOLD_S, lease_for, release_all


@pytest.fixture(autouse=True)
def _no_leases_left():
    yield
    release_all()


def _lock_is_free(store: RecordStore) -> bool:
    """Whether another open file description could take the store's flock right now."""
    with open(store.path.with_name(store.path.name + ".lock"), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def _count_opens(store: RecordStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    opened: list[int] = []
    real_open = store._open

    def counting_open():
        opened.append(1)
        return real_open()

    monkeypatch.setattr(store, "_open", counting_open)
    return opened


def test_close_together_calls_share_one_connection_and_idle_hands_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    opened = _count_opens(store, monkeypatch)
    for i in range(5):
        store.kv_set(f"k{i}", str(i))
    assert len(opened) == 1
    assert not _lock_is_free(store)  # still leased right after the calls
    deadline = time.monotonic() + 5
    while not _lock_is_free(store):
        assert time.monotonic() < deadline, "the idle lease was never handed back"
        time.sleep(IDLE_S / 4)
    assert not lease_for(store.path).held
    # Handed back means closed and checkpointed: a plain DuckDB connection sees every committed row.
    con = duckdb.connect(str(store.path))
    try:
        assert con.execute("SELECT count(*) FROM kv").fetchone()[0] == 5
    finally:
        con.close()
    store.kv_set("k5", "5")
    assert len(opened) == 2  # reopened after the hand-back


def test_a_busy_process_hands_the_lock_back_within_max_hold(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    store.init()
    release_all()
    waiter = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\n"
            "from ocr_assets.store import RecordStore\n"
            "s = RecordStore(sys.argv[1]); time.sleep(0.3); t = time.monotonic(); s.kv_set('other', 'x')\n"
            "print(time.monotonic() - t)\n"
        ), str(store.path)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    try:
        end = time.monotonic() + 6 * MAX_HOLD_S + 3  # keep calling back to back, never idle
        i = 0
        while waiter.poll() is None and time.monotonic() < end:
            store.kv_set("mine", str(i))
            i += 1
        out, _ = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
    assert waiter.returncode == 0
    assert store.kv_get("other") == "x"
    # It waited for at most about one hold (plus its own open), not for our whole loop.
    assert float(out) < MAX_HOLD_S + 2.0


def test_a_replaced_database_file_is_never_written_through_the_old_connection(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    store.kv_set("a", "1")
    assert lease_for(store.path).held
    # Another actor (here this test, under the lock) removes the file while our lease is idle.
    with store.exclusive():
        store.path.unlink()
    store._schema_ready = False  # a fresh file needs the schema again, as a new RecordStore would
    store.kv_set("b", "2")
    release_all()
    con = duckdb.connect(str(store.path))
    try:
        assert con.execute("SELECT name FROM kv").fetchall() == [("b",)]
    finally:
        con.close()


def test_a_failed_transaction_rolls_back_and_drops_the_connection(tmp_path: Path, monkeypatch) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    opened = _count_opens(store, monkeypatch)
    store.kv_set("a", "1")
    with pytest.raises(RuntimeError):
        with store.connect() as con:
            con.execute("INSERT INTO kv VALUES ('b', '2')")
            raise RuntimeError("boom")
    assert not lease_for(store.path).held  # not trusted after a failure
    assert store.kv_get("b") is None and store.kv_get("a") == "1"
    assert len(opened) == 2


def test_a_forked_child_gets_its_own_connection_and_the_parent_carries_on(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    store.kv_set("parent", "1")
    assert lease_for(store.path).held
    pid = os.fork()  # hands the lease back first: DuckDB's instance cache must not reach the child
    if pid == 0:  # child: the parent's lease is not ours; this call must take the lock itself
        code = 1
        try:
            RecordStore(store.path).kv_set("child", "1")
            release_all()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.kv_set("parent2", "1")
    assert {store.kv_get(k) for k in ("parent", "child", "parent2")} == {"1"}


def test_a_process_killed_while_holding_a_lease_loses_no_committed_row(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    child = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\n"
            "from ocr_assets import store_lease\n"
            "store_lease.IDLE_S = 3600; store_lease.MAX_HOLD_S = 3600  # hold it until killed\n"
            "from ocr_assets.store import RecordStore\n"
            "s = RecordStore(sys.argv[1])\n"
            "for i in range(20): s.kv_set(f'k{i}', str(i))\n"
            "print('committed', flush=True); time.sleep(3600)\n"
        ), str(db)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
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



def test_a_child_forked_inside_a_store_call_refuses_that_store(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "s.duckdb")
    store.kv_set("a", "1")
    with store.connect():
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                RecordStore(store.path).kv_get("a")
            except RuntimeError as exc:
                code = 0 if "forked while the parent was inside a store call" in str(exc) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.kv_get("a") == "1"
