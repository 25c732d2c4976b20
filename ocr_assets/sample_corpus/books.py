"""Synthetic pages that are NOT course listings, printed the way old books were, with exact ground truth.

The course extractor must find no course on prose, verse, lists of people (a genealogy), a book's
title page or its index, however numbered their lines are; and the OCR must read scans that are
worse than `sample_corpus`'s: binarised to 1 bit (as the Internet Archive's scans are), speckled,
skewed, in italics, with small capitals. `generate_books` writes such pages in the project's layout
(images/, allow_list/, ground_truth/) beside or instead of a catalog corpus; the ground truth lists
no courses and names each page's content type.

Deterministic for a seed (one `random.Random` per book and page).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ocr_assets.keys import BookKey
from ocr_assets.outputs import atomic_write_bytes, atomic_write_text
from ocr_assets.schema import OcrPageResult, PageInfo, RawOcr, TextBlock

PageKind = Literal["prose", "verse", "genealogy", "title", "index"]
PAGE_KINDS: tuple[PageKind, ...] = ("prose", "verse", "genealogy", "title", "index")
CONTENT_TYPE: dict[PageKind, str] = {
    "prose": "other", "verse": "other", "genealogy": "other", "title": "title_page", "index": "index",
}
PAGE_SIZE = (1100, 1500)
_SERIF = ("/usr/share/fonts/truetype/liberation/LiberationSerif-{}.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSerif{}.ttf")

_WORDS = ("the old house stood upon a hill above the river and in the evening light its windows shone like "
          "gold while the travellers rested by the road and spoke of the long journey that lay before them "
          "through the forest where the king had hunted in former days with his knights and his hounds").split()
_NAMES = ("Rachel", "Amanda", "Caroline", "Edward", "George", "Bertrand", "Cornelius", "Miller", "Sarah",
          "Ellen", "Henrietta", "Warren", "Thomas", "Abigail", "Josiah", "Mercy")
_SURNAMES = ("Horton", "Meeks", "Baker", "Delma", "Sayre", "Howell", "Terry", "Reeve", "Wells", "Youngs")
_PLACES = ("Southold", "Chatham", "Philmont", "Hudson", "Riverhead", "Orient", "Mattituck", "Cutchogue")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_TITLES = ("The Child of the Moat", "Half-Hours with the Highwaymen", "Sketches of Colonial Days",
           "The Boy and the Enchanter", "A Family Record")


@dataclass(frozen=True)
class PageStyle:
    """How one page is printed and scanned."""

    face: str  # "Liberation" (a Times-like old style) or "DejaVu"
    size: int
    italic: bool  # the body in italics
    small_caps: bool  # headings in small capitals
    skew: float  # degrees
    speckle: float  # fraction of pixels flipped to ink
    binarise: bool  # 1-bit black and white, as the Internet Archive's scans


def _font(style: PageStyle, italic: bool, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    suffix = {"Liberation": ("Italic" if italic else "Regular"), "DejaVu": ("-Italic" if italic else "")}
    path = (_SERIF[0] if style.face == "Liberation" else _SERIF[1]).format(suffix[style.face])
    try:
        return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)
    except OSError:  # a machine without these fonts
        return ImageFont.load_default(size=size)


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[:1].upper() + text[1:] + rng.choice((".", ".", ";", ","))


def _date(rng: random.Random, year: int) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(_MONTHS)}, {year}"


def page_paragraphs(kind: PageKind, rng: random.Random, page: int) -> list[tuple[str, str]]:
    """(role, text) per paragraph, in reading order; role is heading, body or centre."""
    if kind == "prose":
        paras = [("heading", f"CHAPTER {rng.choice(('I', 'II', 'IV', 'VII', 'IX'))}.")]
        for _ in range(rng.randint(3, 5)):
            paras.append(("body", " ".join(_sentence(rng, rng.randint(8, 16)) for _ in range(rng.randint(2, 4)))))
        return paras
    if kind == "verse":
        paras = [("heading", rng.choice(("THE SONG OF THE MOAT.", "AN OLD BALLAD.", "THE HIGHWAYMAN.")))]
        for stanza in range(1, rng.randint(3, 5)):
            lines = [_sentence(rng, rng.randint(5, 7)) for _ in range(4)]
            paras.append(("body", f"{stanza}. " + "\n".join(lines)))
        return paras
    if kind == "genealogy":
        father, mother = rng.choice(_NAMES), rng.choice(_NAMES)
        paras = [("heading", f"Children of {father} and {mother} {rng.choice(_SURNAMES)}:")]
        year = rng.randint(1810, 1850)
        for number in range(1, rng.randint(6, 10)):
            year += rng.randint(1, 3)
            text = (f"{number}. {rng.choice(_NAMES)} {rng.choice(_NAMES)}, born {_date(rng, year)}; "
                    f"married {rng.choice(_NAMES)} {rng.choice(_SURNAMES)}, of {rng.choice(_PLACES)}")
            if rng.random() < 0.4:
                text += f"; died {_date(rng, year + rng.randint(20, 60))}"
            paras.append(("body", text + "."))
        return paras
    if kind == "title":
        title = rng.choice(_TITLES)
        return [("centre", title.upper()), ("centre", "BY"),
                ("centre", f"{rng.choice(_NAMES).upper()} {rng.choice(_SURNAMES).upper()}"),
                ("centre", f"{rng.choice(('Illustrated', 'With a Preface', 'Second Edition'))}"),
                ("centre", f"{rng.choice(('London', 'New York', 'Boston'))}: {rng.choice(_SURNAMES)} and Company"),
                ("centre", str(rng.randint(1823, 1920)))]
    entries = sorted({f"{rng.choice(_SURNAMES)}, {rng.choice(_NAMES)}" for _ in range(14)})
    return [("heading", "INDEX.")] + [
        ("body", f"{entry}, {', '.join(str(n) for n in sorted(rng.sample(range(3, 300), rng.randint(1, 3))))}")
        for entry in entries
    ]


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines: list[str] = []
    for source in text.split("\n"):
        line = ""
        for word in source.split():
            candidate = f"{line} {word}".strip()
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        if line:
            lines.append(line)
    return lines


def _draw_small_caps(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, style: PageStyle) -> None:
    """Capitals at full size, the rest of each word as capitals at 75% (ground truth: Title Case)."""
    x, y = xy
    big, small = _font(style, False, style.size + 4), _font(style, False, round((style.size + 4) * 0.75))
    for word in text.split():
        draw.text((x, y), word[:1], font=big, fill=0)
        x += draw.textlength(word[:1], font=big)
        rest_y = y + (big.getbbox("H")[1] - small.getbbox("H")[1])
        draw.text((x, rest_y), word[1:].upper(), font=small, fill=0)
        x += draw.textlength(word[1:].upper(), font=small) + draw.textlength(" ", font=big)


def render_page(kind: PageKind, rng: random.Random, page: int, style: PageStyle) -> tuple[Image.Image, list[TextBlock]]:
    """The page image and its text blocks (one per paragraph, wrapped lines joined by newlines)."""
    width, height = PAGE_SIZE
    margin = 110
    image = Image.new("L", PAGE_SIZE, 255)
    draw = ImageDraw.Draw(image)
    y = 120.0
    blocks: list[TextBlock] = []
    for role, text in page_paragraphs(kind, rng, page):
        font = _font(style, style.italic and role == "body", style.size + (4 if role != "body" else 0))
        lines = _wrap(draw, text, font, width - 2 * margin)
        pitch = round(font.size * 1.45)
        if y + pitch * len(lines) > height - 100:
            break
        top = y
        shown = []
        for line in lines:
            line_width = draw.textlength(line, font=font)
            x = (width - line_width) / 2 if role in ("centre", "heading") else margin
            if role == "heading" and style.small_caps:
                line = line.title()
                _draw_small_caps(draw, (x, y), line, style)
            else:
                draw.text((x, y), line, font=font, fill=0)
            shown.append(line)
            y += pitch
        italic = style.italic and role == "body"
        blocks.append(TextBlock(block_id=len(blocks) + 1, position=[margin, top, width - margin, y],
                                text="\n".join(shown), font_style="italic" if italic else "regular"))
        y += pitch * (2.5 if kind == "title" else 0.6)
    return _scan(image, rng, style), blocks


def _scan(image: Image.Image, rng: random.Random, style: PageStyle) -> Image.Image:
    """Skew, speckle and (optionally) binarise a clean page, as a worn 300 dpi scan."""
    if style.skew:
        image = image.rotate(style.skew, resample=Image.Resampling.BILINEAR, fillcolor=255)
    pixels = np.asarray(image, dtype=np.uint8).copy()
    gen = np.random.default_rng(rng.randrange(2**32))
    if style.speckle:
        pixels[gen.random(pixels.shape) < style.speckle] = 0
    if style.binarise:
        return Image.fromarray(pixels > 150).convert("1")
    return Image.fromarray(pixels)


def page_style(rng: random.Random) -> PageStyle:
    return PageStyle(face=rng.choice(("Liberation", "Liberation", "DejaVu")), size=rng.randint(26, 32),
                     italic=rng.random() < 0.3, small_caps=rng.random() < 0.5, skew=round(rng.uniform(-1.2, 1.2), 2),
                     speckle=rng.choice((0.0, 0.0005, 0.001)), binarise=rng.random() < 0.7)


def generate_books(out: Path, *, books: int = 2, pages: int = 5, seed: int = 0,
                   kinds: tuple[PageKind, ...] = PAGE_KINDS) -> list[str]:
    """Write `books` books of `pages` non-catalog pages (PNG) under `out`; returns the page keys.

    Page kinds cycle through `kinds`; every page is allow-listed; each ground truth has no course.
    """
    if books < 1 or pages < 1 or not kinds:
        raise ValueError("books, pages and kinds must not be empty")
    out = Path(out)
    keys: list[str] = []
    for number in range(books):
        key = BookKey(state="GB", school=f"old_book_{number + 1}", year=1823 + (seed * 7 + number * 13) % 97)
        rel = Path(key.state) / key.school / str(key.year)
        for page in range(1, pages + 1):
            kind = kinds[(number + page - 1) % len(kinds)]
            # The seed string keeps this module's first name, so a seed still writes the same bytes.
            rng = random.Random(f"ocr_assets.sample_books:{seed}:{key}:{page}")
            image, blocks = render_page(kind, rng, page, page_style(rng))
            encoded = BytesIO()
            image.save(encoded, format="PNG")
            atomic_write_bytes(out / "images" / rel / f"{page}.png", encoded.getvalue())
            result = OcrPageResult(
                raw_ocr=RawOcr(text_blocks=blocks, layout_description=f"{kind} page of an old book"),
                page_info=PageInfo(page_number=page, is_complete_page=True, content_type=CONTENT_TYPE[kind]),
                courses=[],
            )
            atomic_write_text(out / "ground_truth" / rel / f"{page}.json", result.to_json() + "\n")
            label = {"page": page, "label": CONTENT_TYPE[kind], "confidence": 0.9}
            atomic_write_text(out / "allow_list" / rel / f"{page}.json", json.dumps(label) + "\n")
            keys.append(f"{key}:{page}")
    return keys
