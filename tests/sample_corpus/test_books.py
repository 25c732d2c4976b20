"""Synthetic non-catalog pages (prose, verse, genealogy, title page, index) on worn scans, and the local
engine on them: it reads them, and finds no course on any."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from ocr_assets.core import PageSuccess
from ocr_assets.engines.local.runner import LocalInference
from ocr_assets.evaluation import cer
from ocr_assets.sample_corpus.books import CONTENT_TYPE, PAGE_KINDS, PageStyle, generate_books, page_paragraphs, render_page
from ocr_assets.schema import OcrPageResult
from tests.engines.local.local_helpers import make_request


@pytest.fixture(scope="module")
def books(tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("books")
    return out, generate_books(out, books=1, pages=len(PAGE_KINDS), seed=3)


def _paths(out: Path, key: str) -> tuple[Path, Path]:
    state, school, year, page = key.split(":")
    return (out / "images" / state / school / year / f"{page}.png",
            out / "ground_truth" / state / school / year / f"{page}.json")


def test_every_kind_is_written_with_ground_truth_that_lists_no_course(books) -> None:
    out, keys = books
    kinds = set()
    for key in keys:
        image, truth_path = _paths(out, key)
        truth = OcrPageResult.model_validate_json(truth_path.read_text("utf-8"))
        assert truth.courses == [] and truth.raw_ocr.full_text().strip()
        assert truth.page_info.content_type != "course_listing"
        kinds.add(truth.page_info.content_type)
        assert Image.open(image).size == (1100, 1500)
        assert (out / "allow_list" / key.split(":")[0]).is_dir()
    assert kinds == set(CONTENT_TYPE.values())


def test_the_same_seed_writes_the_same_pages(books, tmp_path: Path) -> None:
    out, keys = books
    again = generate_books(tmp_path, books=1, pages=len(PAGE_KINDS), seed=3)
    assert again == keys
    for key in keys:
        assert _paths(out, key)[0].read_bytes() == _paths(tmp_path, key)[0].read_bytes()


def test_a_genealogy_page_is_a_numbered_list_of_births_and_marriages() -> None:
    paragraphs = page_paragraphs("genealogy", random.Random(1), 1)
    numbered = [text for role, text in paragraphs if role == "body"]
    assert numbered and all(text.startswith(f"{n}. ") and "born" in text for n, text in enumerate(numbered, 1))


def test_scans_can_be_binarised_to_one_bit_and_speckled() -> None:
    style = PageStyle(face="Liberation", size=28, italic=True, small_caps=True, skew=0.8, speckle=0.001,
                      binarise=True)
    image, blocks = render_page("prose", random.Random(2), 1, style)
    assert image.mode == "1"
    assert blocks[0].text == blocks[0].text.title()  # small capitals are written in Title Case
    assert blocks[1].font_style == "italic"


def test_the_local_engine_reads_worn_non_catalog_pages_and_finds_no_course(books) -> None:
    out, keys = books
    engine = LocalInference(device="cpu")
    try:
        outcomes = engine.infer([make_request(key, _paths(out, key)[0], page=int(key.rsplit(":", 1)[1]))
                                 for key in keys])
    finally:
        engine.close()
    for key, outcome in zip(keys, outcomes, strict=True):
        assert isinstance(outcome, PageSuccess), outcome
        truth = OcrPageResult.model_validate_json(_paths(out, key)[1].read_text("utf-8"))
        assert outcome.result.courses == [], (key, outcome.result.courses)
        assert outcome.result.page_info.content_type != "course_listing", key
        assert cer(truth.raw_ocr.full_text(), outcome.result.raw_ocr.full_text()) < 0.1, key
