import multiprocessing as mp
import os
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from ocr_assets.store import (
    BatchState,
    BatchTransition,
    ClaimItem,
    PlannedRecord,
    RecordOutcome,
    RecordStatus,
    RecordStore,
)


def _chain_nodes(book: str, pages: int) -> list[PlannedRecord]:
    state, school, year = book.split(":")
    return [
        PlannedRecord(
            key=f"{book}:{p}", book=book, state=state, school=school, year=int(year), page=p,
            image_path=f"/img/{p}.jpg", allow_list_path=f"/allow/{p}.json",
            upstream_key=f"{book}:{p - 1}" if p > 1 else None, chain_remaining=pages - p,
        )
        for p in range(1, pages + 1)
    ]


def _items(keys: list[str]) -> list[ClaimItem]:
    return [ClaimItem(key=k, batch_index=i, prompt_name="page_ocr", prompt_version="v1.1", prompt_vars_hash="h")
            for i, k in enumerate(keys)]


def _ok(key: str) -> RecordOutcome:
    return RecordOutcome(key=key, success=True, output_path=f"/out/{key}.json", output_sha256="x",
                         engine="local", prompt_tokens=10, output_tokens=5, cost_usd=0.001)


def _fail(key: str, cls: str = "retryable", kind: str = "http_503") -> RecordOutcome:
    return RecordOutcome(key=key, success=False, error_class=cls, error_type=kind, message=f"{kind} happened",
                         raw_response='{"error": 503}', engine="local")


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    s = RecordStore(tmp_path / "store.duckdb", max_attempts=3)
    s.add_planned(_chain_nodes("CA:ucla:1900", 3) + _chain_nodes("NY:nyu:1901", 1))
    return s


def test_runnable_needs_a_successful_upstream(store: RecordStore) -> None:
    assert [r.key for r in store.runnable()] == ["CA:ucla:1900:1", "NY:nyu:1901:1"]
    store.claim("b1", _items(["CA:ucla:1900:1"]), engine="local", model="m")
    assert [r.key for r in store.runnable()] == ["NY:nyu:1901:1"]  # in flight is not runnable
    store.apply_outcomes("b1", [_ok("CA:ucla:1900:1")])
    assert [r.key for r in store.runnable()] == ["CA:ucla:1900:2", "NY:nyu:1901:1"]


def test_a_record_is_claimed_by_one_batch_only(store: RecordStore) -> None:
    assert store.claim("b1", _items(["NY:nyu:1901:1"]), engine="local", model="m") == ["NY:nyu:1901:1"]
    assert store.claim("b2", _items(["NY:nyu:1901:1"]), engine="local", model="m") == []
    row = store.get("NY:nyu:1901:1")
    assert (row.status, row.batch_id, row.batch_index, row.attempts) == (RecordStatus.RUNNING, "b1", 0, 1)


def test_success_never_goes_back_and_replayed_results_are_ignored(store: RecordStore) -> None:
    key = "NY:nyu:1901:1"
    store.claim("b1", _items([key]), engine="local", model="m")
    first = store.apply_outcomes("b1", [_ok(key)])
    assert first.succeeded == [key]
    again = store.apply_outcomes("b1", [_fail(key)])
    assert again.ignored == [key]
    assert store.get(key).status == RecordStatus.SUCCESS
    assert store.claim("b2", _items([key]), engine="local", model="m") == []
    assert store.release_batch("b1", error="late", error_type="x", count_failure=True,
                               state=BatchState.FAILED) == []
    assert store.get(key).status == RecordStatus.SUCCESS


