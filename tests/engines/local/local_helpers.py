"""Helpers shared by the local-engine tests: page requests and rendered page images."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ocr_assets.core import PageRequest, PromptIdentity

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


def make_request(key: str, image_path: Path, *, page: int = 1, prompt: str = "Read this page.",
                 previous_context: dict | None = None) -> PageRequest:
    return PageRequest(
        key=key, book=key.rsplit(":", 1)[0] if ":" in key else "CA:test:1900", page=page, image_path=image_path,
        prompt=prompt, prompt_identity=PromptIdentity(name="page_ocr", version="test", vars_hash="0"),
        previous_context=previous_context,
    )


def render_lines(path: Path, lines: list[str], *, size: tuple[int, int] = (900, 260), font_size: int = 30) -> Path:
    """A white page with `lines` in DejaVu Serif, one per row."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT_DIR / "DejaVuSerif.ttf"), font_size)
    for row, text in enumerate(lines):
        draw.text((40, 30 + row * round(font_size * 1.8)), text, font=font, fill="black")
    image.save(path)
    return path


def render_columns(path: Path, left: list[str], right: list[str], *, foot: str = "",
                   size: tuple[int, int] = (1000, 700), font_size: int = 24) -> Path:
    """A white two-column page: `left` and `right` top-aligned, `foot` centred at the bottom."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT_DIR / "DejaVuSerif.ttf"), font_size)
    pitch = round(font_size * 1.6)
    for x, lines in ((60, left), (size[0] // 2 + 30, right)):
        for row, text in enumerate(lines):
            draw.text((x, 40 + row * pitch), text, font=font, fill="black")
    if foot:
        draw.text((size[0] // 2, size[1] - 50), foot, font=font, fill="black", anchor="mt")
    image.save(path)
    return path
