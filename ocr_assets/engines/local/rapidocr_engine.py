"""The default local engine: RapidOCR (PP-OCRv4 ONNX models shipped in the wheel) on the CPU, offline.

Text lines with boxes → reading order (columns) → `raw_ocr`, then the rule-based course extractor.
"""

from __future__ import annotations

import math
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from ocr_assets.core import PageOutcome
from ocr_assets.engines.local.backend import page_from_lines
from ocr_assets.engines.local.batching import SafeRange
from ocr_assets.engines.local.layout import OcrLine
from ocr_assets.engines.local.prefetch import PreparedPage
from ocr_assets.engines.local.spacing import DecodedLine, ctc_decode_with_spaces

MODEL_NAME = "rapidocr-onnxruntime/PP-OCRv4"
# RapidOCR's default: lines recognised with less mean confidence are noise (rules, specks).
TEXT_SCORE = 0.5
# Recogniser input widths are padded to a multiple of this (a cold OpenVINO run paid ~25% per line
# preparing every distinct width; 32 px of padding costs ~3% of a 1,200 px line).
WIDTH_STEP = 32

Orientation = Literal["upright", "verify", "classifier"]
Runtime = Literal["openvino", "onnxruntime"]


@dataclass(frozen=True)
class RapidOcrTuning:
    """How the RapidOCR stages run; the defaults were chosen on real scans (bench/accuracy_real.py).

    - `det_side`: the longer side of the image the detector sees (None: RapidOCR's own choice, which
      for pages over 1,500 px is 2,000 px — RapidOCR 1.4.4 ignores `limit_side_len` there). Line
      boxes are found on the small image; lines are still cut from the full-resolution page.
    - `orientation`: `upright` trusts that page lines are upright (decoded with EXIF orientation);
      `verify` runs the 0/180 classifier and turns a line only when the turned reading scores
      better; `classifier` obeys the classifier (RapidOCR's behaviour, which turned ~2% of upright
      lines on real scans upside down).
    - `rec_height`: the height lines are scaled to for the recogniser (the model was trained at 48).
    - `runtime`: what runs the same ONNX models: `openvino` or ONNX Runtime (RapidOCR's own).
    - `precision`: OpenVINO's inference precision: `auto` is OpenVINO's own choice, bfloat16 on CPUs
      with bfloat16 units (AVX512_BF16, AMX: ~1.6× faster here, CER unchanged on real scans) and f32
      elsewhere; `f32` always (ONNX Runtime's readings to 1e-3).
    """

    det_side: int | None = 960
    orientation: Orientation = "upright"
    rec_height: int = 48
    runtime: Runtime = "openvino"
    precision: Literal["auto", "f32"] = "auto"


BASELINE_TUNING = RapidOcrTuning(det_side=None, orientation="classifier", rec_height=48, runtime="onnxruntime")


class OpenVinoSession:
    """An ONNX model compiled by OpenVINO for one thread, called like RapidOCR's `OrtInferSession`.

    Used by one thread at a time (each pipeline owns its sessions).
    """

    def __init__(self, model_path: str, *, threads: int, precision: str):
        import openvino

        core = openvino.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = precision
        compiled = core.compile_model(core.read_model(model_path), "CPU", config)
        self._request = compiled.create_infer_request()
        # OpenVINO's numpy bridge initialises itself on first use, and two pipelines' threads doing
        # that at once deadlocked (pybind11's call-once, seen in a Ray actor): do it here, serially.
        _ = openvino.Tensor(np.zeros(1, dtype=np.float32)).data

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return [self._request.infer({0: batch})[0].copy()]


def use_openvino(pipeline, *, threads: int, precision: str) -> None:
    """Run the pipeline's detector and recogniser models through OpenVINO instead of ONNX Runtime."""
    import rapidocr_onnxruntime
    from rapidocr_onnxruntime.utils import read_yaml

    package = Path(rapidocr_onnxruntime.__file__).parent
    config = read_yaml(str(package / "config.yaml"))  # the model files RapidOCR itself loads
    pipeline.text_det.infer = OpenVinoSession(str(package / config["Det"]["model_path"]),
                                              threads=threads, precision=precision)
    pipeline.text_rec.session = OpenVinoSession(str(package / config["Rec"]["model_path"]),
                                                threads=threads, precision=precision)


def keep_turned(upright: DecodedLine, turned: DecodedLine) -> bool:
    """The orientation rule: a line turned 180° replaces the upright reading only if it reads better."""
    return bool(turned.text.strip()) and turned.score > upright.score


def detector_input(bgr: np.ndarray, side: int | None) -> tuple[np.ndarray, float]:
    """The page shrunk so its longer side is at most `side`, and the factor back to page pixels."""
    longer = max(bgr.shape[:2])
    if side is None or longer <= side:
        return bgr, 1.0
    factor = side / longer
    small = cv2.resize(bgr, (round(bgr.shape[1] * factor), round(bgr.shape[0] * factor)),
                       interpolation=cv2.INTER_AREA)
    return small, longer / max(small.shape[:2])


