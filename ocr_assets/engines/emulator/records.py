"""What the emulator records about each request: the request as prepared for the answerer, one
`RequestLogEntry` per request that reached inference, and one `BatchEvent` per batch lifecycle step."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pydantic import BaseModel

from ocr_assets.engines.emulator.answers import AnswerRequest

CLEAN_OUTCOMES = frozenset({"ok", "duplicate_line", "unknown_key"})


@dataclass
class Prepared:
    """A GenerateContentRequest resolved against files and caches, ready for the answerer."""

    key: str
    model: str
    request: AnswerRequest
    cache_name: str | None
    cached_tokens: int
    image_count: int
    thinking: dict | None = None
    media_resolution: str | None = None
    image_sources: tuple[str, ...] = ()

    @property
    def image_digest(self) -> str | None:
        images = self.request.images
        if not images:
            return None
        if len(images) == 1:
            return images[0].digest
        return hashlib.sha256("".join(i.digest for i in images).encode()).hexdigest()


class RequestLogEntry(BaseModel):
    """One request that reached inference (batch line or real-time call)."""

    seq: int
    key: str
    batch: str  # batch name, or "realtime"
    time: float
    model: str
    prompt: str
    image_digest: str | None
    images: int
    attempt: int  # 1 for the first time this key reached inference
    # ok | error_429 | error_500 | error_503 | malformed_json | truncated | safety | recitation | missing_line
    # | duplicate_line | unknown_key | max_tokens | invalid_request | answer_error
    outcome: str
    # The answer is complete, valid text (ok, or a clean answer whose line was duplicated / joined by an
    # unknown key): together with `delivered`, what a client may count as a success.
    clean: bool = False
    # Whether the caller could see this answer: None while its batch runs; False when the line never
    # reached the caller (missing line, dropped by EXPIRED, batch cancelled).
    delivered: bool | None = None
    cached_content: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0  # answer + thinking tokens, as billed
    cached_tokens: int = 0
    thoughts_tokens: int = 0
    # What the request asked for besides its content (generationConfig), as received.
    response_schema: dict | None = None
    thinking: dict | None = None
    media_resolution: str | None = None
    image_sources: list[str] = []  # "inline" | "file", one per image, in order
    invalid_field: str | None = None  # model-like `invalid` answers: the contract field broken


class BatchEvent(BaseModel):
    """A batch lifecycle step, with the estimated tokens enqueued across active batches right after it."""

    seq: int
    time: float
    event: str  # created | running | succeeded | failed | expired | cancelled | deleted | rejected
    batch: str | None
    tokens: int
    enqueued_tokens: int
    active_batches: int
    detail: str | None = None
