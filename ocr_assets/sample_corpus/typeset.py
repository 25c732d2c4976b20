"""Fonts, measuring, line wrapping and the column flow that places paragraphs on a page."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from PIL import ImageFont

from ocr_assets.schema import Course


# Body type size as a fraction of page width, and line pitch as a multiple of the type size.
BODY_1COL, BODY_2COL, _LEADING = 0.023, 0.021, 1.3
_WORD_SPACE = 1.5



# --------------------------------------------------------------------------------------------
# Fonts and measuring
# --------------------------------------------------------------------------------------------

Style = Literal["regular", "bold", "italic"]

_FONT_FILES: dict[str, tuple[str, ...]] = {
    "regular": ("DejaVuSerif.ttf", "LiberationSerif-Regular.ttf", "NimbusRoman-Regular.otf",
                "Times New Roman.ttf", "times.ttf", "FreeSerif.ttf", "DejaVuSans.ttf"),
    "bold": ("DejaVuSerif-Bold.ttf", "LiberationSerif-Bold.ttf", "NimbusRoman-Bold.otf",
             "Times New Roman Bold.ttf", "timesbd.ttf", "FreeSerifBold.ttf", "DejaVuSans-Bold.ttf"),
    "italic": ("DejaVuSerif-Italic.ttf", "LiberationSerif-Italic.ttf", "NimbusRoman-Italic.otf",
               "Times New Roman Italic.ttf", "timesi.ttf", "FreeSerifItalic.ttf", "DejaVuSans-Oblique.ttf"),
}
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation",
              "/usr/share/fonts/truetype/liberation2", "/usr/share/fonts/opentype/urw-base35",
              "/usr/share/fonts/truetype/freefont", "/usr/share/fonts/dejavu", "/usr/share/fonts")

AnyFont = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=None)
def load_font(style: str, size: int) -> AnyFont:
    for name in _FONT_FILES[style] + _FONT_FILES["regular"]:
        candidates = [os.path.join(d, name) for d in _FONT_DIRS] + [name]
        for candidate in candidates:
            try:
                # The basic layout engine: the same glyph positions with or without libraqm.
                return ImageFont.truetype(candidate, size, layout_engine=ImageFont.Layout.BASIC)
            except OSError:
                continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: a fixed bitmap font
        return ImageFont.load_default()


_WIDTHS: dict[tuple[str, int, str], float] = {}


def text_width(style: str, size: int, text: str) -> float:
    key = (style, size, text)
    found = _WIDTHS.get(key)
    if found is None:
        found = float(load_font(style, size).getlength(text))
        if len(_WIDTHS) < 200_000:
            _WIDTHS[key] = found
    return found


def line_width(style: str, size: int, words: Sequence[str]) -> float:
    return sum(text_width(style, size, w) for w in words) + space_width(style, size) * (len(words) - 1)


def space_width(style: str, size: int) -> float:
    # Generous word spacing, as in period letterpress; OCR engines also keep wide spaces better.
    return text_width(style, size, " ") * _WORD_SPACE


@lru_cache(maxsize=None)
def vertical_extent(style: str, size: int) -> tuple[float, float]:
    """Top and bottom of ink relative to the draw origin, for lines with capitals and descenders."""
    box = load_font(style, size).getbbox("Hdgjy")
    return float(box[1]), float(box[3])


@lru_cache(maxsize=4096)
def _wrap(text: str, style: str, size: int, width: float) -> tuple[tuple[str, ...], ...]:
    """Greedy word wrap (each paragraph is measured for fit, then placed: cache the result)."""
    lines: list[list[str]] = []
    current: list[str] = []
    space = space_width(style, size)
    used = 0.0
    for word in text.split():
        w = text_width(style, size, word)
        if current and used + space + w > width:
            lines.append(current)
            current, used = [word], w
        else:
            used = used + space + w if current else w
            current.append(word)
    if current:
        lines.append(current)
    return tuple(tuple(line) for line in lines)


# --------------------------------------------------------------------------------------------
# Layout: paragraphs flowed into columns
# --------------------------------------------------------------------------------------------


@dataclass
class Para:
    text: str
    style: Style = "regular"
    size: int = 22
    align: Literal["left", "center", "justify", "right"] = "left"
    indent: int = 0  # first-line indent
    space_before: int = 0
    space_after: int = 0
    right: str | None = None  # a second text set flush right on the same line (contents rows)


@dataclass
class Placed:
    text: str
    style: Style
    size: int
    # (words, x, y, justified width or None) per line; y is the draw origin (top of the em box)
    lines: list[tuple[Sequence[str], float, float, float | None]]
    bbox: tuple[float, float, float, float]


@dataclass
class Item:
    """A unit the flow never splits (a course entry, a heading kept with what follows)."""

    paras: list[Para]
    course: Course | None = None
    courses: list[Course] = field(default_factory=list)
    dept_start: str | None = None


def line_height(size: int) -> int:
    return round(size * _LEADING)


def _para_lines(para: Para, width: float) -> tuple[tuple[str, ...], ...]:
    return _wrap(para.text, para.style, para.size, width - para.indent)


def _item_height(item: Item, width: float) -> int:
    total = 0
    for para in item.paras:
        total += para.space_before + para.space_after
        total += line_height(para.size) * (1 if para.right is not None else len(_para_lines(para, width)))
    return total


def _place_para(para: Para, x0: float, x1: float, y: float) -> tuple[list[Placed], float]:
    """Lay out one paragraph from `y`; returns the placed blocks and the next free y."""
    y += para.space_before
    lh = line_height(para.size)
    top, bottom = vertical_extent(para.style, para.size)
    width = x1 - x0
    placed: list[Placed] = []
    if para.right is not None:
        lw = line_width(para.style, para.size, para.text.split())
        rw = line_width(para.style, para.size, para.right.split())
        placed.append(Placed(para.text, para.style, para.size, [(para.text.split(), x0 + para.indent, y, None)],
                              (x0 + para.indent, y + top, x0 + para.indent + lw, y + bottom)))
        placed.append(Placed(para.right, para.style, para.size, [(para.right.split(), x1 - rw, y, None)],
                              (x1 - rw, y + top, x1, y + bottom)))
        return placed, y + lh + para.space_after
    lines = _para_lines(para, width)
    out_lines: list[tuple[Sequence[str], float, float, float | None]] = []
    bx0, bx1 = math.inf, -math.inf
    for i, words in enumerate(lines):
        indent = para.indent if i == 0 else 0
        avail = width - indent
        natural = line_width(para.style, para.size, words)
        justified: float | None = None
        if para.align == "center":
            x = x0 + (width - natural) / 2
        elif para.align == "right":
            x = x1 - natural
        else:
            x = x0 + indent
            # Justify unless the spaces would open up into rivers (and split OCR lines apart).
            if (para.align == "justify" and i < len(lines) - 1 and len(words) > 1
                    and (avail - natural) / (len(words) - 1) <= 1.5 * space_width(para.style, para.size)):
                justified = avail
        extent = justified if justified is not None else natural
        bx0, bx1 = min(bx0, x), max(bx1, x + extent)
        out_lines.append((words, x, y + i * lh, justified))
    text = "\n".join(" ".join(words) for words in lines)
    bbox = (bx0, y + top, bx1, y + (len(lines) - 1) * lh + bottom)
    placed.append(Placed(text, para.style, para.size, out_lines, bbox))
    return placed, y + len(lines) * lh + para.space_after


class Flow:
    """Columns filled top to bottom, left to right; reading order is placement order."""

    def __init__(self, columns: Sequence[tuple[float, float]], top: float, bottom: float):
        self.columns = list(columns)
        self.top, self.bottom = top, bottom
        self.col = 0
        self.y = top
        self.blocks: list[Placed] = []

    @property
    def width(self) -> float:
        return self.columns[0][1] - self.columns[0][0]

    def place(self, item: Item) -> bool:
        if self.col >= len(self.columns):
            return False
        height = _item_height(item, self.width)
        while self.y + height > self.bottom:
            if self.y == self.top and height > self.bottom - self.top:
                return False  # taller than a whole column: never fits
            self.col += 1
            self.y = self.top
            if self.col >= len(self.columns):
                return False
        x0, x1 = self.columns[self.col]
        for para in item.paras:
            placed, self.y = _place_para(para, x0, x1, self.y)
            self.blocks.extend(placed)
        return True
