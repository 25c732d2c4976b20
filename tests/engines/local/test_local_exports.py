"""TXT, courses CSV and ALTO XML written beside a page's JSON output."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from PIL import Image

from ocr_assets.engines.local.exports import (
    ALTO_NS,
    alto_xml,
    courses_csv,
    page_text,
    parse_formats,
    write_exports,
)
from ocr_assets.schema import Course, OcrPageResult, PageInfo, RawOcr, TextBlock, Textbook

RESULT = OcrPageResult(
    raw_ocr=RawOcr(text_blocks=[
        TextBlock(block_id=0, position=[100, 50, 500, 80], text="DEPARTMENT OF MATHEMATICS"),
        TextBlock(block_id=1, position=[100, 100, 700, 160], text="12. Analytic Geometry.\nThree hours & more."),
        TextBlock(block_id=2, position="bottom left", text="7"),
    ]),
    page_info=PageInfo(page_number=7),
    courses=[Course(course_name="Analytic Geometry", department="Mathematics", term="Fall term",
                    instructors=["Professor Smith", "Mr. Brown"],
                    textbooks=[Textbook(title="Analytic Geometry", author="Wentworth"), Textbook(title="Tables")],
                    topics=["the conic sections"], description='A "study", with commas.')],
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("json", ["json"]), ("txt,alto", ["json", "txt", "alto"]), (" CSV , json ", ["json", "csv"]), ("", ["json"])],
)
def test_formats_always_include_json(spec: str, expected: list[str]) -> None:
    assert parse_formats(spec) == expected


def test_unknown_formats_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown format.*pdf"):
        parse_formats("json,pdf")


def test_text_is_the_blocks_in_reading_order() -> None:
    assert page_text(RESULT) == "DEPARTMENT OF MATHEMATICS\n12. Analytic Geometry.\nThree hours & more.\n7\n"


def test_courses_csv_has_one_row_per_course_with_joined_lists() -> None:
    rows = list(csv.DictReader(io.StringIO(courses_csv(RESULT, "CA:x:1900:7"))))
    assert rows == [{
        "key": "CA:x:1900:7", "page": "7", "department": "Mathematics", "course_name": "Analytic Geometry",
        "level": "", "term": "Fall term", "instructors": "Professor Smith; Mr. Brown",
        "textbooks": "Wentworth, Analytic Geometry; Tables", "topics": "the conic sections",
        "description": 'A "study", with commas.',
    }]


def test_alto_has_blocks_lines_and_words_with_pixel_geometry() -> None:
    root = ET.fromstring(alto_xml(RESULT, image_name="7.jpg", image_size=(1000, 1400)))
    ns = {"a": ALTO_NS}
    assert root.tag == f"{{{ALTO_NS}}}alto"
    assert root.find("a:Description/a:sourceImageInformation/a:fileName", ns).text == "7.jpg"
    page = root.find("a:Layout/a:Page", ns)
    assert (page.get("WIDTH"), page.get("HEIGHT"), page.get("PRINTED_IMG_NR")) == ("1000", "1400", "7")
    blocks = page.findall("a:PrintSpace/a:TextBlock", ns)
    assert len(blocks) == 3
    assert [blocks[0].get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")] == ["100", "50", "400", "30"]
    lines = blocks[1].findall("a:TextLine", ns)
    assert [line.get("VPOS") for line in lines] == ["100", "130"]
    words = [s.get("CONTENT") for s in lines[1].findall("a:String", ns)]
    assert words == ["Three", "hours", "&", "more."]
    assert len(lines[1].findall("a:SP", ns)) == 3
    assert blocks[2].get("HPOS") is None  # no box known: no invented geometry
    assert blocks[2].find("a:TextLine/a:String", ns).get("CONTENT") == "7"


def test_write_exports_puts_each_format_beside_the_json(tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    Image.new("RGB", (640, 480)).save(image)
    json_path = tmp_path / "out" / "7.json"
    json_path.parent.mkdir()
    json_path.write_text(RESULT.to_json())
    written = write_exports(RESULT, json_path, ["json", "txt", "csv", "alto"], key="CA:x:1900:7", image_path=image)
    assert [p.name for p in written] == ["7.txt", "7.csv", "7.alto.xml"]
    alto = ET.parse(written[2]).getroot()
    assert alto.find(f"{{{ALTO_NS}}}Layout/{{{ALTO_NS}}}Page").get("WIDTH") == "640"
    assert written[0].read_text().startswith("DEPARTMENT OF MATHEMATICS")
