"""Decode and preprocess page images on background threads, yielding batches in request order."""

from __future__ import annotations

import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from ocr_assets.core import PageFailure, PageRequest
from ocr_assets.schema import ErrorClass

IMAGE_UNREADABLE = "image_unreadable"


class ImageUnreadable(Exception):
    """The page image is missing, empty, corrupt or not an image."""


@dataclass(frozen=True)
class PreparedPage:
    """A request with its decoded RGB image, or with the fatal failure that stopped decoding.

    `scale` maps image pixels back to the upright source image's pixels (>1 when it was shrunk).
    """

    request: PageRequest
    image: Image.Image | None
    failure: PageFailure | None
    decode_s: float
    scale: float = 1.0


def load_page_image(path: Path, max_side: int) -> tuple[Image.Image, float]:
    """Decode `path` upright (EXIF orientation), as RGB, longer side at most `max_side`.

    Returns the image and the factor from its pixels to the source image's upright pixels.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageUnreadable(f"image file does not exist: {path}") from None
    except OSError as exc:
        raise ImageUnreadable(f"cannot stat image file {path}: {exc}") from exc
    if size == 0:
        raise ImageUnreadable(f"image file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():
            # A decompression-bomb-sized scan is unreadable for us, not a warning to ignore.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                source_side = max(opened.size)
                # JPEG can decode at 1/2..1/8 scale directly: far cheaper than full decode + resize.
                opened.draft("RGB", (max_side, max_side))
                image = ImageOps.exif_transpose(opened)
                image = image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageUnreadable(f"cannot decode image {path}: {exc}") from exc
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image, source_side / max(image.size)


def prepare_page(request: PageRequest, max_side: int) -> PreparedPage:
    """Load one request's image; an unreadable image becomes a fatal `PageFailure`, never an exception."""
    started = time.perf_counter()
    try:
        image, scale = load_page_image(Path(request.image_path), max_side)
    except ImageUnreadable as exc:
        failure = PageFailure(
            key=request.key,
            error_class=ErrorClass.FATAL,
            error_type=IMAGE_UNREADABLE,
            message=str(exc),
        )
        return PreparedPage(request, None, failure, time.perf_counter() - started)
    return PreparedPage(request, image, None, time.perf_counter() - started, scale)


def prefetch_batches(
    requests: Sequence[PageRequest],
    batch_size: int,
    *,
    max_side: int,
    workers: int = 2,
    ahead_batches: int = 1,
) -> Iterator[list[PreparedPage]]:
    """Yield `PreparedPage` batches in request order while the next ones decode in the background.

    At most `ahead_batches` batches beyond the one being consumed are held in memory.
    """
    if batch_size < 1 or workers < 1 or ahead_batches < 0:
        raise ValueError("batch_size and workers must be >= 1 and ahead_batches >= 0")
    window = batch_size * (ahead_batches + 1)
    pending: deque[Future[PreparedPage]] = deque()
    submitted = 0
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="page-prefetch")
    try:
        while submitted < len(requests) or pending:
            while submitted < len(requests) and len(pending) < window:
                pending.append(executor.submit(prepare_page, requests[submitted], max_side))
                submitted += 1
            batch = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
            yield batch
    finally:
        # A consumer that stops early must not leave decodes running behind it.
        executor.shutdown(wait=True, cancel_futures=True)
