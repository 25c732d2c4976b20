"""The emulator's model-like answers, and the client's side of the contract against them: valid
variants are accepted (0 schema violations), invalid ones rejected naming the field, and every
request the emulator receives carries the response schema, thinking settings and media resolution."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ocr_assets.engines.emulator.answers import AnswerRequest, EchoAnswerer
from ocr_assets.engines.emulator.config import ModelLikeConfig
from ocr_assets.engines.emulator.model_like import thinking_tokens, vary
from ocr_assets.engines.gemini.batch import GeminiBatchClient
from ocr_assets.engines.gemini.client import make_client
from ocr_assets.engines.gemini.realtime import GeminiRealtimeEngine
from ocr_assets.engines.gemini.runner import run_batches
from ocr_assets.pipeline import Pipeline
from ocr_assets.plan import build_plan
from ocr_assets.pricing import cost
from ocr_assets.core import TokenUsage
from ocr_assets.sample_corpus import generate_corpus
from ocr_assets.schema import OutputParseError, extract_json, parse_page_result, response_json_schema
from tests.fixtures.corpus import settings_for

SENTINEL = "AIzaSENTINEL-do-not-leak-0123456789abcdefXYZ"
FAST = dict(gemini__retry_initial_wait_s=0, gemini__retry_max_wait_s=0, gemini__hold_backoff_s=0,
            execution__poll_interval_seconds=0.05)
EVERYTHING = ModelLikeConfig(enabled=True, null_rate=0.5, omit_rate=0.5, roman_rate=0.5, fence_rate=0.3,
                             prose_rate=0.3, extra_key_rate=0.5)


def echo_text(page: int) -> str:
    prompt = f"Catalog: Alpha (ny), catalog year 1900, page {page}."
    return EchoAnswerer()(AnswerRequest(key=f"ny:Alpha:1900:{page}", prompt=prompt, model="m")).text


def test_model_like_answers_vary_and_every_valid_one_meets_the_schema_and_the_parser():
    schema = response_json_schema()
    seen = {"fenced": 0, "prose": 0, "null": 0, "roman": 0, "extra": 0, "omitted": 0}
    for page in range(1, 61):
        varied = vary(echo_text(page), EVERYTHING, 7, f"k{page}", 1, schema)
        assert varied.invalid_field is None
        body = json.loads(extract_json(varied.text))
        jsonschema.validate(body, schema)  # the request's schema is honoured
        result = parse_page_result(varied.text)
        seen["fenced"] += varied.text.startswith("```") or "```json" in varied.text
        seen["prose"] += varied.text.startswith("Here is")
        seen["null"] += "null" in varied.text
        seen["roman"] += result.page_info.page_number is None and bool(result.page_info.page_label)
        seen["extra"] += "confidence" in body
        seen["omitted"] += "academic_year" not in body
    assert all(count > 0 for count in seen.values()), seen


def test_an_invalid_model_like_answer_names_the_field_the_parser_rejects():
    config = ModelLikeConfig(enabled=True, invalid_rate=1.0)
    fields = set()
    for page in range(1, 40):
        varied = vary(echo_text(page), config, 1, f"k{page}", 1, response_json_schema())
        with pytest.raises(OutputParseError) as caught:
            parse_page_result(varied.text)
        assert caught.value.field == varied.invalid_field
        fields.add(varied.invalid_field)
    assert fields == {"courses", "courses.0.course_name", "raw_ocr.text_blocks"}


@pytest.mark.parametrize(
    ("thinking", "bound"),
    [({"thinkingBudget": 0}, 0), ({"thinkingBudget": 128}, 128), ({"thinkingLevel": "LOW"}, 256),
     ({"thinkingBudget": -1}, None), (None, None)],
)
def test_thinking_tokens_follow_the_requests_thinking_config(thinking, bound):
    tokens = [thinking_tokens(ModelLikeConfig(), 0, f"k{i}", 1, thinking) for i in range(20)]
    if bound is None:
        assert min(tokens) > 0
    else:
        assert max(tokens) <= bound and (bound == 0 or max(tokens) > 0)


def _corpus_pipeline(tmp_path: Path, monkeypatch, server, **overrides):
    generate_corpus(tmp_path, books=3, pages=5, seed=2, images="blank")
    monkeypatch.setenv("GEMINI_API_KEY", SENTINEL)
    settings = settings_for(tmp_path, gemini__base_url=server.url, **{**FAST, **overrides})
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    return pipeline


@pytest.mark.parametrize("inline_images", [True, False])
def test_a_batch_run_on_model_like_answers_accepts_every_valid_answer_and_names_each_invalid_field(
        tmp_path, monkeypatch, gemini_emulator, inline_images):
    server = gemini_emulator(model_like={**EVERYTHING.model_dump(), "invalid_rate": 0.15}, faults={"seed": 5})
    pipeline = _corpus_pipeline(tmp_path, monkeypatch, server, execution__max_attempts=6,
                                model__generation__thinking_budget=512, model__generation__media_resolution="low",
                                gemini__inline_images=inline_images)
    client = GeminiBatchClient(pipeline.settings, make_client(pipeline.settings), store=pipeline.store)
    summary = run_batches(pipeline, client, poll_interval=0.05, timeout_s=120)
    assert summary.unfinished == 0

    log = server.state.request_log
    assert log and all(e.response_schema == response_json_schema() for e in log)
    assert all(e.thinking == {"thinkingBudget": 512} and e.media_resolution == "MEDIA_RESOLUTION_LOW" for e in log)
    assert {s for e in log for s in e.image_sources} == {"inline" if inline_images else "file"}
    invalid = [e for e in log if e.outcome == "invalid_answer"]
    assert invalid, "the seed should give some invalid answers"

    failures = pipeline.store.query("SELECT key, attempt, error_type, message FROM failure_log")
    violations = [f for f in failures if f["error_type"] == "schema_violation"]
    # 0 schema violations on valid content: exactly one per invalid answer, naming the broken field.
    assert len(violations) == len(invalid)
    by_attempt = {(f["key"], f["attempt"]): f["message"] for f in violations}
    for entry in invalid:  # no other faults: the emulator's attempt count is the record's
        assert f"at {entry.invalid_field}:" in by_attempt[(entry.key, entry.attempt)]
    assert {r.status for r in pipeline.store.records()} == {"SUCCESS"}

    # The ledger bills thinking tokens as output: cost per page follows the emulator's usage.
    ledger = pipeline.store.query("SELECT key, prompt_tokens, output_tokens, cost_usd FROM cost_ledger")
    thoughts = {e.key: e.thoughts_tokens for e in log if e.outcome == "ok"}
    assert sum(thoughts.values()) > 0
    for row in ledger:
        usage = TokenUsage(prompt_tokens=row["prompt_tokens"], output_tokens=row["output_tokens"])
        assert row["cost_usd"] == pytest.approx(cost(usage, pipeline.settings.model, "batch"))
    ok = {e.key: e for e in log if e.outcome == "ok"}
    some = next(row for row in ledger if row["key"] in ok and ok[row["key"]].thoughts_tokens)
    assert some["output_tokens"] == ok[some["key"]].output_tokens > ok[some["key"]].thoughts_tokens


def test_real_time_calls_carry_the_schema_thinking_level_and_media_resolution(tmp_path, monkeypatch,
                                                                             gemini_emulator):
    server = gemini_emulator(model_like=EVERYTHING.model_dump())
    pipeline = _corpus_pipeline(tmp_path, monkeypatch, server, model__generation__thinking_level="low",
                                model__generation__media_resolution="medium")
    engine = GeminiRealtimeEngine(pipeline.settings)
    summary = pipeline.run_sync(engine)
    assert summary.fatal == 0 and summary.retryable == 0
    log = server.state.request_log
    assert log and {e.batch for e in log} == {"realtime"}
    assert all(e.response_schema == response_json_schema() for e in log)
    assert all(e.thinking == {"thinkingLevel": "LOW"} and e.media_resolution == "MEDIA_RESOLUTION_MEDIUM"
               for e in log)
    assert all(e.thoughts_tokens <= 256 for e in log)


def test_a_low_media_resolution_bills_fewer_image_tokens(tmp_path, monkeypatch, gemini_emulator):
    server = gemini_emulator()
    billed = {}
    for resolution in ("low", None):
        root = tmp_path / str(resolution)
        pipeline = _corpus_pipeline(root, monkeypatch, server, model__generation__media_resolution=resolution
                                    if resolution else "null")
        pipeline.run_sync(GeminiRealtimeEngine(pipeline.settings), limit=1)
        billed[resolution] = pipeline.store.query("SELECT prompt_tokens FROM cost_ledger")[0]["prompt_tokens"]
    assert billed[None] - billed["low"] == 258 - 64
