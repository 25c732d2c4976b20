"""Per-record classification of a Gemini answer: success, retryable or fatal.

| what came back                                        | class     | error_type           |
|-------------------------------------------------------|-----------|----------------------|
| valid `OcrPageResult` JSON, finishReason STOP          | success   |                      |
| 429 / RESOURCE_EXHAUSTED                              | retryable | rate_limited         |
| 408 / 504 / DEADLINE_EXCEEDED, client timeout          | retryable | timeout              |
| 5xx / INTERNAL / UNAVAILABLE                          | retryable | server_error         |
| connection error, other transport failure             | retryable | transport_error      |
| finishReason MAX_TOKENS (truncated output)            | retryable | truncated            |
| finishReason RECITATION                               | retryable | recitation           |
| malformed JSON / empty output / no candidates         | retryable | malformed_json, …    |
| no result line for a submitted key (batch)            | retryable | missing_result       |
| output that violates the schema                       | retryable | schema_violation     |
| prompt or candidate blocked (SAFETY, PROHIBITED…)     | fatal     | safety_block         |
| 400 INVALID_ARGUMENT about the image / unreadable file | fatal     | image_unreadable     |
| other 400 INVALID_ARGUMENT / 413                      | fatal     | invalid_argument, …  |

A schema violation is retried because the model may answer differently next time; the store turns
a retryable failure with exhausted attempts into FATAL_FAILURE ("retries exhausted …").
Responses may be REST JSON (camelCase, batch result lines) or SDK dumps (snake_case): both are read.
"""

from __future__ import annotations

import json
from typing import Any

from ocr_assets.core import PageFailure, PageOutcome, PageSuccess, TokenUsage
from ocr_assets.engines.gemini.client import describe_error, scrub, scrub_traceback
from ocr_assets.schema import ErrorClass, OutputParseError, parse_page_result

RAW_RESPONSE_LIMIT = 200_000

FATAL_FINISH = {
    "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
}
FATAL_BLOCK = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "IMAGE_SAFETY"}
RETRYABLE_FINISH = {"MAX_TOKENS": "truncated", "RECITATION": "recitation"}
PARSE_KIND = {
    "malformed_json": "malformed_json",
    "empty": "empty_output",
    "oversized": "oversized_output",
    "schema": "schema_violation",
}
RETRYABLE_STATUS = {
    "RESOURCE_EXHAUSTED": "rate_limited",
    "DEADLINE_EXCEEDED": "timeout",
    "INTERNAL": "server_error",
    "UNAVAILABLE": "server_error",
    "UNKNOWN": "server_error",
    "ABORTED": "server_error",
}
_IMAGE_HINTS = ("image", "unable to process input", "media", "file")


def _get(obj: Any, *names: str) -> Any:
    if not isinstance(obj, dict):
        return None
    for name in names:
        value = obj.get(name)
        if value is not None:
            return value
    return None


def _raw(obj: Any) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, default=str)
    text = scrub(text)
    return text if len(text) <= RAW_RESPONSE_LIMIT else text[:RAW_RESPONSE_LIMIT] + "…[truncated]"


def usage_from(response: Any) -> TokenUsage:
    """Token usage of one response (output = candidates + thinking tokens, as billed)."""
    meta = _get(response, "usageMetadata", "usage_metadata") or {}
    output = (_get(meta, "candidatesTokenCount", "candidates_token_count") or 0) + (
        _get(meta, "thoughtsTokenCount", "thoughts_token_count") or 0
    )
    return TokenUsage(
        prompt_tokens=int(_get(meta, "promptTokenCount", "prompt_token_count") or 0),
        output_tokens=int(output),
        cached_tokens=int(_get(meta, "cachedContentTokenCount", "cached_content_token_count") or 0),
    )


def response_text(response: Any) -> str | None:
    """The first candidate's answer text (thought parts excluded), or None when it has none."""
    candidates = _get(response, "candidates") or []
    if not candidates:
        return None
    parts = _get(_get(candidates[0], "content") or {}, "parts") or []
    texts = [p.get("text") for p in parts if isinstance(p, dict) and p.get("text") is not None and not p.get("thought")]
    return "".join(texts) if texts else None


