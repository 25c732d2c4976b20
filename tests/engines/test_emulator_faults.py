"""Emulator fault injection: every kind at its configured rate, reproducible for a seed, and shaped as the
real API shapes it (result lines, real-time errors, endpoint refusals, failed / expired / stuck batches)."""

from __future__ import annotations

import io
import json
import time
from collections import Counter

import pytest
from google.genai import errors, types

from ocr_assets.engines.emulator import RECORD_FAULT_KINDS, FaultConfig
from ocr_assets.engines.emulator.faults import record_fault
from ocr_assets.schema import OutputParseError, parse_page_result

MODEL = "gemini-2.5-flash"
TERMINAL = {
    types.JobState.JOB_STATE_SUCCEEDED, types.JobState.JOB_STATE_FAILED,
    types.JobState.JOB_STATE_CANCELLED, types.JobState.JOB_STATE_EXPIRED,
}


def prompt_for(page: int) -> str:
    return f"Catalog: Oberlin College (OH), catalog year 1921, page {page}.\nReturn JSON."


def line(key: str, page: int) -> str:
    return json.dumps({"key": key, "request": {"contents": [{"role": "user", "parts": [{"text": prompt_for(page)}]}]}})


def run_batch(client, keys: list[str], timeout: float = 10.0) -> types.BatchJob:
    src = client.files.upload(file=io.BytesIO("\n".join(line(k, i) for i, k in enumerate(keys)).encode()),
                              config={"mime_type": "application/jsonl"})
    job = client.batches.create(model=MODEL, src=src.name)
    deadline = time.monotonic() + timeout
    while job.state not in TERMINAL:
        assert time.monotonic() < deadline
        time.sleep(0.05)
        job = client.batches.get(name=job.name)
    return job


def download(client, job: types.BatchJob) -> list[dict]:
    data = client.files.download(file=job.dest.file_name)
    return [json.loads(raw) for raw in data.decode().splitlines() if raw.strip()]


def classify(result: dict) -> str:
    """What a client sees on one result line."""
    if "error" in result:
        return f"error_{result['error']['code']}"
    candidate = result["response"]["candidates"][0]
    if candidate["finishReason"] in ("SAFETY", "RECITATION"):
        assert "content" not in candidate
        return candidate["finishReason"].lower()
    text = candidate["content"]["parts"][0]["text"]
    try:
        parse_page_result(text)
    except OutputParseError as exc:
        assert exc.kind == "malformed_json"
        return "truncated" if candidate["finishReason"] == "MAX_TOKENS" else "malformed_json"
    return "ok"


@pytest.mark.parametrize("kind", RECORD_FAULT_KINDS)
def test_each_record_fault_kind_is_drawn_at_its_configured_rate(kind):
    faults = FaultConfig(seed=7, **{kind: 0.2})
    drawn = [record_fault(faults, f"OH:school:1921:{n}", 1) for n in range(4000)]
    assert set(drawn) == {kind, None}
    assert drawn.count(kind) / len(drawn) == pytest.approx(0.2, abs=0.025)
    assert drawn == [record_fault(faults, f"OH:school:1921:{n}", 1) for n in range(4000)]


def test_kinds_that_only_shape_result_files_never_fault_a_real_time_answer():
    faults = FaultConfig(missing_line=0.5, duplicate_line=0.25, unknown_key=0.25)
    assert {record_fault(faults, f"k{n}", 1, file_output=False) for n in range(200)} == {None}


def test_probabilities_that_sum_past_one_are_refused():
    with pytest.raises(ValueError, match="sum"):
        FaultConfig(error_429=0.6, safety=0.6)


def test_a_faulty_batch_file_shows_every_kind_as_the_request_log_says(gemini_emulator):
    rates = {kind: 0.09 for kind in RECORD_FAULT_KINDS}
    emulator = gemini_emulator(faults={"seed": 3, "shuffle_results": True, **rates})
    client = emulator.client()
    keys = [f"OH:Oberlin College:1921:{n}" for n in range(300)]
    job = run_batch(client, keys)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    results = download(client, job)
    outcome = {e.key: e.outcome for e in emulator.state.request_log}
    assert set(outcome) == set(keys)
    counts = Counter(outcome.values())
    for kind in RECORD_FAULT_KINDS:  # ~27 of each; a seed-fixed draw, so the bounds are loose but exact
        assert 10 <= counts[kind] <= 50, (kind, counts)

    returned = Counter(r["key"] for r in results)
    unknown = {k for k in returned if k not in outcome}
    assert len(unknown) == counts["unknown_key"]
    assert {k for k in keys if returned[k] == 0} == {k for k, o in outcome.items() if o == "missing_line"}
    assert {k for k in keys if returned[k] == 2} == {k for k, o in outcome.items() if o == "duplicate_line"}
    assert [r["key"] for r in results if r["key"] in outcome] != [k for k in keys if returned[k]]  # shuffled

    expected_view = {"error_429": "error_429", "error_500": "error_500", "error_503": "error_503",
                     "malformed_json": "malformed_json", "truncated": "truncated", "safety": "safety",
                     "recitation": "recitation"}
    for result in results:
        if result["key"] in unknown:
            continue
        assert classify(result) == expected_view.get(outcome[result["key"]], "ok")
    for entry in emulator.state.request_log:
        assert entry.delivered == (entry.outcome != "missing_line")


def test_the_same_seed_gives_the_same_faults_and_another_seed_other_faults(gemini_emulator):
    keys = [f"k{n}" for n in range(60)]

    def fault_map(seed: int) -> dict[str, str]:
        emulator = gemini_emulator(faults=FaultConfig.mixed(0.5, seed=seed).model_copy(
            update={"endpoint_429": 0.0, "endpoint_503": 0.0}))
        run_batch(emulator.client(), keys)
        return {e.key: e.outcome for e in emulator.state.request_log}

    first, again, other = fault_map(11), fault_map(11), fault_map(12)
    assert first == again
    assert first != other
    assert sum(o != "ok" for o in first.values()) > 10


