"""Tesseract 5 as a local engine (`local.engine: tesseract`), through `pytesseract`.

Needs the system package (`apt-get install tesseract-ocr`); the Python binding alone is not
enough. Tesseract's word boxes are grouped into its own text lines, which then go through the same
layout and course extraction as RapidOCR's (`backend.page_from_lines`).
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from ocr_assets.core import PageOutcome
from ocr_assets.engines.local.backend import page_from_lines
from ocr_assets.engines.local.batching import SafeRange
from ocr_assets.engines.local.layout import OcrLine
from ocr_assets.engines.local.prefetch import PreparedPage
from ocr_assets.engines.local.vlm_engine import ModelLoadError

MODEL_NAME = "tesseract/eng"
INSTALL_HINT = "install the system package: apt-get install tesseract-ocr (Debian/Ubuntu), brew install tesseract"


class TesseractMissing(ModelLoadError):
    """The `tesseract` program (or the `pytesseract` binding) is not installed."""


def tesseract_version() -> str:
    """The installed Tesseract's version; raises `TesseractMissing` with how to install it."""
    try:
        import pytesseract
    except ImportError as exc:
        raise TesseractMissing(f"local.engine 'tesseract' needs pytesseract (pip install pytesseract); {INSTALL_HINT}") from exc
    if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
        raise TesseractMissing(f"local.engine 'tesseract' needs the tesseract program on PATH: {INSTALL_HINT}")
    return str(pytesseract.get_tesseract_version())


def lines_from_data(data: dict[str, list]) -> list[OcrLine]:
    """Tesseract's word table (`image_to_data` as a dict) → one `OcrLine` per (block, paragraph, line).

    A line's box spans its words; its score is the mean word confidence (0-1). Rows without text
    (Tesseract's page, block and paragraph rows, conf -1) are not words.
    """
    words: dict[tuple[int, int, int], list[int]] = {}
    for index, text in enumerate(data["text"]):
        if str(text).strip() and float(data["conf"][index]) >= 0:
            key = (int(data["block_num"][index]), int(data["par_num"][index]), int(data["line_num"][index]))
            words.setdefault(key, []).append(index)
    lines = []
    for indices in words.values():
        x0 = min(int(data["left"][i]) for i in indices)
        y0 = min(int(data["top"][i]) for i in indices)
        x1 = max(int(data["left"][i]) + int(data["width"][i]) for i in indices)
        y1 = max(int(data["top"][i]) + int(data["height"][i]) for i in indices)
        text = " ".join(str(data["text"][i]).strip() for i in indices)
        score = sum(float(data["conf"][i]) for i in indices) / len(indices) / 100
        lines.append(OcrLine(float(x0), float(y0), float(x1), float(y1), text, score))
    return lines


class TesseractBackend:
    """Tesseract on the CPU: one single-threaded `tesseract` process per page in flight."""

    model = MODEL_NAME
    safe_range = SafeRange(1, 32)
    per_item_bytes = 256 * 2**20

    def __init__(self, *, parallel_pages: int | None = None, language: str = "eng"):
        self.version = tesseract_version()
        self.model = f"tesseract-{self.version}/{language}"
        self.language = language
        self.parallel_pages = parallel_pages or min(os.cpu_count() or 1, 8)
        # Tesseract's OpenMP threads fight the page-level parallelism for the same cores.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        self._pool = ThreadPoolExecutor(max_workers=self.parallel_pages, thread_name_prefix="tesseract")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def recognise(self, image: Image.Image) -> list[OcrLine]:
        """Text lines of one page, with boxes in the image's pixels."""
        import pytesseract

        data = pytesseract.image_to_data(image.convert("L"), lang=self.language, config="--psm 3",
                                         output_type=pytesseract.Output.DICT)
        return lines_from_data(data)

    def _page(self, page: PreparedPage) -> PageOutcome:
        return page_from_lines(page, self.recognise, model=self.model)

    def run_batch(self, pages: list[PreparedPage]) -> list[PageOutcome]:
        """OCR the batch's pages in parallel; outcomes in input order."""
        return list(self._pool.map(self._page, pages))
