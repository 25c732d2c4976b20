"""The types every layer shares: a page's inference request, its outcome, the engine errors and the
synchronous engine protocol the pipeline drives.

Below everything but `schema`: the pipeline, prompts, pricing, reports and every engine import these
from here, so no layer has to reach up into `engines/` for them. An engine answers each `PageRequest`
with a `PageSuccess` or a `PageFailure` and never raises for a single page's failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from ocr_assets.schema import OcrPageResult, PageError


class PromptIdentity(BaseModel):
    name: str
    version: str
    vars_hash: str
    template_hash: str = ""


class PageRequest(BaseModel):
    key: str
    book: str
    page: int
    image_path: Path
    prompt: str
    prompt_identity: PromptIdentity
    upstream_key: str | None = None
    # Context carried from the upstream page (text tail + last courses) as the prompt saw it.
    previous_context: dict | None = None
    # Where the context came from (`gemini.context_source`); recorded with the generation settings.
    context_source: str = "upstream_output"
    # `upstream_image`: the upstream page's image, sent (downscaled) after the page's own.
    context_image_path: Path | None = None
    attempt: int = 1


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


class PageSuccess(BaseModel):
    key: str
    result: OcrPageResult
    raw_response: str | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    model: str = ""
    latency_s: float | None = None
    # Where it ran when that is not this process (a Ray worker: "host/node id").
    worker: str | None = None


class PageFailure(PageError):
    """A `PageError` plus what the engine knows about the call that failed."""

    usage: TokenUsage = Field(default_factory=TokenUsage)
    model: str = ""
    latency_s: float | None = None
    # Where it ran when that is not this process (a Ray worker: "host/node id").
    worker: str | None = None


PageOutcome = PageSuccess | PageFailure

PricingMode = Literal["realtime", "batch", "local"]


class EngineCannotAnswer(RuntimeError):
    """The engine cannot answer any page right now: not a page's failure, so the run stops and the
    wave's records go back as they were (no attempt counted)."""


class EngineMisconfigured(EngineCannotAnswer):
    """As configured, no page can ever be answered (a 404: wrong base URL or model name)."""


class EngineUnreachable(EngineCannotAnswer):
    """The API cannot be reached at all (connection refused, DNS), after the transport retries."""


@runtime_checkable
class SyncEngine(Protocol):
    """Answers requests directly (local model, Gemini real-time, flex tier)."""

    name: str
    pricing_mode: PricingMode

    def infer(self, requests: list[PageRequest]) -> list[PageOutcome]: ...
