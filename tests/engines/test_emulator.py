"""The Gemini emulator driven by the real, unmodified google-genai SDK: files, batches (JSONL and inline),
real-time calls, context caches, lifecycle, limits, the request log and API-key hygiene."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import time
import types as types_module
import urllib.error
import urllib.request

import pytest
from google import genai
from google.genai import errors, types
from PIL import Image as PILImage
from PIL import ImageDraw

from ocr_assets.core import PageFailure, PageRequest, PageSuccess
from ocr_assets.engines.emulator import LocalAnswerer, local_engine_available, parse_page_identity
from ocr_assets.schema import ErrorClass, OcrPageResult, PageInfo, RawOcr, TextBlock, parse_page_result

MODEL = "gemini-2.5-flash"
BOOK = ("OH", "Oberlin College", 1921)
TERMINAL = {
    types.JobState.JOB_STATE_SUCCEEDED, types.JobState.JOB_STATE_FAILED,
    types.JobState.JOB_STATE_CANCELLED, types.JobState.JOB_STATE_EXPIRED,
}


def page_image(page: int) -> bytes:
    """A small JPEG that differs per page, so image digests tell pages apart."""
    buf = io.BytesIO()
    PILImage.new("RGB", (16, 16), ((page * 37) % 256, (page * 91) % 256, (page * 13) % 256)).save(buf, "JPEG")
    return buf.getvalue()


def prompt_for(page: int, book: tuple[str, str, int] = BOOK) -> str:
    state, school, year = book
    return f"You are transcribing one scanned page.\nCatalog: {school} ({state}), catalog year {year}, page {page}.\n"


def record_key(page: int, book: tuple[str, str, int] = BOOK) -> str:
    state, school, year = book
    return f"{state}:{school}:{year}:{page}"


def upload_bytes(client: genai.Client, data: bytes, mime_type: str) -> types.File:
    return client.files.upload(file=io.BytesIO(data), config={"mime_type": mime_type})


def jsonl_line(key: str, page: int, *, image_uri: str | None = None, inline_image: bytes | None = None,
               cached_content: str | None = None) -> str:
    parts: list[dict] = []
    if image_uri:
        parts.append({"fileData": {"fileUri": image_uri, "mimeType": "image/jpeg"}})
    if inline_image is not None:
        parts.append({"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(inline_image).decode()}})
    parts.append({"text": prompt_for(page)})
    request: dict = {"contents": [{"role": "user", "parts": parts}],
                     "generationConfig": {"responseMimeType": "application/json"}}
    if cached_content:
        request["cachedContent"] = cached_content
    return json.dumps({"key": key, "request": request})


def submit_jsonl(client: genai.Client, lines: list[str]) -> types.BatchJob:
    src = upload_bytes(client, "\n".join(lines).encode(), "application/jsonl")
    return client.batches.create(model=MODEL, src=src.name, config={"display_name": "test"})


def wait_terminal(client: genai.Client, name: str, timeout: float = 10.0) -> types.BatchJob:
    deadline = time.monotonic() + timeout
    while True:
        job = client.batches.get(name=name)
        if job.state in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"{name} still {job.state}"
        time.sleep(0.05)


def raw_call(url: str, method: str = "GET", body: dict | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A plain HTTP call (no SDK): status and body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def result_lines(client: genai.Client, job: types.BatchJob) -> list[dict]:
    data = client.files.download(file=job.dest.file_name)
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def test_a_jsonl_batch_runs_to_succeeded_and_every_line_answers_its_own_request(gemini_emulator):
    emulator = gemini_emulator()
    client = emulator.client()
    pages = [3, 4, 5, 12]
    uploads = {p: upload_bytes(client, page_image(p), "image/jpeg") for p in pages}
    job = submit_jsonl(client, [jsonl_line(record_key(p), p, image_uri=uploads[p].uri) for p in pages])
    assert job.state == types.JobState.JOB_STATE_PENDING
    assert job.display_name == "test"

    job = wait_terminal(client, job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    by_key = {line["key"]: line for line in result_lines(client, job)}
    assert set(by_key) == {record_key(p) for p in pages}
    for p in pages:
        response = types.GenerateContentResponse.model_validate(by_key[record_key(p)]["response"])
        result = parse_page_result(response.text)
        assert result.page_info.page_number == p
        assert (result.school_name, result.catalog_year) == ("Oberlin College", 1921)
        assert hashlib.sha256(page_image(p)).hexdigest()[:16] in result.raw_ocr.full_text()
        assert response.candidates[0].finish_reason == types.FinishReason.STOP
        usage = response.usage_metadata
        assert usage.prompt_token_count == len(prompt_for(p)) // 4 + 258
        assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count

    log = emulator.state.request_log
    assert sorted(e.key for e in log) == sorted(record_key(p) for p in pages)
    for entry in log:
        assert entry.batch == job.name and entry.delivered and entry.clean and entry.attempt == 1
        assert entry.image_digest == hashlib.sha256(page_image(parse_page_identity(entry.prompt).page)).hexdigest()


@pytest.mark.parametrize("api_version", ["v1", "v1beta"])
def test_both_api_versions_serve_files_batches_and_generate_content(gemini_emulator, api_version):
    client = gemini_emulator().client(api_version=api_version)
    job = submit_jsonl(client, [jsonl_line("k1", 1, inline_image=page_image(1))])
    assert wait_terminal(client, job.name).state == types.JobState.JOB_STATE_SUCCEEDED
    response = client.models.generate_content(model=MODEL, contents=prompt_for(7))
    assert parse_page_result(response.text).page_info.page_number == 7


def test_an_inline_batch_returns_inlined_responses_in_request_order(gemini_emulator):
    client = gemini_emulator().client()
    requests = [
        types.InlinedRequest(
            contents=[types.Content(role="user", parts=[
                types.Part.from_bytes(data=page_image(p), mime_type="image/jpeg"),
                types.Part.from_text(text=prompt_for(p)),
            ])],
            metadata={"key": record_key(p)},
            config=types.GenerateContentConfig(response_mime_type="application/json", temperature=0.1),
        )
        for p in (8, 9, 10)
    ]
    job = client.batches.create(model=MODEL, src=requests)
    job = wait_terminal(client, job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    responses = job.dest.inlined_responses
    assert [r.metadata["key"] for r in responses] == [record_key(p) for p in (8, 9, 10)]
    assert [parse_page_result(r.response.text).page_info.page_number for r in responses] == [8, 9, 10]


def test_generate_content_answers_in_real_time_with_usage_and_logs_the_record(gemini_emulator):
    emulator = gemini_emulator()
    client = emulator.client()
    uploaded = upload_bytes(client, page_image(2), "image/jpeg")
    response = client.models.generate_content(
        model=MODEL,
        contents=[types.Part.from_uri(file_uri=uploaded.uri, mime_type="image/jpeg"), prompt_for(2)],
        config=types.GenerateContentConfig(response_mime_type="application/json"),
    )
    assert parse_page_result(response.text).page_info.page_number == 2
    assert response.usage_metadata.prompt_token_count == len(prompt_for(2)) // 4 + 258
    assert response.usage_metadata.cached_content_token_count is None
    [entry] = emulator.state.request_log
    assert (entry.key, entry.batch, entry.outcome, entry.delivered) == (record_key(2), "realtime", "ok", True)


def test_max_output_tokens_cuts_the_answer_with_max_tokens(gemini_emulator):
    client = gemini_emulator().client()
    response = client.models.generate_content(
        model=MODEL, contents=prompt_for(1), config=types.GenerateContentConfig(max_output_tokens=20)
    )
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.usage_metadata.candidates_token_count == 20
    with pytest.raises(ValueError):
        json.loads(response.text)


def test_a_context_cache_is_created_used_and_reported_as_cached_tokens(gemini_emulator):
    emulator = gemini_emulator()
    client = emulator.client()
    instructions = "Transcribe exactly. " * 100  # 2,000 characters → 500 tokens
    cache = client.caches.create(model=MODEL, config=types.CreateCachedContentConfig(
        contents=[types.Content(role="user", parts=[types.Part.from_text(text=instructions)])], ttl="600s",
        display_name="ocr-instructions"))
    assert cache.name.startswith("cachedContents/")
    assert cache.usage_metadata.total_token_count == 500
    assert client.caches.get(name=cache.name).display_name == "ocr-instructions"

    response = client.models.generate_content(
        model=MODEL, contents=prompt_for(6), config=types.GenerateContentConfig(cached_content=cache.name))
    usage = response.usage_metadata
    assert usage.cached_content_token_count == 500
    assert usage.prompt_token_count == (len(instructions) + 1 + len(prompt_for(6))) // 4

    job = submit_jsonl(client, [jsonl_line("cached", 6, cached_content=cache.name)])
    [line] = result_lines(client, wait_terminal(client, job.name))
    assert line["response"]["usageMetadata"]["cachedContentTokenCount"] == 500

    with pytest.raises(errors.ClientError) as mismatch:
        client.models.generate_content(model="gemini-2.5-pro", contents="x",
                                       config=types.GenerateContentConfig(cached_content=cache.name))
    assert mismatch.value.code == 400
    client.caches.delete(name=cache.name)
    with pytest.raises(errors.ClientError) as gone:
        client.caches.get(name=cache.name)
    assert gone.value.code == 404


def test_a_batch_goes_pending_then_running_then_succeeded_with_the_configured_latency(gemini_emulator):
    client = gemini_emulator(pending_s=0.3, batch_latency_s=0.3).client()
    job = submit_jsonl(client, [jsonl_line("k", 1)])
    seen = [job.state]
    started = time.monotonic()
    while seen[-1] not in TERMINAL:
        time.sleep(0.05)
        state = client.batches.get(name=job.name).state
        if state != seen[-1]:
            seen.append(state)
    assert seen == [types.JobState.JOB_STATE_PENDING, types.JobState.JOB_STATE_RUNNING,
                    types.JobState.JOB_STATE_SUCCEEDED]
    assert time.monotonic() - started >= 0.5


def test_cancel_ends_an_active_batch_and_frees_its_enqueued_tokens(gemini_emulator):
    emulator = gemini_emulator(pending_s=60)
    client = emulator.client()
    job = submit_jsonl(client, [jsonl_line("k", 1)])
    assert emulator.batches.enqueued_tokens() > 0
    client.batches.cancel(name=job.name)
    job = client.batches.get(name=job.name)
    assert job.state == types.JobState.JOB_STATE_CANCELLED
    assert job.dest is None
    assert emulator.batches.enqueued_tokens() == 0
    assert [e.event for e in emulator.state.events] == ["created", "cancelled"]
    assert emulator.state.request_log == []  # it never reached inference


def test_list_pages_through_every_batch_and_delete_removes_one(gemini_emulator):
    client = gemini_emulator(pending_s=60).client()
    names = {submit_jsonl(client, [jsonl_line(f"k{i}", i)]).name for i in range(5)}
    listed = [job.name for job in client.batches.list(config={"page_size": 2})]
    assert sorted(listed) == sorted(names) and len(listed) == 5
    victim = sorted(names)[0]
    client.batches.delete(name=victim)
    assert victim not in {job.name for job in client.batches.list()}
    with pytest.raises(errors.ClientError) as gone:
        client.batches.get(name=victim)
    assert gone.value.code == 404


def test_create_is_refused_with_429_while_enqueued_tokens_would_pass_the_cap(gemini_emulator):
    line_tokens = len(prompt_for(1)) // 4 + 258
    emulator = gemini_emulator(max_enqueued_tokens=3 * line_tokens, faults={"stuck_batches": [1]})
    client = emulator.client()
    images = page_image(1)
    first = submit_jsonl(client, [jsonl_line(f"a{i}", 1, inline_image=images) for i in range(2)])
    with pytest.raises(errors.ClientError) as refused:
        submit_jsonl(client, [jsonl_line(f"b{i}", 1, inline_image=images) for i in range(2)])
    assert refused.value.code == 429 and refused.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(errors.ClientError) as too_big:  # can never fit: refused as a bad request, not "wait"
        submit_jsonl(client, [jsonl_line(f"c{i}", 1, inline_image=images) for i in range(4)])
    assert too_big.value.code == 400

    client.batches.cancel(name=first.name)
    second = submit_jsonl(client, [jsonl_line(f"b{i}", 1, inline_image=images) for i in range(2)])
    assert wait_terminal(client, second.name).state == types.JobState.JOB_STATE_SUCCEEDED
    events = emulator.state.events
    assert [e.event for e in events].count("rejected") == 2
    assert max(e.enqueued_tokens for e in events) <= 3 * line_tokens


def test_files_expire_after_their_ttl_and_a_request_naming_one_fails_per_line(gemini_emulator):
    emulator = gemini_emulator(file_ttl_s=3600)
    client = emulator.client()
    image = upload_bytes(client, page_image(1), "image/jpeg")
    source = upload_bytes(client, jsonl_line("late", 1, image_uri=image.uri).encode(), "application/jsonl")
    assert image.expiration_time.timestamp() == pytest.approx(image.create_time.timestamp() + 3600, abs=1)
    emulator.advance_clock(1800)
    fresh_source = upload_bytes(client, jsonl_line("late", 1, image_uri=image.uri).encode(), "application/jsonl")
    emulator.advance_clock(1801)
    with pytest.raises(errors.ClientError) as expired:
        client.files.get(name=image.name)
    assert expired.value.code == 404
    with pytest.raises(errors.ClientError):
        client.batches.create(model=MODEL, src=source.name)  # the input file itself expired
    job = wait_terminal(client, client.batches.create(model=MODEL, src=fresh_source.name).name)
    [line] = result_lines(client, job)
    assert line["key"] == "late" and line["error"]["code"] == 403
    assert emulator.state.request_log[0].outcome == "invalid_request"


def test_uploaded_files_can_be_listed_and_deleted_but_not_downloaded(gemini_emulator):
    client = gemini_emulator().client()
    uploaded = upload_bytes(client, page_image(1), "image/jpeg")
    assert uploaded.name in {f.name for f in client.files.list()}
    with pytest.raises(errors.ClientError):
        client.files.download(file=uploaded.name)
    client.files.delete(name=uploaded.name)
    with pytest.raises(errors.ClientError):
        client.files.get(name=uploaded.name)


def test_the_api_key_is_required_and_never_appears_in_logs_or_responses(gemini_emulator):
    secret = "AIzaSy-very-secret-test-key-0123456789"
    emulator = gemini_emulator(api_keys=[secret])
    client = emulator.client(api_key=secret)
    seen: list[bytes] = []

    def keep(response) -> None:
        response.read()
        seen.append(response.content + str(dict(response.headers)).encode())

    # The SDK's own HTTP client (httpx or httpx2): record every response it receives.
    client._api_client._httpx_client.event_hooks["response"].append(keep)
    image = upload_bytes(client, page_image(1), "image/jpeg")
    job = wait_terminal(client, submit_jsonl(client, [jsonl_line("k", 1, image_uri=image.uri)]).name)
    result_lines(client, job)
    client.models.generate_content(model=MODEL, contents=prompt_for(1))
    client.batches.list()

    base = emulator.url
    assert raw_call(f"{base}/v1beta/batches")[0] == 403
    status, body = raw_call(f"{base}/v1beta/batches", headers={"x-goog-api-key": "not-the-key"})
    assert status == 400 and b"not-the-key" not in body
    assert raw_call(f"{base}/v1beta/batches?key={secret}")[0] == 200
    seen.append(raw_call(f"{base}/_emulator/log")[1])
    seen.append(raw_call(f"{base}/_emulator/config")[1])

    assert len(seen) > 8
    assert all(secret.encode() not in body for body in seen)
    assert secret not in json.dumps(emulator.snapshot())
    assert secret not in emulator.state.config.model_dump_json()


def test_the_emulator_is_reconfigured_and_inspected_over_http(gemini_emulator):
    emulator = gemini_emulator()
    base = emulator.url
    status, body = raw_call(f"{base}/_emulator/config", "POST",
                            {"batch_latency_s": 1.5, "faults": {"error_500": 0.25}})
    assert status == 200 and json.loads(body)["faults"]["error_500"] == 0.25
    assert raw_call(f"{base}/_emulator/config", "POST", {"faults": {"error_500": 2}})[0] == 400
    assert raw_call(f"{base}/_emulator/clock", "POST", {"advance_s": 10})[0] == 200
    log = json.loads(raw_call(f"{base}/_emulator/log")[1])
    assert emulator.state.config.batch_latency_s == 1.5
    assert emulator.state.config.faults.error_500 == 0.25
    assert set(log) >= {"requests", "events", "enqueued_tokens", "batches"}


def test_google_gemini_base_url_points_an_unconfigured_client_at_the_emulator(gemini_emulator_env):
    client = genai.Client()  # base URL and key from the environment the fixture set
    response = client.models.generate_content(model=MODEL, contents=prompt_for(11))
    assert parse_page_result(response.text).page_info.page_number == 11
    assert gemini_emulator_env.state.request_log[0].key == record_key(11)


def test_count_tokens_and_models_get_answer_like_the_api(gemini_emulator):
    client = gemini_emulator().client()
    counted = client.models.count_tokens(
        model=MODEL, contents=[types.Part.from_bytes(data=page_image(1), mime_type="image/jpeg"), prompt_for(1)])
    assert counted.total_tokens == len(prompt_for(1)) // 4 + 258
    model = client.models.get(model=MODEL)
    assert model.name == f"models/{MODEL}" and "batchGenerateContent" in model.supported_actions


def test_the_local_answerer_adapts_the_local_engine_protocol(gemini_emulator, monkeypatch):
    calls: list[list[PageRequest]] = []

    class FakeLocalInference:
        def __init__(self, *, engine: str, device: str, batch_size: str, model_dir: object) -> None:
            assert (engine, device) == ("rapidocr", "cpu")

        def infer(self, requests: list[PageRequest]) -> list:
            calls.append(requests)
            outcomes = []
            for request in requests:
                if request.page == 13:
                    outcomes.append(PageFailure(key=request.key, error_class=ErrorClass.FATAL,
                                                error_type="unreadable", message="cannot read"))
                    continue
                text = f"{request.book} p{request.page} {len(request.image_path.read_bytes())} bytes"
                result = OcrPageResult(raw_ocr=RawOcr(text_blocks=[TextBlock(block_id=1, text=text)]),
                                       page_info=PageInfo(page_number=request.page))
                outcomes.append(PageSuccess(key=request.key, result=result))
            return outcomes

    monkeypatch.setitem(sys.modules, "ocr_assets.engines.local",
                        types_module.SimpleNamespace(LocalInference=FakeLocalInference))
    emulator = gemini_emulator(answerer=LocalAnswerer())
    client = emulator.client()
    job = submit_jsonl(client, [jsonl_line(record_key(p), p, inline_image=page_image(p)) for p in (12, 13)])
    by_key = {line["key"]: line for line in result_lines(client, wait_terminal(client, job.name))}
    text = by_key[record_key(12)]["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert parse_page_result(text).raw_ocr.full_text() == f"OH:Oberlin College:1921 p12 {len(page_image(12))} bytes"
    assert by_key[record_key(13)]["error"]["code"] == 500
    assert [len(c) for c in calls] == [2]  # one engine call for the batch, the model loaded once
    assert {e.key: e.outcome for e in emulator.state.request_log} == {record_key(12): "ok",
                                                                      record_key(13): "answer_error"}


@pytest.mark.skipif(not local_engine_available(), reason="the local OCR engine is not importable")
def test_the_local_engine_answers_a_batch(gemini_emulator):
    buf = io.BytesIO()
    image = PILImage.new("RGB", (400, 120), "white")
    ImageDraw.Draw(image).text((10, 40), "MATH 101 Algebra", fill="black")
    image.save(buf, "PNG")
    client = gemini_emulator(answerer=LocalAnswerer()).client()
    line = json.dumps({"key": "local", "request": {"contents": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(buf.getvalue()).decode()}},
        {"text": prompt_for(1)}]}]}})
    job = wait_terminal(client, submit_jsonl(client, [line]).name, timeout=120)
    [result] = result_lines(client, job)
    assert result["key"] == "local"
    parse_page_result(result["response"]["candidates"][0]["content"]["parts"][0]["text"])
