"""Drawing a laid-out page with Pillow: skew, paper texture, binding shade, and encoding."""

from __future__ import annotations

import math
from functools import lru_cache
from io import BytesIO

from PIL import Image, ImageChops, ImageDraw, ImageOps

from ocr_assets.sample_corpus.book import PageLayout
from ocr_assets.sample_corpus.typeset import load_font, space_width, text_width


JPEG_QUALITY = 60  # measured: RapidOCR reads q60 as well as q80 here, at ~27% fewer bytes
TILE_PAD = 128



# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _rotate_point(x: float, y: float, cx: float, cy: float, angle: float) -> tuple[float, float]:
    """Where `Image.rotate(angle)` (counter-clockwise, about the centre) moves a pixel."""
    a = math.radians(angle)
    dx, dy = x - cx, y - cy
    return cx + dx * math.cos(a) + dy * math.sin(a), cy - dx * math.sin(a) + dy * math.cos(a)


def skew_bbox(bbox: tuple[float, float, float, float], size: tuple[int, int], angle: float) -> list[float]:
    if angle == 0:
        return [float(round(v)) for v in bbox]
    cx, cy = size[0] / 2, size[1] / 2
    x0, y0, x1, y1 = bbox
    pts = [_rotate_point(x, y, cx, cy, angle) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [float(max(0, round(min(xs)))), float(max(0, round(min(ys)))),
            float(min(size[0], round(max(xs)))), float(min(size[1], round(max(ys))))]


@lru_cache(maxsize=4)
def _noise_tile(width: int, height: int) -> Image.Image:
    """A fixed paper texture, larger than a page; pages crop it at random offsets.

    Mostly low-frequency mottling with a light grain and rare dark flecks: fine grain all over
    would make every JPEG several times larger without making the page any more realistic.
    """
    import numpy as np

    gen = np.random.default_rng(20240611)
    w, h = width + TILE_PAD, height + TILE_PAD
    # Broad, faint blotches: finer mottling costs JPEG bytes that dense text already needs.
    coarse = gen.normal(0.0, 4.0, size=(h // 48 + 2, w // 48 + 2)).astype("float32")
    mottle = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    field = 128.0 + mottle
    field[gen.random(size=(h, w)) < 0.00015] -= 120  # dust
    return Image.fromarray(np.clip(field, 0, 255).astype("uint8"), mode="L")


@lru_cache(maxsize=8)
def _shade(width: int, height: int, binding_left: bool) -> Image.Image:
    """Uneven illumination: darker towards the binding edge (multiplied into the page)."""
    ramp = Image.linear_gradient("L").rotate(90 if binding_left else -90).resize((width, height))
    # ramp: 0 at the binding edge … 255 at the far edge; map to 215..255 with a fast fall-off.
    lut = [round(215 + 40 * (1 - (1 - v / 255) ** 6)) for v in range(256)]
    return ramp.point(lut)


_MASKS: dict[tuple[str, int, str], tuple[Image.Image, int, int] | None] = {}


def _word_mask(style: str, size: int, word: str) -> tuple[Image.Image, int, int] | None:
    """The rendered glyphs of one word and their offset from the draw origin (cached: the
    vocabulary repeats, and pasting a cached mask is many times faster than drawing text)."""
    key = (style, size, word)
    if key in _MASKS:
        return _MASKS[key]
    font = load_font(style, size)
    left, top, right, bottom = (int(v) for v in font.getbbox(word))
    found: tuple[Image.Image, int, int] | None = None
    if right > left and bottom > top:
        mask = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(mask).text((-left, -top), word, font=font, fill=255)
        found = (mask, left, top)
    if len(_MASKS) < 50_000:
        _MASKS[key] = found
    return found


def draw_page(layout: PageLayout, size: tuple[int, int], angle: float, degrade: bool,
            paper: tuple[int, int, int], noise_xy: tuple[int, int], binding_left: bool) -> Image.Image:
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    ink = 20
    for x0, y0, x1, y1, width in layout.rules:
        draw.line((x0, y0, x1, y1), fill=ink + 30, width=width)
    for block in layout.blocks:
        space = space_width(block.style, block.size)
        for words, x, y, justified in block.lines:
            widths = [text_width(block.style, block.size, w) for w in words]
            gap = space
            if justified is not None and len(words) > 1:
                gap = (justified - sum(widths)) / (len(words) - 1)
            cursor = x
            for word, word_width in zip(words, widths, strict=True):
                glyphs = _word_mask(block.style, block.size, word)
                if glyphs is not None:
                    mask, left, top = glyphs
                    px, py = round(cursor) + left, round(y) + top
                    img.paste(ink, (px, py, px + mask.width, py + mask.height), mask)
                cursor += word_width + gap
    if not degrade:
        return img.convert("RGB")
    if angle:
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=255)
    tile = _noise_tile(*size)
    nx, ny = noise_xy
    img = ImageChops.add(img, tile.crop((nx, ny, nx + size[0], ny + size[1])), scale=1.0, offset=-128)
    img = ImageChops.multiply(img, _shade(size[0], size[1], binding_left))
    ink_rgb = (max(0, paper[0] - 205), max(0, paper[1] - 205), max(0, paper[2] - 190))
    return ImageOps.colorize(img, black=ink_rgb, white=paper)


def encode_image(img: Image.Image, image_format: str, quality: int = JPEG_QUALITY) -> bytes:
    buf = BytesIO()
    if image_format == "jpg":
        img.save(buf, format="JPEG", quality=quality, optimize=True, progressive=False)
    elif image_format == "png":
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    else:
        img.save(buf, format="TIFF", compression="tiff_lzw")
    return buf.getvalue()


@lru_cache(maxsize=4)
def blank_image_bytes(image_format: str) -> bytes:
    return encode_image(Image.new("RGB", (16, 22), (238, 230, 206)), image_format)


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------
