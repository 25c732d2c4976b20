"""The default engine end to end on a page rendered with Pillow: OCR reads it back, with word spaces;
the orientation rule and the detector's input size on lines the tests render."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocr_assets.core import PageSuccess
from ocr_assets.engines.local.rapidocr_engine import (
    RapidOcrBackend,
    RapidOcrTuning,
    detector_input,
    keep_turned,
    pad_width,
)
from ocr_assets.engines.local.runner import LocalInference
from ocr_assets.engines.local.layout import reading_order
from ocr_assets.engines.local.spacing import DecodedLine
from ocr_assets.evaluation import cer
from tests.engines.local.local_helpers import make_request, render_columns, render_lines

LINES = [
    "DEPARTMENT OF MATHEMATICS",
    "12. Analytic Geometry.",
    "Three hours a week. Fall term. Professor Smith.",
    "Text: Wentworth, Analytic Geometry.",
]


@pytest.fixture(scope="module")
def engine():
    inference = LocalInference(device="cpu")
    yield inference
    inference.close()


def test_rapidocr_reads_a_rendered_catalog_entry_back(engine: LocalInference, tmp_path: Path) -> None:
    path = render_lines(tmp_path / "page.png", LINES, size=(1000, 330))
    (outcome,) = engine.infer([make_request("CA:test:1900:3", path, page=3)])
    assert isinstance(outcome, PageSuccess), outcome
    result = outcome.result
    text = result.raw_ocr.full_text()
    assert cer("\n".join(LINES), text) < 0.05, text
    assert [block.text for block in result.raw_ocr.text_blocks] == LINES
    first = result.raw_ocr.text_blocks[0]
    assert isinstance(first.position, list) and 30 <= first.position[0] <= 60
    (course,) = result.courses
    assert (course.course_name, course.department, course.term, course.instructors) == (
        "Analytic Geometry", "Mathematics", "Fall term", ["Professor Smith"])
    assert course.textbooks[0].author == "Wentworth"
    assert result.page_info.page_number == 3
    assert outcome.usage.prompt_tokens == 0 and outcome.latency_s and outcome.latency_s > 0
    assert outcome.model == "rapidocr-onnxruntime/PP-OCRv4"
    assert outcome.raw_response and "Analytic" in outcome.raw_response


def test_a_blank_page_is_a_success_with_no_text(engine: LocalInference, tmp_path: Path) -> None:
    path = render_lines(tmp_path / "blank.png", [])
    (outcome,) = engine.infer([make_request("CA:test:1900:4", path)])
    assert isinstance(outcome, PageSuccess)
    assert outcome.result.raw_ocr.text_blocks == []
    assert outcome.result.page_info.content_type == "other"


def test_a_two_column_page_is_read_column_by_column(engine: LocalInference, tmp_path: Path) -> None:
    # The end of an index: a long left column, a short right one, the page number centred below.
    left = [f"{subject} Prose Composition {number}, {number % 9 + 2}" for number in range(1, 16)
            for subject in ("Greek", "Latin")]
    right = ["The English Novel, 7", "Thucydides, 9", "Virgil, 9"]
    path = render_columns(tmp_path / "index.png", left, right, foot="12", size=(1000, 1140), font_size=20)
    (outcome,) = engine.infer([make_request("CA:test:1900:12", path, page=12)])
    assert isinstance(outcome, PageSuccess), outcome
    assert [block.text for block in outcome.result.raw_ocr.text_blocks] == [*left, *right, "12"]
    assert outcome.result.raw_ocr.layout_description.startswith("two columns")


# -- orientation rule and detector input ----------------------------------------------------------

ORIENTATION_LINES = ["Elementary Algebra and Geometry", "Trigonometry"]  # one word: one box when turned


@pytest.mark.parametrize(
    ("upright", "turned", "keep"),
    [
        (DecodedLine("Algebra", 0.95), DecodedLine("eıqəbɩA", 0.41), False),
        (DecodedLine("ʎɹʇǝɯoǝ⅁", 0.40), DecodedLine("Geometry", 0.93), True),
        (DecodedLine("Latin", 0.80), DecodedLine("Latin", 0.80), False),  # a tie keeps the page upright
        (DecodedLine("", 0.0), DecodedLine("   ", 0.9), False),  # a turned reading of nothing is nothing
    ],
)
def test_a_turned_line_replaces_the_upright_reading_only_when_it_reads_better(upright, turned, keep) -> None:
    assert keep_turned(upright, turned) is keep


def _page_with_a_turned_line(path: Path) -> Image.Image:
    """Two printed lines, the second turned upside down (as a rotated paste-in would be)."""
    render_lines(path, ORIENTATION_LINES[:1], size=(900, 120))
    upright = Image.open(path).convert("RGB")
    render_lines(path, ORIENTATION_LINES[1:], size=(900, 120))
    turned = Image.open(path).convert("RGB").rotate(180)
    page = Image.new("RGB", (900, 240), "white")
    page.paste(upright, (0, 0))
    page.paste(turned, (0, 120))
    return page


def _texts(lines) -> list[str]:
    return reading_order(lines).row_texts()  # the detector may cut a line in pieces


def test_verify_turns_a_line_that_is_really_upside_down(tmp_path: Path) -> None:
    backend = RapidOcrBackend(parallel_pages=1, threads_per_page=1, tuning=RapidOcrTuning(orientation="verify"))
    page = _page_with_a_turned_line(tmp_path / "line.png")
    texts = _texts(backend.recognise(page))
    assert cer("\n".join(ORIENTATION_LINES), "\n".join(texts)) < 0.05, texts


def test_verify_keeps_upright_lines_the_classifier_calls_upside_down(tmp_path: Path, monkeypatch) -> None:
    # The fault seen on real scans: the 0/180 classifier flags upright print as turned.
    from rapidocr_onnxruntime.ch_ppocr_cls.text_cls import TextClassifier

    def everything_turned(self, crops):
        return [np.ascontiguousarray(np.rot90(crop, 2)) for crop in crops], [["180", 0.99]] * len(crops), 0.0

    monkeypatch.setattr(TextClassifier, "__call__", everything_turned)
    path = render_lines(tmp_path / "page.png", ORIENTATION_LINES, size=(900, 160))
    image = Image.open(path).convert("RGB")
    obeyed = RapidOcrBackend(parallel_pages=1, threads_per_page=1, tuning=RapidOcrTuning(orientation="classifier"))
    verified = RapidOcrBackend(parallel_pages=1, threads_per_page=1, tuning=RapidOcrTuning(orientation="verify"))
    assert cer("\n".join(ORIENTATION_LINES), "\n".join(_texts(obeyed.recognise(image)))) > 0.3
    texts = _texts(verified.recognise(image))
    assert cer("\n".join(ORIENTATION_LINES), "\n".join(texts)) < 0.05, texts


@pytest.mark.parametrize(
    ("shape", "side", "small_shape", "factor"),
    [
        ((2338, 1783, 3), 1280, (1280, 976, 3), 2338 / 1280),
        ((1400, 1000, 3), 1280, (1280, 914, 3), 1400 / 1280),
        ((800, 600, 3), 1280, (800, 600, 3), 1.0),  # never enlarged
        ((2338, 1783, 3), None, (2338, 1783, 3), 1.0),
    ],
)
def test_the_detector_sees_the_page_shrunk_to_its_side_limit(shape, side, small_shape, factor) -> None:
    small, back = detector_input(np.zeros(shape, dtype=np.uint8), side)
    assert small.shape == small_shape
    assert back == pytest.approx(factor, rel=1e-3)


def test_line_boxes_found_on_the_shrunk_page_are_in_page_pixels(tmp_path: Path) -> None:
    path = render_lines(tmp_path / "big.png", ORIENTATION_LINES, size=(2400, 400), font_size=60)
    image = Image.open(path).convert("RGB")
    backend = RapidOcrBackend(parallel_pages=1, threads_per_page=1, tuning=RapidOcrTuning(det_side=960))
    first, second = sorted(backend.recognise(image), key=lambda line: line.y0)
    assert 20 <= first.x0 <= 60 and first.y0 < 40 < first.y1  # render_lines draws at (40, 30)
    assert first.x1 > 1000 and second.y0 > first.y1  # beyond 960: not in the shrunk image's pixels
    assert cer("\n".join(ORIENTATION_LINES), f"{first.text}\n{second.text}") < 0.05


def test_recogniser_batches_are_padded_to_the_width_step_with_what_rapidocr_pads() -> None:
    batch = np.ones((1, 3, 48, 330), dtype=np.float32)
    padded = pad_width(batch, 32)
    assert padded.shape == (1, 3, 48, 352)
    assert np.array_equal(padded[..., :330], batch) and not padded[..., 330:].any()
    assert pad_width(padded, 32) is padded  # already a multiple: untouched


@pytest.mark.parametrize("precision", ["f32", "auto"])
def test_openvino_reads_a_rendered_page_as_onnx_runtime_does(tmp_path: Path, precision: str) -> None:
    path = render_lines(tmp_path / "page.png", LINES, size=(1000, 330))
    image = Image.open(path).convert("RGB")
    readings = {}
    for runtime in ("onnxruntime", "openvino"):
        backend = RapidOcrBackend(parallel_pages=1, threads_per_page=1,
                                  tuning=RapidOcrTuning(runtime=runtime, precision=precision))
        readings[runtime] = _texts(backend.recognise(image))
        backend.close()
    assert cer("\n".join(LINES), "\n".join(readings["openvino"])) < 0.02, readings
    if precision == "f32":  # same models, same arithmetic: the same reading
        assert readings["openvino"] == readings["onnxruntime"]


def test_the_default_runtime_is_openvino_and_onnx_runtime_stays_selectable() -> None:
    from ocr_assets.engines.local.rapidocr_engine import OpenVinoSession

    default = RapidOcrBackend(parallel_pages=1, threads_per_page=1)
    pipeline = default._pipelines.get()
    assert isinstance(pipeline.text_rec.session, OpenVinoSession)
    assert isinstance(pipeline.text_det.infer, OpenVinoSession)
    ort = RapidOcrBackend(parallel_pages=1, threads_per_page=1, tuning=RapidOcrTuning(runtime="onnxruntime"))
    assert not isinstance(ort._pipelines.get().text_rec.session, OpenVinoSession)


_FIRST_CALLS_AT_ONCE = """
import sys, threading
import numpy as np
from ocr_assets.engines.local.rapidocr_engine import RapidOcrBackend
backend = RapidOcrBackend(parallel_pages=2, threads_per_page=1)
pipelines = [backend._pipelines.get(), backend._pipelines.get()]
start = threading.Barrier(2)
def first_call(pipeline):
    start.wait()
    pipeline.text_det.infer(np.zeros((1, 3, 64, 64), dtype=np.float32))
threads = [threading.Thread(target=first_call, args=(p,), daemon=True) for p in pipelines]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(60)
sys.exit(1 if any(thread.is_alive() for thread in threads) else 0)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_two_pipelines_calling_openvino_first_at_once_do_not_deadlock(attempt: int) -> None:
    # A fresh process each time: the deadlock (OpenVINO's numpy bridge initialised by two threads at
    # once) could only happen on a process's first inference; it hung ~1 in 12 such starts on one core.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FIRST_CALLS_AT_ONCE], timeout=120, cwd=Path(__file__).parents[3])
    assert done.returncode == 0
