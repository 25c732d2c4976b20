"""Reading order: rows, two-column pages, running heads, and the raw_ocr blocks built from them."""

from __future__ import annotations

import pytest

from ocr_assets.engines.local.layout import OcrLine, find_gutter, raw_ocr_from_layout, reading_order


def line(x0: float, y0: float, x1: float, text: str, height: float = 20) -> OcrLine:
    return OcrLine(x0, y0, x1, y0 + height, text)


def two_column_page() -> list[OcrLine]:
    head = [line(80, 20, 95, "12"), line(300, 20, 700, "UNIVERSITY OF CALIFORNIA")]
    left = [line(80, 100 + 30 * i, 480 - (i % 2) * 40, f"L{i}") for i in range(6)]
    right = [line(520, 100 + 30 * i, 920 - (i % 3) * 30, f"R{i}") for i in range(6)]
    # A justified line that ends a few pixels past the gutter still belongs to its column.
    left[2] = line(80, 160, 503, "L2")
    # A heading centred in the right column, level with the left column's first line.
    right[0] = line(600, 95, 840, "R0")
    footer = [line(200, 400, 800, "A FULL-WIDTH LINE AT THE FOOT")]
    return head + right + left + footer  # input order must not matter


def test_two_columns_read_left_column_then_right_between_full_width_lines() -> None:
    layout = reading_order(two_column_page())
    assert layout.columns == 2
    assert layout.row_texts() == [
        "12 UNIVERSITY OF CALIFORNIA",
        "L0", "L1", "L2", "L3", "L4", "L5",
        "R0", "R1", "R2", "R3", "R4", "R5",
        "A FULL-WIDTH LINE AT THE FOOT",
    ]
    assert layout.gutter_x is not None and 480 < layout.gutter_x < 520
    assert "two columns" in layout.describe()


def test_a_single_column_reads_top_to_bottom_and_joins_pieces_of_a_row() -> None:
    lines = [line(300, 100, 600, "world"), line(80, 102, 280, "hello"), line(80, 60, 600, "first")]
    layout = reading_order(lines)
    assert layout.columns == 1
    assert layout.row_texts() == ["first", "hello world"]
    assert [l.text for l in layout.lines] == ["first", "hello", "world"]


def test_contents_with_page_numbers_flush_right_is_one_column() -> None:
    lines = []
    for i in range(10):
        lines.append(line(80, 100 + 30 * i, 300 + 20 * (i % 4), f"Section {i}"))
        lines.append(line(890, 100 + 30 * i, 910, str(i + 3)))
    assert find_gutter(lines) is None
    assert reading_order(lines).row_texts()[0] == "Section 0 3"


@pytest.mark.parametrize("count", [0, 1, 4])
def test_too_few_lines_are_one_column(count: int) -> None:
    lines = [line(80 + 440 * (i % 2), 100 + 30 * i, 480 + 440 * (i % 2), f"x{i}") for i in range(count)]
    assert find_gutter(lines) is None


def test_raw_ocr_blocks_are_numbered_in_reading_order_with_pixel_boxes() -> None:
    raw = raw_ocr_from_layout(reading_order([line(80.4, 60.6, 600.2, "first"), line(80, 100, 280, "second")]))
    assert [(b.block_id, b.text, b.position) for b in raw.text_blocks] == [
        (0, "first", [80, 61, 600, 81]),
        (1, "second", [80, 100, 280, 120]),
    ]
    assert raw.layout_description == "single column, 2 text lines"
    assert raw_ocr_from_layout(reading_order([])).layout_description == "no text detected"


def test_scaled_lines_map_back_to_source_pixels() -> None:
    assert line(10, 20, 30, "x").scaled(2.0) == OcrLine(20, 40, 60, 80, "x")


def test_a_short_right_column_still_reads_column_by_column() -> None:
    # The end of an index: a full left column and three entries at the top of the right one.
    head = [line(400, 20, 600, "KNOX COLLEGE")]
    left = [line(80, 100 + 30 * i, 240 + 40 * (i % 5), f"L{i}") for i in range(20)]
    right = [line(520, 100 + 30 * i, 700 + 20 * i, f"R{i}") for i in range(3)]
    layout = reading_order(head + right + left)
    assert layout.columns == 2
    assert layout.row_texts() == ["KNOX COLLEGE", *(f"L{i}" for i in range(20)), "R0", "R1", "R2"]


def test_a_page_number_centred_on_the_gutter_is_read_after_both_columns() -> None:
    left = [line(80, 100 + 30 * i, 480 - (i % 2) * 40, f"L{i}") for i in range(6)]
    right = [line(520, 100 + 30 * i, 920 - (i % 3) * 30, f"R{i}") for i in range(6)]
    layout = reading_order([line(485, 300, 505, "7"), *right, *left])
    assert layout.columns == 2
    assert layout.row_texts() == [*(f"L{i}" for i in range(6)), *(f"R{i}" for i in range(6)), "7"]


def test_a_column_piece_near_the_gutter_stays_in_its_column() -> None:
    # A detector splits a justified line at a wide space: the last word ends just short of the gutter.
    page = two_column_page()
    page[page.index(next(l for l in page if l.text == "L3"))] = line(80, 190, 400, "L3")
    page.append(line(445, 190, 478, "an"))
    assert reading_order(page).row_texts()[:6] == ["12 UNIVERSITY OF CALIFORNIA", "L0", "L1", "L2", "L3 an", "L4"]


def test_ragged_single_column_lines_beside_a_gap_are_not_a_second_column() -> None:
    # Short last lines of paragraphs on the left; short centred headings of different widths on the right.
    lines = [line(80, 100 + 30 * i, 300 + 20 * (i % 3), f"tail {i}") for i in range(8)]
    lines += [line(560 + 40 * i, 400 + 60 * i, 700 + 90 * i, f"HEADING {i}") for i in range(4)]
    assert find_gutter(lines) is None
    assert reading_order(lines).columns == 1
