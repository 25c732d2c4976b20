"""Writing a corpus: choosing books, rendering them (in worker processes) and the three trees."""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ocr_assets.keys import BookKey, check_name_part
from ocr_assets.sample_corpus.book import Book
from ocr_assets.sample_corpus.render import (
    JPEG_QUALITY,
    TILE_PAD,
    blank_image_bytes,
    draw_page,
    encode_image,
    skew_bbox,
)
from ocr_assets.sample_corpus.vocabulary import SCHOOLS, School, school_pool
from ocr_assets.schema import OcrPageResult, PageInfo, RawOcr, TextBlock


DEFAULT_STATES: tuple[str, ...] = ("CA", "NY", "MA", "IL")
DEFAULT_PAGE_SIZE: tuple[int, int] = (1000, 1400)
YEAR_RANGE = (1880, 1935)

ImageMode = Literal["render", "blank"]
_FORMATS = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "tif": "tif", "tiff": "tif"}


class CorpusSummary(BaseModel):
    """What `generate_corpus` wrote."""

    model_config = ConfigDict(frozen=True)

    out: Path
    books: list[str]
    pages_per_book: int
    pages: int
    allow_listed: int
    courses: int
    allow_listed_courses: int
    image_format: str
    images: str

    @property
    def images_root(self) -> Path:
        return self.out / "images"

    @property
    def allow_list_root(self) -> Path:
        return self.out / "allow_list"

    @property
    def ground_truth_root(self) -> Path:
        return self.out / "ground_truth"


@dataclass(frozen=True)
class _BookJob:
    out: str
    key: BookKey
    school: School
    pages: int
    seed: int
    allow: tuple[tuple[int, float], ...]  # allow-listed pages with first-pass confidence
    image_format: str
    images: str
    degrade: bool
    size: tuple[int, int]
    quality: int


@dataclass(frozen=True)
class _BookResult:
    courses: int
    allow_listed_courses: int


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _label(content_type: str) -> str:
    return "curricular" if content_type == "course_listing" else content_type


def _write_book(job: _BookJob) -> _BookResult:
    book = Book(job.key, job.school, job.pages, job.seed, job.size)
    layouts = book.layout()
    rng = book.rng
    paper = (rng.randint(232, 246), rng.randint(222, 236), rng.randint(188, 212))
    rel = Path(job.key.state) / job.key.school / str(job.key.year)
    out = Path(job.out)
    allow = dict(job.allow)
    courses = allow_courses = 0
    for layout in layouts:
        # Draw the page's randomness whether or not it is rendered, so blank and rendered
        # corpora carry the same ground truth.
        angle = round(rng.uniform(-0.8, 0.8), 2) if job.degrade else 0.0
        noise_xy = (rng.randrange(TILE_PAD), rng.randrange(TILE_PAD))
        binding_left = layout.page % 2 == 1
        shift = rng.randint(-4, 3)  # one sheet a shade lighter or darker than the next, same hue
        page_paper = (max(0, paper[0] + shift), max(0, paper[1] + shift), min(255, max(0, paper[2] + shift)))
        if job.images == "blank":
            data = blank_image_bytes(job.image_format)
        else:
            img = draw_page(layout, job.size, angle, job.degrade, page_paper, noise_xy, binding_left)
            data = encode_image(img, job.image_format, job.quality)
        _write(out / "images" / rel / f"{layout.page}.{job.image_format}", data)
        blocks = [
            TextBlock(block_id=i + 1, position=skew_bbox(b.bbox, job.size, angle), text=b.text,
                      font_style=b.style)
            for i, b in enumerate(layout.blocks)
        ]
        result = OcrPageResult(
            raw_ocr=RawOcr(text_blocks=blocks, layout_description=layout.layout_description),
            page_info=PageInfo(page_number=layout.page, is_complete_page=True, content_type=layout.content_type),
            school_name=job.school.name,
            catalog_year=job.key.year,
            academic_year=book.academic_year,
            courses=layout.courses,
        )
        _write(out / "ground_truth" / rel / f"{layout.page}.json", result.to_json_bytes() + b"\n")
        courses += len(layout.courses)
        if layout.page in allow:
            label = {"page": layout.page, "label": _label(layout.content_type), "confidence": allow[layout.page]}
            _write(out / "allow_list" / rel / f"{layout.page}.json", (json.dumps(label) + "\n").encode())
            allow_courses += len(layout.courses)
    return _BookResult(courses, allow_courses)


