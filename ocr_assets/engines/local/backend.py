"""The contract between `LocalInference` and a model backend (RapidOCR, transformers VLM)."""

from __future__ import annotations

import traceback
from typing import Protocol

from ocr_assets.core import PageFailure, PageOutcome
from ocr_assets.engines.local.batching import SafeRange
from ocr_assets.engines.local.prefetch import PreparedPage
from ocr_assets.schema import ErrorClass


class PageBackend(Protocol):
    """A loaded model on one device that answers a batch of decoded pages.

    `run_batch` returns one outcome per page, in order. It raises only for CUDA out-of-memory
    (so the caller can back off) or for a fault that spoils the whole batch.
    """

    model: str
    safe_range: SafeRange
    # Rough memory one page needs in flight; with free memory it sizes `batch_size="auto"`.
    per_item_bytes: int

    def run_batch(self, pages: list[PreparedPage]) -> list[PageOutcome]: ...


def page_failure(
    key: str,
    error_class: ErrorClass,
    error_type: str,
    exc: BaseException | str,
    *,
    model: str,
    raw_response: str | None = None,
    latency_s: float | None = None,
) -> PageFailure:
    """A `PageFailure` from an exception (keeping its traceback) or a plain message."""
    is_exc = isinstance(exc, BaseException)
    return PageFailure(
        key=key,
        error_class=error_class,
        error_type=error_type,
        message=f"{type(exc).__name__}: {exc}" if is_exc else exc,
        raw_response=raw_response,
        traceback="".join(traceback.format_exception(exc)) if is_exc else None,
        model=model,
        latency_s=latency_s,
    )
