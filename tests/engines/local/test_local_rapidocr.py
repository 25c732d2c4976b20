"""The default engine end to end on a page rendered with Pillow: OCR reads it back, with word spaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocr_assets.core import PageSuccess
from ocr_assets.engines.local.runner import LocalInference
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