def pad_width(batch: np.ndarray, step: int) -> np.ndarray:
    """A (N, C, H, W) recogniser batch padded on the right to a multiple of `step` columns.

    Zeros, as RapidOCR pads lines itself (mid-grey after its normalisation).
    """
    missing = -batch.shape[-1] % step
    return np.pad(batch, ((0, 0), (0, 0), (0, 0), (0, missing))) if missing else batch


def default_parallelism(cores: int | None = None) -> tuple[int, int]:
    """(pages in parallel, runtime threads per page) for this many cores.

    PP-OCR's recogniser runs many small inferences with Python between them, so ONNX Runtime's
    intra-op threads scale poorly; one single-threaded pipeline per core keeps every core busy instead.
    (OpenVINO's threads do scale: on 2 cores one 2-thread pipeline is as fast, bench/RESULTS.md.)
    """
    cores = cores or os.cpu_count() or 1
    parallel = min(cores, 8)
    return parallel, max(1, cores // parallel)


class RapidOcrBackend:
    """RapidOCR pipelines (one per page in flight), each with its own OpenVINO or ONNX Runtime sessions."""

    model = MODEL_NAME
    safe_range = SafeRange(1, 32)
    # Decoded page + detector maps + crops: generous, since "auto" only needs an upper bound.
    per_item_bytes = 256 * 2**20

    def __init__(
        self, *, parallel_pages: int | None = None, threads_per_page: int | None = None, rec_batch: int = 1,
        tuning: RapidOcrTuning | None = None,
    ):
        from rapidocr_onnxruntime import RapidOCR

        default_parallel, default_threads = default_parallelism()
        self.parallel_pages = parallel_pages or default_parallel
        self.rec_batch = rec_batch
        self.tuning = tuning or RapidOcrTuning()
        threads = threads_per_page or default_threads
        # Each pipeline is used by one thread at a time; the queue hands them out.
        self._pipelines: queue.Queue = queue.Queue()
        for _ in range(self.parallel_pages):
            pipeline = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
            channels, height, width = pipeline.text_rec.rec_image_shape
            scaled_width = round(width * self.tuning.rec_height / height)
            pipeline.text_rec.rec_image_shape = [channels, self.tuning.rec_height, scaled_width]
            if self.tuning.runtime == "openvino":
                use_openvino(pipeline, threads=threads, precision=self.tuning.precision)
            self._pipelines.put(pipeline)
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
        small, factor = detector_input(bgr, self.tuning.det_side)
        boxes, _elapsed = pipeline.text_det(small)
        if boxes is None or len(boxes) == 0:
            return []
        boxes = [np.asarray(box, dtype=np.float32) * factor for box in boxes]
        crops = pipeline.get_crop_img_list(bgr, boxes)
        decoded = self.read_lines(pipeline, crops)
        lines = []
        for box, line in zip(boxes, decoded, strict=True):
            if line.score >= TEXT_SCORE and line.text.strip():
                xs, ys = box[:, 0], box[:, 1]
                lines.append(OcrLine(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()),
                                     line.text.strip(), line.score))
        return lines

    def read_lines(self, pipeline, crops: list[np.ndarray]) -> list[DecodedLine]:
        """Recognise line crops, turning them 180° as `tuning.orientation` says."""
        if self.tuning.orientation == "upright":
            return self._read_crops(pipeline.text_rec, crops)
        turned, angles, _elapsed = pipeline.text_cls(crops)  # deep-copies: `crops` stay as cut
        if self.tuning.orientation == "classifier":
            return self._read_crops(pipeline.text_rec, turned)
        decoded = self._read_crops(pipeline.text_rec, crops)
        flagged = [i for i, (label, score) in enumerate(angles)
                   if "180" in label and score > pipeline.text_cls.cls_thresh]
        for index, reading in zip(flagged, self._read_crops(pipeline.text_rec, [turned[i] for i in flagged]),
                                  strict=True):
            if keep_turned(decoded[index], reading):
                decoded[index] = reading
        return decoded

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
            batch = np.stack([recogniser.resize_norm_img(crops[i], max_ratio) for i in chunk]).astype(np.float32)
            batch = pad_width(batch, WIDTH_STEP)
            input_width = batch.shape[-1]
            probs = recogniser.session(batch)[0]
            for row, index in enumerate(chunk):
                resized = min(math.ceil(height * ratios[index]), input_width)
                decoded[index] = ctc_decode_with_spaces(
                    probs[row], characters, crops[index], input_width=input_width, resized_width=resized
                )
        return [line for line in decoded if line is not None]

    def _page(self, page: PreparedPage) -> PageOutcome:
        return page_from_lines(page, self.recognise, model=self.model)

    def run_batch(self, pages: list[PreparedPage]) -> list[PageOutcome]:
        """OCR the batch's pages in parallel (one pipeline each); outcomes in input order."""
        return list(self._pool.map(self._page, pages))
