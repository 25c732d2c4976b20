"""Extra output formats for a page result: plain text, a courses CSV, and ALTO XML (v4).

JSON (the `OcrPageResult` itself) is always written by the pipeline; these sit next to it with
the same stem: `12.json` → `12.txt`, `12.csv`, `12.alto.xml`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree as ET

from ocr_assets.outputs import atomic_write_text
from ocr_assets.schema import OcrPageResult, TextBlock

ExportFormat = Literal["json", "txt", "csv", "alto"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("json", "txt", "csv", "alto")
SUFFIXES: dict[ExportFormat, str] = {"txt": ".txt", "csv": ".csv", "alto": ".alto.xml"}
CSV_COLUMNS = [
    "key", "page", "department", "course_name", "level", "term", "instructors", "textbooks", "topics", "description",
]
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
ALTO_SCHEMA = "http://www.loc.gov/standards/alto/v4/alto-4-2.xsd"


def parse_formats(spec: str | Iterable[str]) -> list[ExportFormat]:
    """`"json,txt"` → `["json", "txt"]`; JSON is always included; unknown names raise `ValueError`."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    wanted = {name.strip().lower() for name in names if name.strip()}
    unknown = wanted - set(EXPORT_FORMATS)
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(sorted(unknown))}; choose from {', '.join(EXPORT_FORMATS)}")
    return [fmt for fmt in EXPORT_FORMATS if fmt in wanted or fmt == "json"]


def page_text(result: OcrPageResult) -> str:
    """The page's text in reading order, one block per paragraph."""
    return result.raw_ocr.full_text() + "\n"


def courses_csv(result: OcrPageResult, key: str) -> str:
    """One row per course; list fields joined with `; ` (textbooks as `Author, Title`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for course in result.courses:
        writer.writerow({
            "key": key,
            "page": result.page_info.page_number,
            "department": course.department or "",
            "course_name": course.course_name,
            "level": course.level or "",
            "term": course.term or "",
            "instructors": "; ".join(course.instructors),
            "textbooks": "; ".join(", ".join(p for p in (t.author, t.title) if p) for t in course.textbooks),
            "topics": "; ".join(course.topics),
            "description": course.description or "",
        })
    return buffer.getvalue()


def q(tag: str) -> str:
    """An ALTO-namespaced tag name."""
    return f"{{{ALTO_NS}}}{tag}"


def _box(block: TextBlock) -> tuple[float, float, float, float] | None:
    position = block.position
    if isinstance(position, list) and len(position) == 4:
        x0, y0, x1, y1 = (float(v) for v in position)
        return x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)
    return None


def _geometry(element: ET.Element, box: tuple[float, float, float, float] | None) -> None:
    if box is not None:
        for name, value in zip(("HPOS", "VPOS", "WIDTH", "HEIGHT"), box, strict=True):
            element.set(name, str(round(value)))


def alto_xml(result: OcrPageResult, *, image_name: str, image_size: tuple[int, int] | None) -> str:
    """ALTO v4: a TextBlock per text block, a TextLine per line, a String per word.

    Word boxes are not known: each word gets a share of its line's box by character count.
    """
    ET.register_namespace("", ALTO_NS)
    root = ET.Element(q("alto"))
    root.set("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation", f"{ALTO_NS} {ALTO_SCHEMA}")
    description = ET.SubElement(root, q("Description"))
    ET.SubElement(description, q("MeasurementUnit")).text = "pixel"
    source = ET.SubElement(description, q("sourceImageInformation"))
    ET.SubElement(source, q("fileName")).text = image_name
    page = ET.SubElement(ET.SubElement(root, q("Layout")), q("Page"), ID="P1", PHYSICAL_IMG_NR="1")
    if result.page_info.page_number is not None:
        page.set("PRINTED_IMG_NR", str(result.page_info.page_number))
    if image_size is not None:
        page.set("WIDTH", str(image_size[0]))
        page.set("HEIGHT", str(image_size[1]))
    space = ET.SubElement(page, q("PrintSpace"))
    if image_size is not None:
        _geometry(space, (0, 0, *image_size))
    for b, block in enumerate(result.raw_ocr.text_blocks, start=1):
        box = _box(block)
        text_block = ET.SubElement(space, q("TextBlock"), ID=f"TB{b}")
        _geometry(text_block, box)
        lines = [line for line in block.text.split("\n") if line.strip()]
        for l, line in enumerate(lines, start=1):
            line_box = None
            if box is not None:
                height = box[3] / len(lines)
                line_box = (box[0], box[1] + (l - 1) * height, box[2], height)
            text_line = ET.SubElement(text_block, q("TextLine"), ID=f"TB{b}_L{l}")
            _geometry(text_line, line_box)
            words = line.split()
            chars = max(len(line), 1)
            offset = 0
            for w, word in enumerate(words, start=1):
                if w > 1:
                    ET.SubElement(text_line, q("SP"))
                start = line.index(word, offset)
                offset = start + len(word)
                string = ET.SubElement(text_line, q("String"), ID=f"TB{b}_L{l}_W{w}", CONTENT=word)
                if line_box is not None:
                    unit = line_box[2] / chars
                    _geometry(string, (line_box[0] + start * unit, line_box[1], len(word) * unit, line_box[3]))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_exports(
    result: OcrPageResult,
    json_path: Path,
    formats: Iterable[ExportFormat],
    *,
    key: str,
    image_path: Path | None = None,
) -> list[Path]:
    """Write the non-JSON `formats` next to `json_path` (atomically); returns the paths written."""
    written: list[Path] = []
    stem = json_path.with_suffix("")
    for fmt in formats:
        if fmt == "json":
            continue
        path = stem.with_name(stem.name + SUFFIXES[fmt])
        if fmt == "txt":
            atomic_write_text(path, page_text(result))
        elif fmt == "csv":
            atomic_write_text(path, courses_csv(result, key))
        else:
            atomic_write_text(path, alto_xml(result, image_name=image_path.name if image_path else json_path.stem,
                                             image_size=_image_size(image_path)))
        written.append(path)
    return written


def _image_size(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    from PIL import Image

    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
            # Boxes are in upright (EXIF-transposed) pixels: orientations 5-8 swap the axes.
            return (height, width) if image.getexif().get(0x0112) in (5, 6, 7, 8) else (width, height)
    except OSError:
        return None