def test_before_write_sees_only_the_records_it_will_apply_and_a_failure_there_changes_nothing(
    store: RecordStore,
) -> None:
    key, stale = "NY:nyu:1901:1", "CA:ucla:1900:1"  # `stale` was never claimed by b1
    store.claim("b1", _items([key]), engine="local", model="m")
    seen: list[list[str]] = []

    def disk_full(keys: list[str]) -> None:
        seen.append(keys)
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        store.apply_outcomes("b1", [_ok(key), _ok(stale)], before_write=disk_full)
    assert seen == [[key]]
    assert store.get(key).status == RecordStatus.RUNNING  # rolled back: still in flight, retried by the next ingest
    assert store.inferences(key=key) == [] and store.costs(key) == []
    summary = store.apply_outcomes("b1", [_ok(key), _ok(stale)], before_write=seen.append)
    assert seen[-1] == [key] and summary.ignored == [stale]
    assert store.get(key).status == RecordStatus.SUCCESS


def test_retryable_failures_count_attempts_then_become_fatal_and_block_the_chain(store: RecordStore) -> None:
    key = "CA:ucla:1900:1"
    for attempt in range(1, 4):
        assert store.claim(f"b{attempt}", _items([key]), engine="local", model="m") == [key]
        store.apply_outcomes(f"b{attempt}", [_fail(key)])
    row = store.get(key)
    assert row.status == RecordStatus.FATAL_FAILURE and row.attempts == 3
    assert "retries exhausted after 3 attempts" in row.last_error
    down = store.get("CA:ucla:1900:3")
    assert down.status == RecordStatus.BLOCKED and down.blocked_by == key
    assert len(store.failures(key)) == 3
    assert store.failures(key)[0]["raw_response"] == '{"error": 503}'


def test_fatal_failure_blocks_downstream_and_retry_unblocks_it(store: RecordStore) -> None:
    key = "CA:ucla:1900:1"
    store.claim("b1", _items([key]), engine="local", model="m")
    summary = store.apply_outcomes("b1", [_fail(key, "fatal", "safety_block")])
    assert summary.fatal == [key] and summary.blocked == 2
    assert store.reset_for_retry([key], reason="operator") == 1
    assert {r.key: r.status for r in store.records(book="CA:ucla:1900")} == {
        "CA:ucla:1900:1": RecordStatus.PENDING, "CA:ucla:1900:2": RecordStatus.PENDING,
        "CA:ucla:1900:3": RecordStatus.PENDING,
    }
    assert store.query("SELECT action FROM audit_log")[0]["action"] == "retry"


def test_a_failed_batch_returns_its_records_with_one_attempt_counted(store: RecordStore) -> None:
    keys = ["CA:ucla:1900:1", "NY:nyu:1901:1"]
    store.claim("b1", _items(keys), engine="gemini-batch", model="m", state=BatchState.SUBMITTING,
                count_attempt=False)
    store.mark_submitted("b1", "batches/123", count_attempt=True)
    released = store.release_batch("b1", error="batch FAILED", error_type="batch_failed", count_failure=True,
                                   state=BatchState.FAILED)
    assert sorted(released) == keys
    for key in keys:
        row = store.get(key)
        assert (row.status, row.attempts, row.batch_id) == (RecordStatus.RETRYABLE_FAILURE, 1, None)
    assert store.get_batch("batches/123").state == BatchState.FAILED


def test_a_refused_create_releases_records_without_an_attempt(store: RecordStore) -> None:
    key = "NY:nyu:1901:1"
    store.claim("b1", _items([key]), engine="gemini-batch", model="m", state=BatchState.SUBMITTING,
                count_attempt=False)
    store.release_batch("b1", error="429", error_type="rate_limited", count_failure=False,
                        state=BatchState.CANCELLED)
    row = store.get(key)
    assert (row.status, row.attempts) == (RecordStatus.PENDING, 0)
    assert store.failures(key) == []


def test_outcomes_write_cost_ledger_and_inference_log(store: RecordStore) -> None:
    key = "NY:nyu:1901:1"
    store.claim("b1", _items([key]), engine="local", model="m")
    store.apply_outcomes("b1", [_ok(key)])
    ledger = store.query("SELECT * FROM cost_ledger")
    assert ledger[0]["key"] == key and ledger[0]["prompt_tokens"] == 10
    log = store.query("SELECT * FROM inference_log")
    assert log[0]["success"] is True and log[0]["prompt_version"] == "v1.1" and log[0]["attempt"] == 1
    row = store.get(key)
    assert (row.prompt_tokens, row.output_tokens, row.cost_usd) == (10, 5, 0.001)