def api_error_class(code: int | None, status: str | None, message: str | None) -> tuple[ErrorClass, str]:
    """(class, error_type) of an API error, from its HTTP code and canonical status."""
    status = (status or "").upper()
    text = (message or "").lower()
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        return ErrorClass.RETRYABLE, "rate_limited"
    if code in (408, 504) or status == "DEADLINE_EXCEEDED":
        return ErrorClass.RETRYABLE, "timeout"
    if status in RETRYABLE_STATUS:
        return ErrorClass.RETRYABLE, RETRYABLE_STATUS[status]
    if code is not None and code >= 500:
        return ErrorClass.RETRYABLE, "server_error"
    if code in (401, 403, 404) or status in {"PERMISSION_DENIED", "NOT_FOUND", "UNAUTHENTICATED"}:
        # An expired File API reference or a revoked key: not this page's fault; retry it. (A real-time
        # 404 naming no file is a wrong model or URL: the engine stops the run, see realtime.py.)
        if "file" in text:
            return ErrorClass.RETRYABLE, "file_unavailable"
        return ErrorClass.RETRYABLE, "not_found" if code == 404 or status == "NOT_FOUND" else "permission_denied"
    if code == 413:
        return ErrorClass.FATAL, "request_too_large"
    if code == 400 or status in {"INVALID_ARGUMENT", "FAILED_PRECONDITION"}:
        if any(hint in text for hint in _IMAGE_HINTS):
            return ErrorClass.FATAL, "image_unreadable"
        return ErrorClass.FATAL, "invalid_argument"
    if code is not None and 400 <= code < 500:
        return ErrorClass.FATAL, "client_error"
    return ErrorClass.RETRYABLE, "api_error"


def classify_error_object(key: str, error: Any, *, model: str = "", raw: Any = None) -> PageFailure:
    """A batch result line's `error`/`status` object (`{code, message, status}`) → failure."""
    if not isinstance(error, dict):
        error = {"message": str(error)}
    code = error.get("code")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    status = error.get("status")
    message = str(error.get("message") or "")
    error_class, error_type = api_error_class(code, str(status) if status else None, message)
    return PageFailure(
        key=key, error_class=error_class, error_type=error_type,
        message=scrub(f"Gemini error {code or ''} {status or ''}: {message}".replace("  ", " ")),
        raw_response=_raw(raw if raw is not None else error), model=model,
    )


def classify_response(key: str, response: Any, *, model: str = "", latency_s: float | None = None) -> PageOutcome:
    """A `GenerateContentResponse` (dict) → `PageSuccess` or a classified `PageFailure`."""
    usage = usage_from(response)
    model = _get(response, "modelVersion", "model_version") or model

    def fail(error_class: ErrorClass, error_type: str, message: str) -> PageFailure:
        return PageFailure(
            key=key, error_class=error_class, error_type=error_type, message=scrub(message),
            raw_response=_raw(response), usage=usage, model=model, latency_s=latency_s,
        )

    if not isinstance(response, dict):
        return fail(ErrorClass.RETRYABLE, "malformed_response", f"response is a {type(response).__name__}, not an object")
    feedback = _get(response, "promptFeedback", "prompt_feedback") or {}
    block = _get(feedback, "blockReason", "block_reason")
    if block:
        block = str(block).upper()
        if block in FATAL_BLOCK:
            return fail(ErrorClass.FATAL, "safety_block", f"the prompt was blocked ({block})")
        return fail(ErrorClass.RETRYABLE, "prompt_blocked", f"the prompt was blocked ({block})")
    candidates = _get(response, "candidates") or []
    if not candidates:
        return fail(ErrorClass.RETRYABLE, "empty_response", "the response has no candidates")
    finish = str(_get(candidates[0], "finishReason", "finish_reason") or "").upper()
    if finish in FATAL_FINISH:
        return fail(ErrorClass.FATAL, "safety_block", f"the answer was blocked (finishReason {finish})")
    if finish in RETRYABLE_FINISH:
        return fail(ErrorClass.RETRYABLE, RETRYABLE_FINISH[finish], f"the answer stopped early (finishReason {finish})")
    text = response_text(response)
    if text is None:
        return fail(ErrorClass.RETRYABLE, "empty_output", f"the answer has no text (finishReason {finish or 'none'})")
    try:
        result = parse_page_result(text)
    except OutputParseError as exc:
        return fail(ErrorClass.RETRYABLE, PARSE_KIND.get(exc.kind, exc.kind), str(exc))
    return PageSuccess(key=key, result=result, usage=usage, model=model, latency_s=latency_s)


def classify_exception(key: str, exc: BaseException, *, model: str = "", latency_s: float | None = None) -> PageFailure:
    """An exception from a real-time call (after transport retries) → failure."""
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        error_class, error_type = api_error_class(exc.code, exc.status, exc.message)
    elif is_timeout(exc):
        error_class, error_type = ErrorClass.RETRYABLE, "timeout"
    else:
        error_class, error_type = ErrorClass.RETRYABLE, "transport_error"
    return PageFailure(
        key=key, error_class=error_class, error_type=error_type, message=describe_error(exc),
        traceback=scrub_traceback(exc), model=model, latency_s=latency_s,
    )


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower()


def is_transient(exc: BaseException) -> bool:
    """Worth retrying the same call: 429, 5xx, timeouts, dropped connections."""
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        return api_error_class(exc.code, exc.status, exc.message)[0] == ErrorClass.RETRYABLE and exc.code not in (
            401, 403, 404,
        )
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    module = type(exc).__module__.split(".")[0]
    return module in {"httpx", "httpx2", "httpcore", "aiohttp"}
