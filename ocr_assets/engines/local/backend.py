"""The contract between `LocalInference` and a model backend (RapidOCR, transformers VLM)."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from PIL import Image

from ocr_assets.core import PageFailure, PageOutcome, PageSuccess
from ocr_assets.engines.local.batching import SafeRange
from ocr_assets.engines.local.course_extractor import extract_page
from ocr_assets.engines.local.layout import OcrLine, raw_ocr_from_layout, reading_order
from ocr_assets.engines.local.old_print import fix_old_print
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


def page_from_lines(
    page: PreparedPage, recognise: Callable[[Image.Image], list[OcrLine]], *, model: str
) -> PageOutcome:
    """One page through a line recogniser (RapidOCR, Tesseract), the old-print fixes, the shared layout
    and the course extractor.

    The raw response keeps every line with its box and score; a fault becomes this page's failure.
    """
    request = page.request
    started = time.perf_counter()
    raw: str | None = None
    try:
        assert page.image is not None
        lines = [line.scaled(page.scale) for line in recognise(page.image)]
        # The raw response keeps the recogniser's own reading; layout and extraction see the fixed one.
        raw = json.dumps([[[l.x0, l.y0, l.x1, l.y1], l.text, round(l.score, 4)] for l in lines])
        layout = reading_order([replace(line, text=fix_old_print(line.text)) for line in lines])
        result = extract_page(
            raw_ocr_from_layout(layout), layout.row_texts(), page=request.page,
            previous_context=request.previous_context,
        )
    except MemoryError as exc:
        return page_failure(request.key, ErrorClass.RETRYABLE, "out_of_memory", exc, model=model,
                            raw_response=raw, latency_s=time.perf_counter() - started)
    except Exception as exc:  # one page's fault must not fail the batch
        return page_failure(request.key, ErrorClass.RETRYABLE, "engine_error", exc, model=model,
                            raw_response=raw, latency_s=time.perf_counter() - started)
    return PageSuccess(key=request.key, result=result, raw_response=raw, model=model,
                       latency_s=time.perf_counter() - started)