def choose_books(rng: random.Random, books: int, states: Sequence[str]) -> list[tuple[BookKey, School]]:
    """Distinct (state, school, year) on a small grid: a few states × schools × years."""
    n_states = min(len(states), max(1, round(books ** (1 / 3))))
    sampled = set(rng.sample(list(states), n_states))
    picked_states = [s for s in states if s in sampled]
    per_state = math.ceil(books / n_states)
    n_schools = max(1, round(math.sqrt(per_state)))
    span = YEAR_RANGE[1] - YEAR_RANGE[0] + 1
    n_years = math.ceil(per_state / n_schools)
    if n_years > span:
        n_years = span
        n_schools = math.ceil(per_state / span)
    per_state_books: list[list[tuple[BookKey, School]]] = []
    for state in picked_states:
        pool = school_pool(state)
        known = [s for s in pool if s in SCHOOLS.get(state, ())]
        generic = [s for s in pool if s not in known]
        schools = rng.sample(known, min(n_schools, len(known)))
        schools += generic[: n_schools - len(schools)]
        books_here = []
        for school in schools:
            years = sorted(rng.sample(range(YEAR_RANGE[0], YEAR_RANGE[1] + 1), n_years))
            books_here += [(BookKey(state, school.slug, year), school) for year in years]
        per_state_books.append(books_here)
    # Take round-robin across states so a cut keeps them balanced.
    chosen: list[tuple[BookKey, School]] = []
    for i in range(max(len(b) for b in per_state_books)):
        for books_here in per_state_books:
            if i < len(books_here) and len(chosen) < books:
                chosen.append(books_here[i])
    return sorted(chosen, key=lambda item: item[0])


def _allow_lists(seed: int, keys: Sequence[BookKey], pages: int) -> list[list[int]]:
    """Allow-listed pages per book: most books have gaps (chains break there), some none."""
    lists: list[list[int]] = []
    for key in keys:
        rng = random.Random(f"ocr_assets.sample_corpus.allow:{seed}:{key}")
        allowed = list(range(1, pages + 1))
        if pages >= 4 and rng.random() >= 0.35:
            interior = list(range(2, pages))
            k = 1 if pages < 10 else rng.randint(1, max(1, pages // 8))
            for dropped in rng.sample(interior, min(k, len(interior))):
                allowed.remove(dropped)
            if pages >= 8 and rng.random() < 0.25:
                allowed.remove(1)  # the first pass rejected the title page
        lists.append(allowed)
    if pages >= 5 and keys and all(len(a) == pages for a in lists):
        lists[0] = [p for p in lists[0] if p != pages // 2 + 1]
    if len(keys) >= 2 and pages >= 2 and all(len(a) < pages for a in lists):
        lists[-1] = list(range(1, pages + 1))
    return lists


def generate_corpus(
    out: Path,
    *,
    books: int = 8,
    pages: int = 6,
    seed: int = 0,
    states: list[str] | None = None,
    image_format: str = "jpg",
    degrade: bool = True,
    images: ImageMode = "render",
    page_size: tuple[int, int] = DEFAULT_PAGE_SIZE,
    jpeg_quality: int = JPEG_QUALITY,
    workers: int = 1,
) -> CorpusSummary:
    """Write a synthetic catalog corpus (images, allow-list, ground truth) under `out`.

    `images="blank"` writes one tiny valid image per page instead of rendering (the ground truth
    is the same as a rendered run's), for benchmark corpora of many thousands of pages.
    `workers` > 1 renders books in that many processes; the output is the same either way.
    Existing files at the same paths are replaced; nothing else under `out` is touched.
    """
    if books < 1 or pages < 1:
        raise ValueError(f"books and pages must be at least 1 (got books={books}, pages={pages})")
    fmt = _FORMATS.get(image_format.lower().lstrip("."))
    if fmt is None:
        raise ValueError(f"image_format {image_format!r} is not one of {sorted(set(_FORMATS.values()))}")
    if not 1 <= jpeg_quality <= 95:
        raise ValueError(f"jpeg_quality must be between 1 and 95, not {jpeg_quality}")
    if images not in ("render", "blank"):
        raise ValueError(f"images must be 'render' or 'blank', not {images!r}")
    if page_size[0] < 300 or page_size[1] < 400:
        raise ValueError(f"page_size {page_size} is too small to lay out a page (min 300×400)")
    state_list = list(states) if states else list(DEFAULT_STATES)
    for state in state_list:
        problem = check_name_part(state, "state")
        if problem:
            raise ValueError(problem)
    state_list = list(dict.fromkeys(state_list))
    chosen = choose_books(random.Random(seed), books, state_list)
    allow = _allow_lists(seed, [key for key, _ in chosen], pages)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        _BookJob(str(out), key, school, pages, seed,
                 tuple((p, _confidence(seed, key, p)) for p in allowed), fmt, images, degrade,
                 (int(page_size[0]), int(page_size[1])), jpeg_quality)
        for (key, school), allowed in zip(chosen, allow, strict=True)
    ]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            results = list(pool.map(_write_book, jobs, chunksize=1))
    else:
        results = [_write_book(job) for job in jobs]
    return CorpusSummary(
        out=out,
        books=[str(key) for key, _ in chosen],
        pages_per_book=pages,
        pages=pages * len(jobs),
        allow_listed=sum(len(a) for a in allow),
        courses=sum(r.courses for r in results),
        allow_listed_courses=sum(r.allow_listed_courses for r in results),
        image_format=fmt,
        images=images,
    )


def _confidence(seed: int, key: BookKey, page: int) -> float:
    return round(random.Random(f"ocr_assets.sample_corpus.conf:{seed}:{key}:{page}").uniform(0.78, 0.99), 2)