def test_a_mixed_batch_logs_every_column_in_bulk(store: RecordStore) -> None:
    ok, bad, stale = "NY:nyu:1901:1", "CA:ucla:1900:1", "CA:ucla:1900:2"
    store.claim("b1", _items([ok, bad]), engine="local", model="m")
    success = _ok(ok).model_copy(update={
        "rendered_prompt": "prompt 1", "previous_context": {"b": 2, "a": 1},
        "generation_config": {"temperature": 0}, "latency_s": 1.5, "prompt_template_hash": "t", "model": "m2",
        "realtime_cost_usd": 0.002, "worker": "gpu-host-3/node-a",
    })
    failure = _fail(bad).model_copy(update={"traceback": "Traceback: boom", "prompt_tokens": 7})
    summary = store.apply_outcomes("b1", [success, failure, _ok(stale), _fail(ok)])  # first per key wins
    assert (summary.succeeded, summary.retryable, summary.ignored) == ([ok], [bad], [stale])

    log = {r["key"]: r for r in store.query("SELECT * FROM inference_log")}
    assert set(log) == {ok, bad}
    assert {k: v for k, v in log[ok].items() if k not in ("id", "created_at")} == {
        "key": ok, "book": "NY:nyu:1901", "page": 1, "attempt": 1, "batch_id": "b1", "engine": "local",
        "model": "m2", "success": True, "prompt_name": "page_ocr", "prompt_version": "v1.1", "prompt_vars_hash": "h",
        "rendered_prompt": "prompt 1", "previous_context": '{"a": 1, "b": 2}', "generation_config": '{"temperature": 0}',
        "output_json": None, "output_path": f"/out/{ok}.json", "output_sha256": "x", "error_type": None, "error_message": None, "raw_response": None,
        "prompt_tokens": 10, "output_tokens": 5, "cached_tokens": 0, "cost_usd": 0.001, "latency_s": 1.5,
        "error_class": None, "traceback": None, "prompt_template_hash": "t", "worker": "gpu-host-3/node-a",
    }
    assert (log[bad]["success"], log[bad]["error_class"], log[bad]["error_type"], log[bad]["error_message"],
            log[bad]["raw_response"], log[bad]["traceback"]) == (
        False, "retryable", "http_503", "http_503 happened", '{"error": 503}', "Traceback: boom")
    [failed] = store.failures()
    assert (failed["key"], failed["attempt"], failed["batch_id"], failed["error_class"], failed["message"],
            failed["prompt_version"], failed["traceback"]) == (
        bad, 1, "b1", "retryable", "http_503 happened", "v1.1", "Traceback: boom")
    ledger = {r["key"]: r for r in store.query("SELECT * FROM cost_ledger")}
    assert (ledger[ok]["model"], ledger[ok]["realtime_cost_usd"], ledger[bad]["prompt_tokens"]) == ("m2", 0.002, 7)
    outcomes = store.query("SELECT key, outcome FROM batch_records ORDER BY key")
    assert outcomes == [{"key": bad, "outcome": "RETRYABLE_FAILURE"}, {"key": ok, "outcome": "SUCCESS"}]
    rows = store.get_many([ok, bad, stale])
    assert (rows[ok].model, rows[ok].output_path, rows[ok].batch_id, rows[ok].last_error) == (
        "m2", f"/out/{ok}.json", "b1", None)
    assert (rows[bad].model, rows[bad].batch_id, rows[bad].last_error, rows[bad].prompt_tokens) == (
        "m", None, "http_503 happened", 7)
    assert rows[stale].status == RecordStatus.PENDING and not rows[stale].upstream_done  # its upstream failed


def _batch(store: RecordStore, batch_id: str, key: str, state: BatchState) -> None:
    store.claim(batch_id, _items([key]), engine="gemini-batch", model="m", state=state)


