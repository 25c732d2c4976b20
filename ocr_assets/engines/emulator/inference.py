"""From an answer (or a fault) to what the API returns for one request, and the real-time call.

`shape` is pure: given the prepared request, the answerer's outcome and the fault drawn for this
attempt, it builds the GenerateContentResponse or the error status the caller will see.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from typing import Any

from ocr_assets.engines.emulator import faults as fault_rules
from ocr_assets.engines.emulator import model_like as model_like_rules
from ocr_assets.engines.emulator.answers import (
    CHARS_PER_TOKEN,
    IMAGE_TOKENS,
    Answer,
    AnswerError,
    answer_all,
    estimate_output_tokens,
    estimate_prompt_tokens,
    parse_page_identity,
)
from ocr_assets.engines.emulator.config import ERROR_FAULT_CODES, FaultConfig, ModelLikeConfig
from ocr_assets.engines.emulator.state import EmulatorState, Prepared
from ocr_assets.engines.emulator.wire import ApiError, generate_response, status_object, usage_metadata

RECORD_KEY_HEADER = "x-emulator-record-key"
# Image tokens billed at an explicit mediaResolution (Gemini 2.x figures); unset = IMAGE_TOKENS.
MEDIA_RESOLUTION_IMAGE_TOKENS = {"MEDIA_RESOLUTION_LOW": 64, "MEDIA_RESOLUTION_MEDIUM": 256}


@dataclass
class Outcome:
    """What one attempt of one record produced: a response or an error status, and why."""

    key: str
    outcome: str  # "ok" or the fault / failure kind (see RequestLogEntry.outcome)
    fault: str | None
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0  # answer + thinking, as billed
    cached_tokens: int = 0
    thoughts_tokens: int = 0
    invalid_field: str | None = None


_ERROR_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
         "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}


def _break_json(text: str) -> str:
    """Deterministically invalid JSON that still looks like an answer (a missing colon)."""
    if '":' in text:
        return text.replace('":', '" ', 1)
    return text + "}"


def shape(prepared: Prepared, answer: Answer | Exception | None, fault: str | None, faults: FaultConfig,
          attempt: int, model_like: ModelLikeConfig | None = None) -> Outcome:
    """The caller-visible result of one attempt: `answer` is None when a fault pre-empted inference;
    with `model_like` enabled the answer is varied like real model output and bills thinking tokens."""
    key = prepared.key
    estimated_prompt = estimate_prompt_tokens(prepared.request.prompt, prepared.image_count)
    if fault in ERROR_FAULT_CODES:
        code = ERROR_FAULT_CODES[fault]
        return Outcome(key=key, outcome=fault, fault=fault, error=status_object(code, _ERROR_MESSAGES[code]))
    if isinstance(answer, Exception) or answer is None:
        code = answer.code if isinstance(answer, AnswerError) else 500
        message = f"answerer failed: {answer}" if answer is not None else "no answer"
        return Outcome(key=key, outcome="answer_error", fault=None, error=status_object(code, message),
                       prompt_tokens=estimated_prompt)

    text: str | None = answer.text
    output_tokens = answer.output_tokens
    finish = "STOP"
    outcome = fault or "ok"
    thoughts, invalid = 0, None
    if model_like is not None and model_like.enabled:
        varied = model_like_rules.vary(text, model_like, faults.seed, key, attempt, prepared.request.response_schema)
        text, invalid = varied.text, varied.invalid_field
        output_tokens = estimate_output_tokens(text)
        thoughts = model_like_rules.thinking_tokens(model_like, faults.seed, key, attempt, prepared.thinking)
        if invalid and not fault:
            outcome = "invalid_answer"
    limit = prepared.request.max_output_tokens
    if limit and output_tokens + thoughts > limit:  # thinking counts against the output limit
        room = max(0, limit - thoughts)
        text = text[: int(room * CHARS_PER_TOKEN)]
        output_tokens, finish = room, "MAX_TOKENS"
        outcome = fault or "max_tokens"
    if fault == "malformed_json":
        text = _break_json(text)
    elif fault == "truncated":
        text = text[: fault_rules.truncate_point(faults, key, attempt, len(text))]
        output_tokens, finish = estimate_output_tokens(text), "MAX_TOKENS"
    elif fault in ("safety", "recitation"):
        text, output_tokens, finish = None, 0, fault.upper()
    per_image = MEDIA_RESOLUTION_IMAGE_TOKENS.get(prepared.media_resolution or "", IMAGE_TOKENS)
    prompt_tokens = answer.prompt_tokens + prepared.image_count * (per_image - IMAGE_TOKENS)
    usage = usage_metadata(prompt_tokens, output_tokens, prepared.cached_tokens, prepared.image_count,
                           per_image, thoughts_tokens=thoughts)
    response_id = hashlib.sha256(f"{key}:{attempt}:{faults.seed}".encode()).hexdigest()[:22]
    response = generate_response(text=text, finish_reason=finish, usage=usage, model=prepared.model,
                                 response_id=response_id)
    return Outcome(key=key, outcome=outcome, fault=fault, response=response, prompt_tokens=prompt_tokens,
                   output_tokens=output_tokens + thoughts, cached_tokens=prepared.cached_tokens,
                   thoughts_tokens=thoughts, invalid_field=invalid)


def realtime_key(body: dict[str, Any], header_key: str | None, prepared_prompt: str) -> str:
    """The record a real-time call is for: an explicit header, else the page the prompt names, else a digest."""
    if header_key:
        return header_key
    identity = parse_page_identity(prepared_prompt)
    if identity is not None:
        return identity.record_key
    return "realtime-" + hashlib.sha256(repr(sorted(body.items())).encode()).hexdigest()[:16]


def generate_content(state: EmulatorState, owner: str, model: str, body: dict[str, Any],
                     header_key: str | None = None) -> dict[str, Any]:
    """`models.generateContent`: one answer, with the same fault draw as a batch line."""
    prepared = state.prepare(owner, "", model, body)
    key = realtime_key(body, header_key, prepared.request.prompt)
    prepared.key = key
    prepared.request = replace(prepared.request, key=key)
    attempt = state.next_attempt(key)
    config = state.config
    fault = fault_rules.record_fault(config.faults, key, attempt, file_output=False)
    answer: Answer | Exception | None = None
    if fault not in ERROR_FAULT_CODES:
        with state.inference_slots:
            answer = answer_all(state.answerer, [prepared.request])[0]
    if config.realtime_latency_s:
        time.sleep(config.realtime_latency_s)
    result = shape(prepared, answer, fault, config.faults, attempt, config.model_like)
    state.log_request(prepared, key=key, batch="realtime", attempt=attempt, outcome=result.outcome, delivered=True,
                      model=prepared.model, prompt_tokens=result.prompt_tokens,
                      output_tokens=result.output_tokens, cached_tokens=result.cached_tokens,
                      thoughts_tokens=result.thoughts_tokens, invalid_field=result.invalid_field)
    if result.error is not None:
        raise ApiError(result.error["code"], result.error["message"], result.error["status"])
    return result.response or {}


def count_tokens(state: EmulatorState, owner: str, model: str, body: dict[str, Any]) -> dict[str, Any]:
    request = body.get("generateContentRequest") or body
    prepared = state.prepare(owner, "count", model, request)
    total = estimate_prompt_tokens(prepared.request.prompt, prepared.image_count)
    out: dict[str, Any] = {"totalTokens": total}
    if prepared.cached_tokens:
        out["cachedContentTokenCount"] = prepared.cached_tokens
    return out
