"""Classification of Gemini answers: one row per error class (pure functions, hand-made responses)."""

from __future__ import annotations

import json

import pytest

from ocr_assets.core import PageFailure, PageSuccess
from ocr_assets.engines.gemini.classify import (
    api_error_class,
    classify_error_object,
    classify_exception,
    classify_response,
    is_transient,
    usage_from,
)
from ocr_assets.schema import ErrorClass

VALID = json.dumps({"raw_ocr": {"text_blocks": [{"block_id": 1, "text": "MATH 101"}]},
                    "page_info": {"page_number": 3}, "courses": [{"course_name": "MATH 101"}]})


def response(text: str | None = VALID, finish: str = "STOP", *, camel: bool = True, block: str | None = None,
             candidates: bool = True) -> dict:
    parts = [] if text is None else [{"text": text}]
    cand = {"content": {"parts": parts, "role": "model"}}
    if camel:
        cand["finishReason"] = finish
        out = {"candidates": [cand] if candidates else [],
               "usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 300, "thoughtsTokenCount": 20,
                                 "cachedContentTokenCount": 100}}
        if block:
            out["promptFeedback"] = {"blockReason": block}
    else:
        cand["finish_reason"] = finish
        out = {"candidates": [cand] if candidates else [],
               "usage_metadata": {"prompt_token_count": 1200, "candidates_token_count": 300,
                                  "thoughts_token_count": 20, "cached_content_token_count": 100}}
        if block:
            out["prompt_feedback"] = {"block_reason": block}
    return out


@pytest.mark.parametrize(
    ("resp", "expected_class", "expected_type"),
    [
        (response(), None, None),
        (response(camel=False), None, None),
        (response("```json\n" + VALID + "\n```"), None, None),
        (response(VALID[:40], "MAX_TOKENS"), ErrorClass.RETRYABLE, "truncated"),
        (response(None, "RECITATION"), ErrorClass.RETRYABLE, "recitation"),
        (response(None, "SAFETY"), ErrorClass.FATAL, "safety_block"),
        (response(None, "PROHIBITED_CONTENT"), ErrorClass.FATAL, "safety_block"),
        (response(None, "STOP", block="SAFETY", candidates=False), ErrorClass.FATAL, "safety_block"),
        (response(None, "STOP", block="PROHIBITED_CONTENT", candidates=False), ErrorClass.FATAL, "safety_block"),
        (response(None, "STOP", block="OTHER", candidates=False), ErrorClass.RETRYABLE, "prompt_blocked"),
        (response("{not json"), ErrorClass.RETRYABLE, "malformed_json"),
        (response(""), ErrorClass.RETRYABLE, "empty_output"),
        (response(None), ErrorClass.RETRYABLE, "empty_output"),
        (response(candidates=False), ErrorClass.RETRYABLE, "empty_response"),
        (response('{"courses": []}'), ErrorClass.RETRYABLE, "schema_violation"),
        (response("[1, 2]"), ErrorClass.RETRYABLE, "schema_violation"),
    ],
)
def test_a_response_is_classified_by_its_finish_reason_and_content(resp, expected_class, expected_type):
    outcome = classify_response("ny:a:1900:3", resp, model="gemini-x")
    if expected_class is None:
        assert isinstance(outcome, PageSuccess)
        assert outcome.result.courses[0].course_name == "MATH 101"
    else:
        assert isinstance(outcome, PageFailure)
        assert (outcome.error_class, outcome.error_type) == (expected_class, expected_type)
        assert outcome.raw_response  # failures keep the raw response for the failure log
    assert outcome.usage.prompt_tokens == 1200
    assert outcome.usage.output_tokens == 320  # candidates + thinking, as billed


@pytest.mark.parametrize(
    ("code", "status", "message", "expected"),
    [
        (429, "RESOURCE_EXHAUSTED", "quota", (ErrorClass.RETRYABLE, "rate_limited")),
        (None, "RESOURCE_EXHAUSTED", "quota", (ErrorClass.RETRYABLE, "rate_limited")),
        (500, "INTERNAL", "boom", (ErrorClass.RETRYABLE, "server_error")),
        (503, "UNAVAILABLE", "overloaded", (ErrorClass.RETRYABLE, "server_error")),
        (504, "DEADLINE_EXCEEDED", "slow", (ErrorClass.RETRYABLE, "timeout")),
        (400, "INVALID_ARGUMENT", "Unable to process input image", (ErrorClass.FATAL, "image_unreadable")),
        (400, "INVALID_ARGUMENT", "bad generation config", (ErrorClass.FATAL, "invalid_argument")),
        (413, None, "too big", (ErrorClass.FATAL, "request_too_large")),
        (403, "PERMISSION_DENIED", "You do not have permission to access the File x", (ErrorClass.RETRYABLE, "file_unavailable")),
        (418, None, "teapot", (ErrorClass.FATAL, "client_error")),
    ],
)
def test_an_api_error_is_classified_by_code_and_status(code, status, message, expected):
    assert api_error_class(code, status, message) == expected


def test_a_result_line_error_object_becomes_a_failure_with_its_raw_line():
    failure = classify_error_object("k", {"code": 503, "message": "try later", "status": "UNAVAILABLE"})
    assert (failure.error_class, failure.error_type) == (ErrorClass.RETRYABLE, "server_error")
    assert "try later" in failure.message and '"code": 503' in failure.raw_response
    fatal = classify_error_object("k", {"code": 400, "message": "Unable to process input image.",
                                        "status": "INVALID_ARGUMENT"})
    assert (fatal.error_class, fatal.error_type) == (ErrorClass.FATAL, "image_unreadable")


def test_sdk_exceptions_are_classified_and_transient_ones_retried_in_place():
    from google.genai import errors

    rate = errors.ClientError(429, {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}})
    bad = errors.ClientError(400, {"error": {"code": 400, "message": "bad request", "status": "INVALID_ARGUMENT"}})
    server = errors.ServerError(500, {"error": {"code": 500, "message": "oops", "status": "INTERNAL"}})
    assert is_transient(rate) and is_transient(server) and not is_transient(bad)
    assert is_transient(TimeoutError()) and is_transient(ConnectionResetError())
    assert classify_exception("k", rate).error_type == "rate_limited"
    assert classify_exception("k", bad).error_class == ErrorClass.FATAL
    timeout = classify_exception("k", TimeoutError("read timed out"))
    assert (timeout.error_class, timeout.error_type) == (ErrorClass.RETRYABLE, "timeout")
    assert timeout.traceback


def test_usage_reads_camel_and_snake_case():
    assert usage_from(response()).cached_tokens == 100
    assert usage_from(response(camel=False)).cached_tokens == 100
    assert usage_from({}).prompt_tokens == 0