def test_set_batch_states_moves_only_batches_still_in_the_state_their_caller_saw(store: RecordStore) -> None:
    _batch(store, "b1", "CA:ucla:1900:1", BatchState.PENDING)
    _batch(store, "b2", "NY:nyu:1901:1", BatchState.RUNNING)
    store.set_batch_state("b2", BatchState.CANCELLED)  # moved on (e.g. an operator cancelled it) after the poll read
    moved = store.set_batch_states([
        BatchTransition("b1", BatchState.PENDING, BatchState.SUCCEEDED),
        BatchTransition("b2", BatchState.RUNNING, BatchState.SUCCEEDED),
        BatchTransition("nope", BatchState.RUNNING, BatchState.SUCCEEDED),
    ])
    assert moved == ["b1"]
    assert (store.get_batch("b1").state, store.get_batch("b2").state) == (BatchState.SUCCEEDED, BatchState.CANCELLED)
    assert store.set_batch_states([BatchTransition("b1", BatchState.RUNNING, BatchState.INGESTED)]) == []
    assert store.set_batch_states([BatchTransition("b1", BatchState.SUCCEEDED, BatchState.INGESTED)]) == ["b1"]
    assert store.get_batch("b1").ingested_at is not None
    assert store.set_batch_states([]) == []


def test_set_batch_states_is_all_or_nothing(store: RecordStore, monkeypatch: pytest.MonkeyPatch) -> None:
    _batch(store, "b1", "CA:ucla:1900:1", BatchState.PENDING)
    _batch(store, "b2", "NY:nyu:1901:1", BatchState.PENDING)
    real_connect = RecordStore.connect

    @contextmanager
    def crash_once_b2_moved(self: RecordStore):
        """A process dying just before committing the transaction that moves b2."""
        with real_connect(self) as con:
            yield con
            if con.execute("SELECT state FROM batches WHERE batch_id = 'b2'").fetchone()[0] != "PENDING":
                raise RuntimeError("crash before commit")

    monkeypatch.setattr(RecordStore, "connect", crash_once_b2_moved)
    with pytest.raises(RuntimeError):
        store.set_batch_states([BatchTransition(b, BatchState.PENDING, BatchState.SUCCEEDED) for b in ("b1", "b2")])
    monkeypatch.undo()
    assert {store.get_batch(b).state for b in ("b1", "b2")} == {BatchState.PENDING}  # b1 did not move alone


def test_batch_keys_reads_many_batches_at_once(store: RecordStore) -> None:
    store.claim("b1", _items(["NY:nyu:1901:1", "CA:ucla:1900:1"]), engine="local", model="m")
    assert store.batch_keys(["b1", "nope"]) == {"b1": ["NY:nyu:1901:1", "CA:ucla:1900:1"], "nope": []}
    assert store.batch_keys([]) == {}


def test_unfinished_count_treats_exhausted_retries_as_terminal(store: RecordStore) -> None:
    assert store.unfinished_count() == 4
    assert store.unfinished_count(["NY:nyu:1901"]) == 1


# -- multi-process stress --------------------------------------------------------------------------

def _worker(path: str, worker: int, seconds: float, queue: mp.Queue) -> None:
    store = RecordStore(path, max_attempts=1000)
    claimed = succeeded = failed = 0
    errors: list[str] = []
    n = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            with store.session():  # one unit of work: pick, claim, apply under one hold of the lock
                runnable = store.runnable(8)
                if runnable:
                    n += 1
                    batch = f"w{worker}-{n}"
                    keys = store.claim(batch, _items([r.key for r in runnable]), engine="local", model="m")
                    claimed += len(keys)
                    outcomes = [(_fail(k) if (hash((k, n, worker)) % 4 == 0) else _ok(k)) for k in keys]
                    summary = store.apply_outcomes(batch, outcomes)
            if not runnable:
                time.sleep(0.01)
                continue
            succeeded += len(summary.succeeded)
            failed += len(summary.retryable)
            if summary.ignored:
                errors.append(f"ignored {summary.ignored}")
    except Exception as exc:  # surfaced to the parent: the assertion is that there are none
        errors.append(repr(exc))
    queue.put({"worker": worker, "claimed": claimed, "succeeded": succeeded, "failed": failed, "errors": errors})


