"""The default local engine: RapidOCR (PP-OCRv4 ONNX models shipped in the wheel) on the CPU, offline.

Text lines with boxes → reading order (columns) → `raw_ocr`, then the rule-based course extractor.
"""

from __future__ import annotations

import json
import math
import os
import queue
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from ocr_assets.core import PageOutcome, PageSuccess
from ocr_assets.engines.local.backend import page_failure
from ocr_assets.engines.local.batching import SafeRange
from ocr_assets.engines.local.course_extractor import extract_page
from ocr_assets.engines.local.layout import OcrLine, raw_ocr_from_layout, reading_order
from ocr_assets.engines.local.prefetch import PreparedPage
from ocr_assets.engines.local.spacing import DecodedLine, ctc_decode_with_spaces
from ocr_assets.schema import ErrorClass

MODEL_NAME = "rapidocr-onnxruntime/PP-OCRv4"
# RapidOCR's default: lines recognised with less mean confidence are noise (rules, specks).
TEXT_SCORE = 0.5


def default_parallelism(cores: int | None = None) -> tuple[int, int]:
    """(pages in parallel, ONNX Runtime threads per page) for this many cores.

    PP-OCR's recogniser runs many small inferences with Python between them, so intra-op threads
    scale poorly; one single-threaded pipeline per core keeps every core busy instead.
    """
    cores = cores or os.cpu_count() or 1
    parallel = min(cores, 8)
    return parallel, max(1, cores // parallel)


class RapidOcrBackend:
    """RapidOCR pipelines (one per page in flight), each with its own ONNX Runtime sessions."""

    model = MODEL_NAME
    safe_range = SafeRange(1, 32)
    # Decoded page + detector maps + crops: generous, since "auto" only needs an upper bound.
    per_item_bytes = 256 * 2**20

    def __init__(
        self, *, parallel_pages: int | None = None, threads_per_page: int | None = None, rec_batch: int = 1
    ):
        from rapidocr_onnxruntime import RapidOCR

        default_parallel, default_threads = default_parallelism()
        self.parallel_pages = parallel_pages or default_parallel
        self.rec_batch = rec_batch
        threads = threads_per_page or default_threads
        # Each pipeline is used by one thread at a time; the queue hands them out.
        self._pipelines: queue.Queue = queue.Queue()
        for _ in range(self.parallel_pages):
            self._pipelines.put(RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1))
        self._pool = ThreadPoolExecutor(max_workers=self.parallel_pages, thread_name_prefix="rapidocr")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def recognise(self, image: Image.Image) -> list[OcrLine]:
        """Detected and recognised text lines of one RGB page, with axis-aligned boxes."""
        pipeline = self._pipelines.get()
        try:
            return self._recognise(pipeline, np.ascontiguousarray(np.asarray(image)[:, :, ::-1]))
        finally:
            self._pipelines.put(pipeline)

    def _recognise(self, pipeline, bgr: np.ndarray) -> list[OcrLine]:
        # RapidOCR's own stages (detector, angle classifier, recogniser sessions), with our decoding:
        # its decoder drops most word spaces of English print (see spacing.py).
        boxes, _elapsed = pipeline.text_det(bgr)
        if boxes is None or len(boxes) == 0:
            return []
        crops = pipeline.get_crop_img_list(bgr, list(boxes))
        crops, _angles, _elapsed = pipeline.text_cls(crops)
        decoded = self._read_crops(pipeline.text_rec, crops)
        lines = []
        for box, line in zip(boxes, decoded, strict=True):
            if line.score >= TEXT_SCORE and line.text.strip():
                xs, ys = box[:, 0], box[:, 1]
                lines.append(OcrLine(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()),
                                     line.text.strip(), line.score))
        return lines

    def _read_crops(self, recogniser, crops: list[np.ndarray]) -> list[DecodedLine]:
        """Recognise line crops in batches of `rec_batch`, grouped by aspect ratio (less padding).

        One crop per call is the default: on a single-threaded CPU session the PP-OCRv4 recogniser
        ran 1.5-1.7× faster per page unbatched than in batches of 8 (bench/local_throughput.py),
        more than the padding alone explains.
        """
        _channels, height, base_width = recogniser.rec_image_shape
        characters = recogniser.postprocess_op.character
        ratios = [crop.shape[1] / crop.shape[0] for crop in crops]
        order = sorted(range(len(crops)), key=ratios.__getitem__)
        decoded: list[DecodedLine | None] = [None] * len(crops)
        for start in range(0, len(order), self.rec_batch):
            chunk = order[start : start + self.rec_batch]
            max_ratio = max(base_width / height, *(ratios[i] for i in chunk))
            input_width = int(height * max_ratio)
            batch = np.stack([recogniser.resize_norm_img(crops[i], max_ratio) for i in chunk]).astype(np.float32)
            probs = recogniser.session(batch)[0]
            for row, index in enumerate(chunk):
                resized = min(math.ceil(height * ratios[index]), input_width)
                decoded[index] = ctc_decode_with_spaces(
                    probs[row], characters, crops[index], input_width=input_width, resized_width=resized
                )
        return [line for line in decoded if line is not None]

    def _page(self, page: PreparedPage) -> PageOutcome:
        request = page.request
        started = time.perf_counter()
        raw: str | None = None
        try:
            assert page.image is not None
            lines = [line.scaled(page.scale) for line in self.recognise(page.image)]
            raw = json.dumps([[[l.x0, l.y0, l.x1, l.y1], l.text, round(l.score, 4)] for l in lines])
            layout = reading_order(lines)
            result = extract_page(
                raw_ocr_from_layout(layout), layout.row_texts(), page=request.page,
                previous_context=request.previous_context,
            )
        except MemoryError as exc:
            return page_failure(request.key, ErrorClass.RETRYABLE, "out_of_memory", exc, model=self.model,
                                raw_response=raw, latency_s=time.perf_counter() - started)
        except Exception as exc:  # one page's fault must not fail the batch
            return page_failure(request.key, ErrorClass.RETRYABLE, "engine_error", exc, model=self.model,
                                raw_response=raw, latency_s=time.perf_counter() - started)
        return PageSuccess(key=request.key, result=result, raw_response=raw, model=self.model,
                           latency_s=time.perf_counter() - started)

    def run_batch(self, pages: list[PreparedPage]) -> list[PageOutcome]:
        """OCR the batch's pages in parallel (one pipeline each); outcomes in input order."""
        return list(self._pool.map(self._page, pages))
