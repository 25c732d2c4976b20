"""`local.engine: tesseract`: Tesseract's word table grouped into lines, and the engine end to end.

The end-to-end tests need the `tesseract` program: they skip without it on a developer's machine
and FAIL under CI=true, where `.ci/run` installs `tesseract-ocr`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocr_assets.core import PageSuccess
from ocr_assets.engines.local.layout import OcrLine
from ocr_assets.engines.local.runner import LocalInference
from ocr_assets.engines.local.tesseract_engine import TesseractMissing, lines_from_data, tesseract_version
from ocr_assets.evaluation import cer
from tests.engines.local.local_helpers import make_request, render_lines


def require_tesseract() -> str:
    try:
        return tesseract_version()
    except TesseractMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f".ci/run installs tesseract-ocr, yet: {exc}")
        pytest.skip(str(exc))


def test_words_are_grouped_into_tesseract_lines_with_spanning_boxes() -> None:
    data = {  # image_to_data's columns: a page row, a block row, then words of two lines
        "level": [1, 2, 5, 5, 5, 5],
        "block_num": [0, 1, 1, 1, 1, 1], "par_num": [0, 1, 1, 1, 1, 1], "line_num": [0, 0, 1, 1, 2, 2],
        "left": [0, 10, 10, 80, 12, 90], "top": [0, 10, 10, 12, 50, 52],
        "width": [500, 300, 60, 70, 70, 40], "height": [400, 80, 20, 18, 20, 20],
        "conf": [-1, -1, 96, 90, 80, 70], "text": ["", "", "Analytic", "Geometry.", "Three", "hours."],
    }
    assert lines_from_data(data) == [
        OcrLine(10.0, 10.0, 150.0, 30.0, "Analytic Geometry.", pytest.approx(0.93)),
        OcrLine(12.0, 50.0, 130.0, 72.0, "Three hours.", pytest.approx(0.75)),
    ]


def test_blank_words_and_rows_without_confidence_are_not_lines() -> None:
    data = {"block_num": [1, 1], "par_num": [1, 1], "line_num": [1, 1], "left": [0, 5], "top": [0, 5],
            "width": [5, 5], "height": [5, 5], "conf": [-1, 95], "text": ["ghost", "  "]}
    assert lines_from_data(data) == []


def test_a_missing_tesseract_program_is_a_load_error_that_says_how_to_install_it(monkeypatch) -> None:
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    with pytest.raises(TesseractMissing, match="apt-get install tesseract-ocr"):
        tesseract_version()


def test_tesseract_reads_a_rendered_catalog_entry_into_the_same_layout_and_courses(tmp_path: Path) -> None:
    version = require_tesseract()
    lines = ["DEPARTMENT OF MATHEMATICS", "12. Analytic Geometry.", "Three hours a week. Fall term. Professor Smith."]
    path = render_lines(tmp_path / "page.png", lines, size=(1000, 260))
    engine = LocalInference(engine="tesseract", device="cpu")
    try:
        (outcome,) = engine.infer([make_request("CA:test:1900:3", path, page=3)])
    finally:
        engine.close()
    assert isinstance(outcome, PageSuccess), outcome
    assert outcome.model == f"tesseract-{version}/eng"
    text = outcome.result.raw_ocr.full_text()
    assert cer("\n".join(lines), text) < 0.05, text
    (course,) = outcome.result.courses
    assert (course.course_name, course.department, course.term) == ("Analytic Geometry", "Mathematics", "Fall term")
    assert outcome.result.page_info.content_type == "course_listing"
