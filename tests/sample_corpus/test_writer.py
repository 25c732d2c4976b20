"""The synthetic catalog corpus: determinism, layout on disk, allow-list gaps, valid truth, CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from ocr_assets.cli import sample as sample_cli
from ocr_assets.keys import BookKey, check_name_part
from ocr_assets.schema import OcrPageResult
from ocr_assets.plan import scan_corpus
from ocr_assets.sample_corpus import DEFAULT_STATES, CorpusSummary, generate_corpus
from ocr_assets.sample_corpus.typeset import load_font
from ocr_assets.sample_corpus.writer import choose_books
from tests.fixtures.services import require_or_skip

# Small pages keep rendering fast; the layout scales with the page width.
SMALL = (500, 700)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def truths(root: Path) -> dict[str, OcrPageResult]:
    found = {}
    for path in sorted((root / "ground_truth").rglob("*.json")):
        found[str(path.relative_to(root / "ground_truth").with_suffix(""))] = OcrPageResult.model_validate_json(
            path.read_text())
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CorpusSummary]:
    out = tmp_path_factory.mktemp("rendered")
    return out, generate_corpus(out, books=4, pages=6, seed=3, page_size=SMALL)


@pytest.fixture(scope="module")
def blank(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CorpusSummary]:
    out = tmp_path_factory.mktemp("blank")
    return out, generate_corpus(out, books=12, pages=9, seed=1, images="blank")


def test_the_same_seed_writes_identical_bytes(rendered, tmp_path: Path) -> None:
    first, _ = rendered
    again = generate_corpus(tmp_path, books=4, pages=6, seed=3, page_size=SMALL)
    assert again.books == rendered[1].books
    assert files(first) == files(tmp_path)


def test_regenerating_the_shipped_sample_writes_the_same_bytes(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "data" / "sample"
    # The shipped sample was rendered with DejaVu Serif (fonts-dejavu-core); other fonts lay it out differently.
    require_or_skip(Path(getattr(load_font("regular", 20), "path", "")).name == "DejaVuSerif.ttf",
                    "DejaVu Serif (fonts-dejavu-core) is not installed")
    generate_corpus(tmp_path, books=8, pages=6)  # what `make demo` ships: the defaults, seed 0
    assert files(tmp_path) == files(shipped)


def test_a_different_seed_writes_a_different_corpus(tmp_path: Path) -> None:
    a = generate_corpus(tmp_path / "a", books=2, pages=3, seed=1, images="blank")
    b = generate_corpus(tmp_path / "b", books=2, pages=3, seed=2, images="blank")
    assert a.books != b.books or files(tmp_path / "a") != files(tmp_path / "b")


def test_files_are_laid_out_by_state_school_year_and_unpadded_page(rendered) -> None:
    out, summary = rendered
    assert summary.pages == 4 * 6 and len(summary.books) == 4
    for book in summary.books:
        key = BookKey.parse(book)
        rel = Path(key.state) / key.school / str(key.year)
        assert sorted(p.name for p in (out / "images" / rel).iterdir()) == sorted(f"{n}.jpg" for n in range(1, 7))
        assert sorted(p.name for p in (out / "ground_truth" / rel).iterdir()) == sorted(
            f"{n}.json" for n in range(1, 7))
        allowed = {int(p.stem) for p in (out / "allow_list" / rel).iterdir()}
        assert allowed <= set(range(1, 7)) and allowed
    assert sum(1 for _ in (out / "allow_list").rglob("*.json")) == summary.allow_listed


def test_books_are_distinct_with_safe_names_and_years_in_range(blank) -> None:
    _, summary = blank
    keys = [BookKey.parse(book) for book in summary.books]
    assert len(set(keys)) == len(keys) == 12
    for key in keys:
        assert check_name_part(key.state, "state") is None
        assert check_name_part(key.school, "school") is None
        assert 1880 <= key.year <= 1935


@pytest.mark.parametrize("books", [1, 5, 30, 250])
def test_any_number_of_books_gets_that_many_distinct_keys(books: int) -> None:
    chosen = choose_books(random.Random(0), books, list(DEFAULT_STATES))
    assert len({key for key, _ in chosen}) == books


def test_allow_lists_break_chains_at_gaps_and_some_books_are_contiguous(blank) -> None:
    out, summary = blank
    gaps = contiguous = 0
    for book in summary.books:
        key = BookKey.parse(book)
        pages = sorted(int(p.stem) for p in (out / "allow_list" / key.state / key.school / str(key.year)).iterdir())
        if pages == list(range(1, 10)):
            contiguous += 1
        elif any(b - a > 1 for a, b in zip(pages, pages[1:], strict=False)):
            gaps += 1
    assert gaps >= 1 and contiguous >= 1


def test_allow_list_labels_are_small_first_pass_objects(rendered) -> None:
    out, _ = rendered
    for path in (out / "allow_list").rglob("*.json"):
        label = json.loads(path.read_text())
        assert label["page"] == int(path.stem)
        assert label["label"] in {"curricular", "title_page", "table_of_contents", "front_matter", "index"}
        assert 0.0 < label["confidence"] < 1.0


def test_even_five_page_books_get_a_gap_somewhere(tmp_path: Path) -> None:
    summary = generate_corpus(tmp_path, books=1, pages=5, seed=0, images="blank")
    assert summary.allow_listed < 5


def test_every_ground_truth_file_validates_as_an_ocr_page_result(rendered) -> None:
    out, summary = rendered
    found = truths(out)
    assert len(found) == summary.pages
    for rel, truth in found.items():
        state, school, year, page = rel.split("/")
        assert truth.page_info.page_number == int(page)
        assert truth.catalog_year == int(year)
        assert truth.academic_year == f"{year}-{int(year) + 1}"
        assert truth.school_name and truth.raw_ocr.text_blocks
        assert truth.page_info.content_type in {
            "course_listing", "title_page", "table_of_contents", "index", "front_matter", "other"}


def test_course_listing_pages_name_their_courses_in_the_text_blocks(rendered) -> None:
    out, summary = rendered
    listings = 0
    for truth in truths(out).values():
        if truth.page_info.content_type != "course_listing":
            assert truth.courses == []
            continue
        listings += 1
        assert truth.courses
        text = " ".join(" ".join(b.text.split()) for b in truth.raw_ocr.text_blocks)
        for course in truth.courses:
            assert course.course_name in text
            assert course.department and course.level and course.term and course.instructors
            for book in course.textbooks:
                assert book.title in text and book.author in text
    assert listings >= len(summary.books)
    assert summary.courses == sum(len(t.courses) for t in truths(out).values())


def test_text_blocks_have_styles_and_boxes_inside_the_page(rendered) -> None:
    out, _ = rendered
    for truth in truths(out).values():
        ids = [b.block_id for b in truth.raw_ocr.text_blocks]
        assert ids == list(range(1, len(ids) + 1))
        for block in truth.raw_ocr.text_blocks:
            assert block.font_style in {"regular", "bold", "italic"}
            x0, y0, x1, y1 = block.position
            assert 0 <= x0 < x1 <= SMALL[0] and 0 <= y0 < y1 <= SMALL[1]


def test_images_open_with_pillow_at_the_page_size(rendered) -> None:
    out, _ = rendered
    images = list((out / "images").rglob("*.jpg"))
    assert images
    for path in images:
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.size == SMALL


def test_blank_images_are_tiny_but_carry_the_same_ground_truth_as_rendered_ones(rendered, tmp_path: Path) -> None:
    out, _ = rendered
    generate_corpus(tmp_path, books=4, pages=6, seed=3, page_size=SMALL, images="blank")
    assert files(tmp_path / "ground_truth") == files(out / "ground_truth")
    assert files(tmp_path / "allow_list") == files(out / "allow_list")
    for path in (tmp_path / "images").rglob("*.jpg"):
        with Image.open(path) as img:
            img.load()
        assert path.stat().st_size < 2_000


def test_png_output_and_clean_pages_are_supported(tmp_path: Path) -> None:
    summary = generate_corpus(tmp_path, books=1, pages=2, image_format="png", degrade=False, page_size=SMALL)
    paths = list((tmp_path / "images").rglob("*.png"))
    assert len(paths) == 2 and summary.image_format == "png"
    with Image.open(paths[0]) as img:
        assert img.getpixel((2, 2)) == (255, 255, 255)  # no yellowing, no texture


def test_worker_processes_write_the_same_corpus(tmp_path: Path) -> None:
    generate_corpus(tmp_path / "one", books=3, pages=3, seed=5, images="blank")
    generate_corpus(tmp_path / "two", books=3, pages=3, seed=5, images="blank", workers=2)
    assert files(tmp_path / "one") == files(tmp_path / "two")


def test_the_plan_scanner_finds_every_allow_listed_page_and_breaks_chains_at_gaps(blank) -> None:
    out, summary = blank
    scan = scan_corpus(out / "images", out / "allow_list")
    assert scan.report == []
    records = scan.records()
    assert len(records) == summary.allow_listed
    for record in records:
        previous = f"{record.book}:{record.page - 1}"
        assert record.upstream_key in (None, previous)
        allowed_before = (out / "allow_list" / record.state / record.school / str(record.year)
                          / f"{record.page - 1}.json").exists()
        assert (record.upstream_key == previous) == allowed_before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"books": 0}, "at least 1"),
        ({"pages": 0}, "at least 1"),
        ({"image_format": "gif"}, "image_format"),
        ({"states": ["New York"]}, None),  # spaces are allowed by the key rules
        ({"states": ["C:A"]}, "':'"),
        ({"states": ["../x"]}, "path separator"),
        ({"images": "fast"}, "images"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
    ],
)
def test_arguments_are_checked(tmp_path: Path, kwargs: dict, message: str | None) -> None:
    if message is None:
        summary = generate_corpus(tmp_path, books=1, pages=1, images="blank", **kwargs)
        assert summary.books[0].startswith("New York:")
        return
    with pytest.raises(ValueError, match=message):
        generate_corpus(tmp_path, **{"images": "blank", **kwargs})


def cli_app() -> typer.Typer:
    """The real root app when it imports; otherwise this module's commands on a bare app."""
    try:
        from ocr_assets.cli import app

        return app
    except Exception:  # another area's CLI module mid-edit must not fail this test
        app = typer.Typer()
        sample_cli.register(app)
        app.command("noop", hidden=True)(lambda: None)  # keep Typer in multi-command mode
        return app


def test_the_cli_writes_a_corpus_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    result = CliRunner().invoke(
        cli_app(), ["sample-corpus", "--out", str(out), "--books", "2", "--pages", "3", "--seed", "4", "--blank-images"],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "allow-listed pages" in result.output and "ground truth" in result.output
    assert len(list((out / "ground_truth").rglob("*.json"))) == 6
    assert len(list((out / "images").rglob("*.jpg"))) == 6


def test_the_cli_reports_bad_arguments_without_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app(), ["sample-corpus", "--out", str(tmp_path), "--format", "gif",
                                            "--blank-images"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.parametrize("page_size", [(300, 420), (1000, 1400), (2480, 3508)])
def test_small_and_large_pages_still_lay_out_courses(tmp_path: Path, page_size: tuple[int, int]) -> None:
    summary = generate_corpus(tmp_path, books=2, pages=8, page_size=page_size, images="blank")
    assert summary.courses > 0
    for truth in truths(tmp_path).values():
        for block in truth.raw_ocr.text_blocks:
            assert block.position[2] <= page_size[0] and block.position[3] <= page_size[1]
