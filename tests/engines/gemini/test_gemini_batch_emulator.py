"""The batch engine and its orchestration against the emulator, through the real google-genai SDK."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ocr_assets.engines.gemini.batch import GeminiBatchClient
from ocr_assets.engines.gemini.client import make_client
from ocr_assets.engines.gemini.ingest import ingest_batch
from ocr_assets.engines.gemini.lifecycle import ENGINE
from ocr_assets.engines.gemini.poll import poll_active, stuck_batches
from ocr_assets.engines.gemini.recovery import recover_submitting
from ocr_assets.engines.gemini.runner import cancel_batch, run_batches
from ocr_assets.engines.gemini.submit import submit_wave
from ocr_assets.pipeline import Pipeline
from ocr_assets.plan import build_plan
from ocr_assets.store import BatchState, ClaimItem, RecordStatus
from tests.fixtures.corpus import settings_for, write_book

SENTINEL = "AIzaSENTINEL-do-not-leak-0123456789abcdefXYZ"
FAST = dict(gemini__retry_initial_wait_s=0, gemini__retry_max_wait_s=0, gemini__hold_backoff_s=0,
            execution__poll_interval_seconds=0.05)


def make_pipeline(tmp_path: Path, monkeypatch, server, books: dict[str, list[int]], **overrides):
    for book, pages in books.items():
        write_book(tmp_path, book, images=pages, allow=pages)
    monkeypatch.setenv("GEMINI_API_KEY", SENTINEL)
    settings = settings_for(tmp_path, gemini__base_url=server.url, **{**FAST, **overrides})
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    return pipeline, GeminiBatchClient(settings, make_client(settings), store=pipeline.store)


def wait_finished(pipeline, client, *, timeout: float = 20.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = poll_active(pipeline, client)
        if finished:
            return finished
        time.sleep(0.05)
    raise AssertionError("no batch finished in time")


def test_submit_poll_fetch_claims_before_create_and_ingests_by_key(tmp_path, monkeypatch, gemini_emulator):
    server = gemini_emulator(faults={"shuffle_results": True, "seed": 3})
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1, 2, 3, 7],
                                                                     "ca:beta:1910": [4, 5]})
    store = pipeline.store
    report = submit_wave(pipeline, client)
    assert len(report.batches) == 1 and report.records == 3  # chain heads only: 1, 7 and 4
    batch = store.get_batch(report.batches[0])
    assert batch.state == BatchState.PENDING and batch.remote_name.startswith("batches/")
    assert batch.estimated_tokens > 0
    members = store.batch_members(batch.batch_id)
    assert members[0][0] == "ny:alpha:1900:1"  # the longest remaining chain goes first
    assert {k for k, _, _ in members} == {"ny:alpha:1900:1", "ny:alpha:1900:7", "ca:beta:1910:4"}
    assert [(i, a) for _, i, a in members] == [(0, 1), (1, 1), (2, 1)]
    running = store.records(status=RecordStatus.RUNNING)
    assert {r.key: (r.batch_id, r.batch_index, r.attempts) for r in running} == {
        k: (batch.batch_id, i, 1) for k, i, _ in members}

    finished = wait_finished(pipeline, client)
    assert [b.batch_id for b in finished] == [batch.batch_id]
    result = ingest_batch(pipeline, client, batch.batch_id)
    assert (result.succeeded, result.retryable, result.fatal) == (3, 0, 0)
    assert result.integrity.missing_count == 0 and result.integrity.result_fraction == 1.0
    stored = store.get_batch(batch.batch_id)
    assert stored.state == BatchState.INGESTED
    assert json.loads(stored.detail)["integrity"]["parsed"] == 3
    archive = Path(result.integrity.archive_path)
    assert archive.exists() and gzip.decompress(archive.read_bytes()).count(b"\n") == 3
    for key in ("ny:alpha:1900:1", "ny:alpha:1900:7", "ca:beta:1910:4"):
        record = store.get(key)
        assert record.status == RecordStatus.SUCCESS and record.engine == ENGINE and record.cost_usd > 0
        text = Path(record.output_path).read_text()
        assert f"page {record.page}" in text  # the echo names the record's own page: joined by key
    ledger = store.query("SELECT pricing_mode, sum(cost_usd) AS c, sum(realtime_cost_usd) AS r "
                         "FROM cost_ledger GROUP BY 1")
    assert ledger[0]["pricing_mode"] == "batch" and ledger[0]["c"] == pytest.approx(ledger[0]["r"] / 2)
    # the next wave: pages whose upstream succeeded, with the upstream's output as context
    wave = submit_wave(pipeline, client)
    assert wave.records == 2
    assert {r.key for r in store.records(status=RecordStatus.RUNNING)} == {"ny:alpha:1900:2", "ca:beta:1910:5"}


def test_end_to_end_with_faults_and_a_failed_batch_every_record_terminal(tmp_path, monkeypatch, gemini_emulator,
                                                                          caplog):
    caplog.set_level(logging.DEBUG)
    faults = {"seed": 11, "error_429": 0.02, "error_500": 0.02, "malformed_json": 0.02, "truncated": 0.02,
              "safety": 0.03, "recitation": 0.01, "missing_line": 0.02, "duplicate_line": 0.02,
              "unknown_key": 0.02, "shuffle_results": True, "fail_batches": [2]}
    server = gemini_emulator(faults=faults)
    books = {"ny:alpha:1900": list(range(1, 9)), "ca:beta:1910": [1, 2, 3, 5, 6], "tx:gamma:1920": [2, 3, 4]}
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, books, execution__max_attempts=4)
    store = pipeline.store
    summary = run_batches(pipeline, client, poll_interval=0.05, timeout_s=120)
    assert summary.stopped == "done", summary
    records = {r.key: r for r in store.records()}
    assert len(records) == 16
    terminal = {RecordStatus.SUCCESS, RecordStatus.FATAL_FAILURE, RecordStatus.BLOCKED}
    assert all(r.status in terminal for r in records.values()), {k: r.status for k, r in records.items()}
    assert any(r.status == RecordStatus.SUCCESS for r in records.values())
    for r in records.values():
        if r.status == RecordStatus.FATAL_FAILURE:
            assert r.error_type in {"safety_block", "image_unreadable"} or r.last_error.startswith(
                "retries exhausted"), r
        if r.status == RecordStatus.BLOCKED:
            assert r.blocked_by
    assert store.batches(states=[BatchState.FAILED])  # the injected failed batch was released, not lost

    log = sorted(server.state.request_log, key=lambda e: e.seq)
    remote_of = {b.batch_id: b.remote_name for b in store.batches()}
    first_request = {}
    for entry in log:
        first_request.setdefault(entry.key, entry)
    for key, record in records.items():
        entries = [e for e in log if e.key == key]
        assert len(entries) <= record.attempts  # an attempt is counted for every request sent
        if record.status == RecordStatus.SUCCESS:
            # never resent after its success: its last request is the one in the batch that succeeded
            assert entries[-1].batch == remote_of[record.batch_id]
        if record.upstream_key and key in first_request:
            upstream = records[record.upstream_key]
            upstream_ok = [e for e in log if e.key == record.upstream_key
                           and e.batch == remote_of.get(upstream.batch_id)]
            assert upstream.status == RecordStatus.SUCCESS
            assert first_request[key].seq > upstream_ok[-1].seq  # only after the upstream succeeded
            up_page = int(record.upstream_key.rsplit(":", 1)[1])
            assert all(f", page {up_page}" in e.prompt.split("Context from the previous page")[1]
                       for e in entries)  # the upstream's output is in the prompt
    # integrity reports counted what the faults did
    details = [json.loads(b.detail) for b in store.batches() if b.detail and b.engine == ENGINE]
    integrity = [d["integrity"] for d in details if "integrity" in d]
    assert sum(i["duplicate_count"] for i in integrity) + sum(i["unknown_count"] for i in integrity) > 0

    # the key never leaves the process: not in the DB, archives, outputs or logs
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            assert SENTINEL.encode() not in data, path
    assert SENTINEL not in caplog.text


def test_a_429_on_create_holds_the_batch_and_costs_no_attempt(tmp_path, monkeypatch, gemini_emulator):
    server = gemini_emulator(faults={"endpoint_429": 1.0, "endpoint_routes": ["batches.create"]})
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1, 2]})
    store = pipeline.store
    first = submit_wave(pipeline, client)
    assert first.batches == [] and len(first.held) == 1
    held = store.get_batch(first.held[0])
    assert held.state == BatchState.HELD and held.remote_name is None
    record = store.get("ny:alpha:1900:1")
    assert (record.status, record.attempts, record.batch_id) == (RecordStatus.RUNNING, 0, held.batch_id)
    again = submit_wave(pipeline, client)  # still refused: still held, still no attempt
    assert again.held == [held.batch_id] and store.get("ny:alpha:1900:1").attempts == 0
    assert json.loads(store.get_batch(held.batch_id).detail)["holds"] == 2

    server.state.update_config({"faults": {"endpoint_429": 0.0}})
    summary = run_batches(pipeline, client, poll_interval=0.05, timeout_s=60)
    assert summary.stopped == "done" and held.batch_id in summary.submitted
    assert {r.key: (r.status, r.attempts) for r in store.records()} == {
        "ny:alpha:1900:1": (RecordStatus.SUCCESS, 1), "ny:alpha:1900:2": (RecordStatus.SUCCESS, 1)}
    assert store.failures() == []


def test_ingest_is_idempotent_and_replay_from_the_archive_is_byte_identical(tmp_path, monkeypatch,
                                                                              gemini_emulator):
    server = gemini_emulator(faults={"shuffle_results": True, "seed": 5, "malformed_json": 0.3})
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1, 3, 5, 7, 9, 11]})
    store = pipeline.store
    batch_id = submit_wave(pipeline, client).batches[0]
    wait_finished(pipeline, client)
    db = Path(pipeline.settings.paths.database)
    snapshot = store.copy_to(tmp_path / "before_ingest.duckdb")

    first = ingest_batch(pipeline, client, batch_id)
    assert first.succeeded + first.retryable == 6 and first.retryable > 0
    outputs = {p: p.read_bytes() for p in Path(pipeline.settings.paths.output_root).rglob("*.json")}
    written_at = {p: p.stat().st_mtime_ns for p in outputs}
    states = {r.key: (r.status, r.attempts, r.output_sha256) for r in store.records()}
    ledger = store.query("SELECT count(*) AS n FROM cost_ledger")[0]["n"]

    second = ingest_batch(pipeline, client, batch_id)  # again: nothing changes
    assert second.succeeded == second.retryable == 0 and second.ignored == 6  # replayed: reported, not applied
    assert {r.key: (r.status, r.attempts, r.output_sha256) for r in store.records()} == states
    assert store.query("SELECT count(*) AS n FROM cost_ledger")[0]["n"] == ledger
    assert {p: p.stat().st_mtime_ns for p in outputs} == written_at  # no output rewritten

    # replay without the API: the DB as it was before ingest, outputs gone, emulator stopped
    server.stop()
    with store.exclusive():  # file-level work on a store goes under its lock, with no connection open
        shutil.copy(snapshot, db)
    for path in outputs:
        path.unlink()
    replay = ingest_batch(Pipeline(pipeline.settings), client, batch_id, from_archive=True)
    assert (replay.succeeded, replay.retryable) == (first.succeeded, first.retryable)
    assert replay.integrity.archive_sha256 == first.integrity.archive_sha256
    assert {p: p.read_bytes() for p in Path(pipeline.settings.paths.output_root).rglob("*.json")} == outputs
    assert {r.key: (r.status, r.attempts, r.output_sha256) for r in store.records()} == states


def test_expired_and_failed_batches_keep_partial_output_and_release_the_rest(tmp_path, monkeypatch,
                                                                             gemini_emulator):
    server = gemini_emulator(faults={"expire_batches": [1], "fail_batches": [2], "expired_keep_fraction": 0.5,
                                     "seed": 2})
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1, 3, 5, 7, 9, 11, 13, 15]},
                                     execution__batch_size_limit=4, execution__max_concurrent_batches=2)
    store = pipeline.store
    expired_id, failed_id = submit_wave(pipeline, client).batches
    import time

    deadline = time.monotonic() + 20
    finished = []
    while len(finished) < 2 and time.monotonic() < deadline:
        finished = poll_active(pipeline, client)
        time.sleep(0.05)
    expired = ingest_batch(pipeline, client, expired_id)
    assert expired.remote_state == "EXPIRED"
    assert expired.succeeded + expired.released == 4 and 0 < expired.succeeded < 4
    failed = ingest_batch(pipeline, client, failed_id)
    assert (failed.remote_state, failed.released, failed.succeeded) == ("FAILED", 4, 0)
    assert store.get_batch(failed_id).state == BatchState.FAILED
    retry = [r for r in store.records() if r.status == RecordStatus.RETRYABLE_FAILURE]
    assert len(retry) == 8 - expired.succeeded and all(r.attempts == 1 and r.batch_id is None for r in retry)
    assert {r.error_type for r in retry} == {"batch_expired", "batch_failed"}
    assert poll_active(pipeline, client) == []  # settled: not offered for ingest again


def test_a_stuck_batch_is_reported_and_cancel_returns_its_records_to_retry(tmp_path, monkeypatch,
                                                                           gemini_emulator):
    server = gemini_emulator(faults={"stuck_batches": [1]})
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1, 3]})
    store = pipeline.store
    batch_id = submit_wave(pipeline, client).batches[0]
    assert poll_active(pipeline, client) == []
    assert [b.batch_id for b in stuck_batches(pipeline, hours=0)] == [batch_id]
    assert stuck_batches(pipeline) == []
    released = cancel_batch(pipeline, client, batch_id)
    assert sorted(released) == ["ny:alpha:1900:1", "ny:alpha:1900:3"]
    assert store.get_batch(batch_id).state == BatchState.CANCELLED
    assert {r.status for r in store.records()} == {RecordStatus.RETRYABLE_FAILURE}
    assert client.poll(store.get_batch(batch_id).remote_name).state == BatchState.CANCELLED
    assert len(store.runnable()) == 2


def test_a_crashed_submit_is_adopted_when_the_job_exists_and_released_when_not(tmp_path, monkeypatch,
                                                                               gemini_emulator):
    server = gemini_emulator()
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1, 3]})
    store = pipeline.store
    items = [ClaimItem(key=k, batch_index=i, prompt_name="page_ocr", prompt_version="v1.1", prompt_vars_hash="h")
             for i, k in enumerate(["ny:alpha:1900:1", "ny:alpha:1900:3"])]
    dead = "nohost-crashed:1"
    store.claim("gb-lost", items[:1], engine=ENGINE, model="gemini-2.5-flash", state=BatchState.SUBMITTING,
                count_attempt=False, owner=dead)
    store.claim("gb-made", items[1:], engine=ENGINE, model="gemini-2.5-flash", state=BatchState.SUBMITTING,
                count_attempt=False, owner=dead)
    requests, _ = pipeline.build_requests(store.records(batch_id="gb-made"))
    lines, _ = client.encode(requests)
    client.submit(lines, "gb-made")  # the create happened, then the process died

    report = recover_submitting(pipeline, client, grace_s=0)
    assert (report.adopted, report.released) == (["gb-made"], ["gb-lost"])
    lost = store.get("ny:alpha:1900:1")
    assert (lost.status, lost.attempts, lost.batch_id) == (RecordStatus.PENDING, 0, None)
    made = store.get("ny:alpha:1900:3")
    assert (made.status, made.attempts, made.batch_id) == (RecordStatus.RUNNING, 1, "gb-made")
    assert store.get_batch("gb-made").remote_name.startswith("batches/")


def test_run_batch_stops_with_a_clear_error_when_a_submitting_lookup_keeps_failing_and_resends_nothing(
    tmp_path, monkeypatch, gemini_emulator
):
    from ocr_assets.engines.gemini.runner import BatchRunStopped, run_batches

    server = gemini_emulator()
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1]},
                                     gemini__transport_retries=2)
    store = pipeline.store
    item = ClaimItem(key="ny:alpha:1900:1", batch_index=0, prompt_name="page_ocr", prompt_version="v1.1",
                     prompt_vars_hash="h")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process of this host that has ended: the submit's owner died mid-create
    store.claim("gb-crashed", [item], engine=ENGINE, model="gemini-2.5-flash", state=BatchState.SUBMITTING,
                count_attempt=False, owner=f"{socket.gethostname()}:{gone.pid}")
    server.state.update_config({"faults": {"endpoint_503": 1.0, "endpoint_routes": ["batches.list"]}})
    with pytest.raises(BatchRunStopped, match="gb-crashed.*stay claimed"):
        run_batches(pipeline, client, poll_interval=0.01, timeout_s=20)
    assert store.get_batch("gb-crashed").state == BatchState.SUBMITTING  # left for a later run
    assert store.get("ny:alpha:1900:1").batch_id == "gb-crashed"
    assert server.state.request_log == [] and server.batches.summaries() == []  # nothing (re)sent

    server.state.update_config({"faults": {"endpoint_503": 0.0, "endpoint_routes": []}})
    run_batches(pipeline, client, poll_interval=0.01, timeout_s=20)  # the API is back: recovered, then run
    assert store.get("ny:alpha:1900:1").status == RecordStatus.SUCCESS


def test_waves_are_sharded_under_the_jsonl_size_cap(tmp_path, monkeypatch, gemini_emulator):
    server = gemini_emulator()
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1, 3, 5, 7, 9]},
                                     gemini__max_jsonl_bytes=6000)
    report = submit_wave(pipeline, client)
    assert len(report.batches) >= 2 and report.records == 5
    for batch_id in report.batches:
        detail = json.loads(pipeline.store.get_batch(batch_id).detail)
        assert detail["jsonl_bytes"] <= 6000


def test_enqueued_tokens_stay_under_the_budget(tmp_path, monkeypatch, gemini_emulator):
    server = gemini_emulator(batch_latency_s=5)
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1, 3, 5, 7, 9, 11]},
                                     gemini__max_enqueued_tokens=1500, execution__batch_size_limit=2)
    store = pipeline.store
    first = submit_wave(pipeline, client)
    active = store.active_batches()
    assert first.records >= 1 and sum(b.estimated_tokens for b in active) <= 1500
    second = submit_wave(pipeline, client)
    assert second.batches == [] and "budget" in (second.skipped or "")


def test_file_api_references_are_reused_for_a_retried_record(tmp_path, monkeypatch, gemini_emulator):
    server = gemini_emulator(faults={"error_500": 1.0})
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1]},
                                     gemini__inline_images=False)
    first = submit_wave(pipeline, client).batches[0]
    wait_finished(pipeline, client)
    assert ingest_batch(pipeline, client, first).retryable == 1
    submit_wave(pipeline, client)
    wait_finished(pipeline, client)
    log = [e for e in server.state.request_log if e.key == "ny:alpha:1900:1"]
    assert len(log) == 2 and log[0].image_digest == log[1].image_digest and log[0].images == 1
    files = pipeline.store.query("SELECT value FROM kv WHERE name LIKE 'gemini:file:%'")
    assert len(files) == 1  # one upload served both attempts
    assert 0 < client.file_storage_used() <= 10_000


def test_a_low_result_fraction_raises_an_alert(tmp_path, monkeypatch, gemini_emulator):
    server = gemini_emulator(faults={"missing_line": 0.6, "seed": 1})
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1, 3, 5, 7, 9]})
    batch_id = submit_wave(pipeline, client).batches[0]
    wait_finished(pipeline, client)
    report = ingest_batch(pipeline, client, batch_id)
    assert report.alert and "missing" in report.alert
    assert report.retryable == report.integrity.missing_count > 0
    missing = [r for r in pipeline.store.records() if r.error_type == "missing_result"]
    assert len(missing) == report.integrity.missing_count


def test_api_errors_surface_without_the_key(tmp_path, monkeypatch, gemini_emulator):
    server = gemini_emulator()
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, {"ny:alpha:1900": [1]})
    with pytest.raises(Exception) as caught:
        client.poll("batches/doesnotexist")
    assert "404" in str(caught.value) and SENTINEL not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None or SENTINEL not in repr(
        caught.value.__context__)


@pytest.mark.parametrize(("budget_factor", "batch_size"), [(1.0, 3), (1.5, 1)], ids=["budget=cap", "budget>cap"])
def test_the_token_cap_is_never_exceeded_stays_90pct_full_and_429s_cost_no_attempts(
        tmp_path, monkeypatch, gemini_emulator, budget_factor, batch_size):
    """Emulator cap ≈ 10 of 21 independent pages (two full waves, then one page). `budget=cap`: our
    metering packs the queue; `budget>cap` (quota shared with another job, say): the emulator refuses
    creates with 429, which hold the batch without counting an attempt, and the realistic hold backoff
    must not idle the queue once batches of ours have finished."""
    latency = 600.0
    server = gemini_emulator(batch_latency_s=latency)
    books = {f"s{i:02d}:school:1900": [1] for i in range(21)}  # equal-length prompts
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, books)
    lines, _ = client.encode(pipeline.build_requests(pipeline.store.runnable(100))[0])
    cap = int(10.5 * max(line.raw_tokens for line in lines))  # one page (or a one-page batch) < 10% of it
    server.state.update_config({"max_enqueued_tokens": cap})
    settings = settings_for(tmp_path, gemini__base_url=server.url, **{
        **FAST, "gemini__max_enqueued_tokens": int(cap * budget_factor), "gemini__hold_backoff_s": 60,
        "execution__batch_size_limit": batch_size, "execution__max_concurrent_batches": 16})
    pipeline = Pipeline(settings)
    client = GeminiBatchClient(settings, make_client(settings), store=pipeline.store)

    levels: list[tuple[int, int]] = []  # (last emulator event, tokens enqueued) as each tick ends

    def on_tick(progress) -> None:
        events = server.state.events
        levels.append((events[-1].seq, events[-1].enqueued_tokens) if events else (0, 0))
        server.advance_clock(latency)  # what is in flight finishes before the next tick polls

    summary = run_batches(pipeline, client, poll_interval=0.01, on_progress=on_tick, timeout_s=120)
    assert summary.stopped == "done", summary
    assert summary.elapsed_s < 60  # no held batch sat out its 60 s backoff while ours had finished
    events = server.state.events
    assert max(e.enqueued_tokens for e in events) <= cap
    created = [(e.seq, e.tokens) for e in events if e.event == "created"]
    total = sum(tokens for _, tokens in created)
    waiting = 0
    for seq, level in levels:
        unsent = total - sum(tokens for s, tokens in created if s <= seq)
        if unsent > 0:  # work remains that is not in flight: the queue must be (nearly) full
            waiting += 1
            assert level >= 0.9 * cap, (level, cap, levels)
    assert waiting >= 2
    rejected = [e for e in events if e.event == "rejected"]
    assert bool(rejected) == (budget_factor > 1)
    records = pipeline.store.records()
    assert {(r.status, r.attempts) for r in records} == {(RecordStatus.SUCCESS, 1)}
    # every page reached inference exactly once: a refused create sent nothing and cost nothing
    assert sorted(e.key for e in server.state.request_log) == sorted(r.key for r in records)


def test_the_ledger_bills_batch_at_half_the_realtime_cost_of_the_same_tokens_and_less_with_a_cache(
        tmp_path, monkeypatch, gemini_emulator):
    from google.genai import types

    from ocr_assets.engines.factory import drive

    server = gemini_emulator()
    books = {f"s{i}:school:1900": [1] for i in range(3)}

    def ledger(mode: str, engine: str = "gemini-batch", **overrides) -> dict[str, dict]:
        pipeline, _ = make_pipeline(tmp_path / mode, monkeypatch, server, books, engine=engine, **overrides)
        assert drive(pipeline).succeeded == len(books)
        rows = pipeline.store.query("SELECT * FROM cost_ledger")
        assert {r["engine"] for r in rows} == {engine} and len(rows) == len(books)
        return {r["key"]: r for r in rows}

    batch = ledger("batch")
    realtime = ledger("realtime", "gemini-realtime")
    for key, row in batch.items():
        tokens = ("prompt_tokens", "output_tokens", "cached_tokens")
        assert [row[t] for t in tokens] == [realtime[key][t] for t in tokens]  # the same tokens billed
        assert (row["pricing_mode"], realtime[key]["pricing_mode"]) == ("batch", "realtime")
        assert row["cost_usd"] > 0 and row["cost_usd"] == pytest.approx(realtime[key]["cost_usd"] * 0.5)

    settings = settings_for(tmp_path / "cache", gemini__base_url=server.url)
    sdk = make_client(settings)  # the pipeline's key: a cache belongs to the key that created it
    cache = sdk.caches.create(model=settings.model.name, config=types.CreateCachedContentConfig(
        contents=[types.Content(role="user", parts=[types.Part.from_text(text="Transcribe exactly. " * 200)])]))
    cached = ledger("cache", gemini__cached_content=cache.name)
    model = settings.model
    for key, row in cached.items():
        assert row["cached_tokens"] == 1000 and row["prompt_tokens"] == batch[key]["prompt_tokens"] + 1000
        uncached_batch = (row["prompt_tokens"] * model.input_price_per_mtok
                          + row["output_tokens"] * model.output_price_per_mtok) * model.batch_discount / 1e6
        assert row["cost_usd"] < uncached_batch  # the cached prefix is billed at the cache price


def test_one_poll_tick_asks_for_every_active_batch_at_once_and_records_each_state(tmp_path, monkeypatch,
                                                                                 gemini_emulator):
    import time

    server = gemini_emulator(batch_latency_s=0.3, faults={"slow_poll_rate": 1.0, "slow_poll_s": 0.3})
    books = {f"ny:school{i}:1900": [1] for i in range(6)}
    pipeline, client = make_pipeline(tmp_path, monkeypatch, server, books, execution__batch_size_limit=1,
                                     execution__max_concurrent_batches=6, gemini__poll_concurrency=4)
    submitted = submit_wave(pipeline, client).batches
    assert len(submitted) == 6
    calls: list[tuple[float, float]] = []  # (start, end) of each GET
    real_poll = client.poll

    def timed_poll(name):
        start = time.monotonic()
        try:
            return real_poll(name)
        finally:
            calls.append((start, time.monotonic()))

    monkeypatch.setattr(client, "poll", timed_poll)
    time.sleep(0.5)  # every job has finished remotely
    finished = poll_active(pipeline, client)
    assert sorted(b.batch_id for b in finished) == sorted(submitted)  # all six seen in one tick
    assert len(calls) == 6
    # The GETs overlapped (several in flight at once), but never more than poll_concurrency of them.
    in_flight = max(sum(1 for s, e in calls if s <= start < e) for start, _ in calls)
    assert 2 <= in_flight <= 4
    assert {b.state for b in pipeline.store.batches() if b.batch_id in submitted} == {BatchState.SUCCEEDED}