def test_a_resubmitted_record_is_a_new_attempt_with_its_own_draw(gemini_emulator):
    emulator = gemini_emulator(faults={"seed": 1, "error_503": 0.5})
    client = emulator.client()
    keys = [f"k{n}" for n in range(40)]
    run_batch(client, keys)
    failed = [e.key for e in emulator.state.request_log if e.outcome == "error_503"]
    assert failed
    run_batch(client, failed)
    retried = [e for e in emulator.state.request_log if e.attempt == 2]
    assert sorted(e.key for e in retried) == sorted(failed)
    assert any(e.outcome == "ok" for e in retried)
    expected = [record_fault(emulator.state.config.faults, k, 2) for k in failed]
    assert [e.outcome if e.outcome != "ok" else None for e in retried] == expected


def test_real_time_calls_get_http_errors_and_blocked_candidates(gemini_emulator):
    emulator = gemini_emulator(faults={"error_429": 1.0})
    client = emulator.client()
    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(model=MODEL, contents=prompt_for(1))
    assert refused.value.code == 429

    emulator.state.update_config({"faults": {"error_429": 0.0, "safety": 1.0}})
    response = client.models.generate_content(model=MODEL, contents=prompt_for(1))
    assert response.candidates[0].finish_reason == types.FinishReason.SAFETY
    assert response.text is None

    emulator.state.update_config({"faults": {"safety": 0.0, "error_503": 1.0}})
    with pytest.raises(errors.ServerError) as unavailable:
        client.models.generate_content(model=MODEL, contents=prompt_for(1))
    assert unavailable.value.code == 503
    assert [(e.key, e.attempt, e.outcome) for e in emulator.state.request_log] == [
        ("OH:Oberlin College:1921:1", 1, "error_429"), ("OH:Oberlin College:1921:1", 2, "safety"),
        ("OH:Oberlin College:1921:1", 3, "error_503")]


def test_endpoint_faults_refuse_only_the_routes_named(gemini_emulator):
    emulator = gemini_emulator(faults={"endpoint_429": 1.0, "endpoint_routes": ["batches.create"]})
    client = emulator.client()
    src = client.files.upload(file=io.BytesIO(line("k", 1).encode()),
                              config={"mime_type": "application/jsonl"})
    with pytest.raises(errors.ClientError) as refused:
        client.batches.create(model=MODEL, src=src.name)
    assert refused.value.code == 429
    assert emulator.state.events == []  # refused before it was considered


def test_a_refused_upload_chunk_fails_fast_instead_of_retrying(gemini_emulator):
    client = gemini_emulator(faults={"endpoint_503": 1.0, "endpoint_routes": ["files.upload_chunk"]}).client()
    started = time.monotonic()
    with pytest.raises(errors.ServerError):
        client.files.upload(file=io.BytesIO(b"data"), config={"mime_type": "image/jpeg"})
    assert time.monotonic() - started < 1.0


def test_endpoint_faults_hit_about_their_rate_of_calls(gemini_emulator):
    emulator = gemini_emulator(faults={"endpoint_503": 0.3, "endpoint_routes": ["models.countTokens"], "seed": 5})
    client = emulator.client()
    refused = 0
    for _ in range(60):
        try:
            client.models.count_tokens(model=MODEL, contents="hello")
        except errors.ServerError:
            refused += 1
    assert 8 <= refused <= 30


def test_batches_fail_and_expire_by_ordinal_and_an_expired_batch_keeps_part_of_its_lines(gemini_emulator):
    emulator = gemini_emulator(faults={"fail_batches": [2], "expire_batches": [3], "expired_keep_fraction": 0.5})
    client = emulator.client()
    keys = [f"k{n}" for n in range(40)]
    assert run_batch(client, keys[:2]).state == types.JobState.JOB_STATE_SUCCEEDED
    failed = run_batch(client, keys[:2])
    assert failed.state == types.JobState.JOB_STATE_FAILED and failed.dest is None
    expired = run_batch(client, keys)
    assert expired.state == types.JobState.JOB_STATE_EXPIRED
    kept = {r["key"] for r in download(client, expired)}
    assert 8 <= len(kept) <= 32
    log = [e for e in emulator.state.request_log if e.batch == expired.name]
    assert {e.key for e in log if e.delivered} == kept
    assert {e.key for e in log if not e.delivered} == set(keys) - kept
    assert not [e for e in emulator.state.request_log if e.batch == failed.name]


def test_a_stuck_batch_stays_pending_until_it_expires_after_48_hours(gemini_emulator):
    emulator = gemini_emulator(faults={"stuck_batches": [1]})
    client = emulator.client()
    src = client.files.upload(file=io.BytesIO(line("k", 1).encode()),
                              config={"mime_type": "application/jsonl"})
    job = client.batches.create(model=MODEL, src=src.name)
    time.sleep(0.2)
    assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_PENDING
    emulator.advance_clock(47 * 3600)
    assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_PENDING
    emulator.advance_clock(3600)
    job = client.batches.get(name=job.name)
    assert job.state == types.JobState.JOB_STATE_EXPIRED and job.dest is None
    assert emulator.state.request_log == []


def test_slow_polls_delay_batch_gets(gemini_emulator):
    emulator = gemini_emulator()
    client = emulator.client()
    job = run_batch(client, ["k"])
    emulator.state.update_config({"faults": {"slow_poll_rate": 1.0, "slow_poll_s": 0.3}})
    started = time.monotonic()
    client.batches.get(name=job.name)
    assert time.monotonic() - started >= 0.3