def test_four_processes_hammering_the_store_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    seconds = float(os.environ.get("STORE_STRESS_SECONDS", "30"))
    path = tmp_path / "stress.duckdb"
    store = RecordStore(path, max_attempts=1000)
    nodes = [n for b in range(60) for n in _chain_nodes(f"CA:s{b}:1900", 40)]
    store.add_planned(nodes)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(path), i, seconds, queue)) for i in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(not r["errors"] for r in results), [r["errors"] for r in results]
    claimed = sum(r["claimed"] for r in results)
    succeeded = sum(r["succeeded"] for r in results)
    failed = sum(r["failed"] for r in results)
    assert claimed > 100, "the workers made too little progress to prove anything"
    assert claimed == succeeded + failed
    db = store.query(
        "SELECT (SELECT count(*) FROM records WHERE status = 'SUCCESS') AS s,"
        " (SELECT count(*) FROM batch_records) AS claims,"
        " (SELECT count(*) FROM failure_log) AS f,"
        " (SELECT count(*) FROM records WHERE status = 'RUNNING') AS running,"
        " (SELECT sum(attempts) FROM records) AS attempts"
    )[0]
    assert db == {"s": succeeded, "claims": claimed, "f": failed, "running": 0, "attempts": claimed}
    # every attempt of a record happened in its own batch, in order: no record was in two batches at once
    dup = store.query("SELECT key, count(*) n, count(DISTINCT attempt) d FROM batch_records GROUP BY key HAVING n <> d")
    assert dup == []
    order = store.query(
        "SELECT count(*) AS bad FROM records r JOIN records u ON r.upstream_key = u.key "
        "WHERE r.status = 'SUCCESS' AND u.status <> 'SUCCESS'"
    )[0]
    assert order["bad"] == 0


def test_runnable_order_is_chain_priority_then_book_then_page(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "order.duckdb")
    # Several chains of equal length, planned in an order that is neither book nor page order,
    # plus standalone pages (gaps start new chains) of equal, lower priority.
    books = ["NY:zeta:1900", "CA:alpha:1900", "NY:beta:1901", "CA:alpha:1899"]
    nodes = [n for book in books for n in reversed(_chain_nodes(book, 3))]
    state, school, year = "TX:solo:1900".split(":")
    nodes += [PlannedRecord(key=f"TX:solo:1900:{p}", book="TX:solo:1900", state=state, school=school,
                            year=int(year), page=p, image_path="i", allow_list_path="a") for p in (9, 3, 5)]
    store.add_planned(nodes)
    picked = [r.key for r in store.runnable(7, require_upstream=False)]
    assert picked == [
        "CA:alpha:1899:1", "CA:alpha:1900:1", "NY:beta:1901:1", "NY:zeta:1900:1",  # chain_remaining 2
        "CA:alpha:1899:2", "CA:alpha:1900:2", "NY:beta:1901:2",  # then 1, book order
    ]
    assert [r.key for r in store.runnable(100)][-3:] == ["TX:solo:1900:3", "TX:solo:1900:5", "TX:solo:1900:9"]
    assert [r.key for r in store.runnable(100)] == [r.key for r in store.runnable(100)]  # stable across calls


def test_claim_and_apply_touch_only_the_batch_and_its_downstream_pages(store: RecordStore) -> None:
    store.claim("b1", _items(["CA:ucla:1900:1", "NY:nyu:1901:1"]), engine="local", model="m")
    before = {r.key: r.updated_at for r in store.records()}
    store.apply_outcomes("b1", [_ok("CA:ucla:1900:1"), _fail("NY:nyu:1901:1", cls="fatal")])
    after = {r.key: r for r in store.records()}
    changed = {k for k, r in after.items() if r.updated_at != before[k]}
    assert changed == {"CA:ucla:1900:1", "NY:nyu:1901:1"}
    assert after["CA:ucla:1900:2"].upstream_done and not after["CA:ucla:1900:3"].upstream_done
