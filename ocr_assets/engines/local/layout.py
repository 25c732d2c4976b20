"""Reading order for OCR lines: rows, and two-column pages found by clustering line x-positions."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

import numpy as np

from ocr_assets.schema import RawOcr, TextBlock


@dataclass(frozen=True)
class OcrLine:
    """One recognised text line with its axis-aligned box in page pixels."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    score: float = 1.0

    @property
    def y_center(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def scaled(self, factor: float) -> OcrLine:
        """The same line with its box multiplied by `factor` (back to source-image pixels)."""
        if factor == 1.0:
            return self
        return OcrLine(self.x0 * factor, self.y0 * factor, self.x1 * factor, self.y1 * factor, self.text, self.score)


@dataclass(frozen=True)
class PageLayout:
    """Rows of lines in reading order plus what the ordering found (columns, gutter, spanning lines).

    A row is the boxes of one printed line, left to right (a detector may split a line in pieces).
    """

    rows: list[list[OcrLine]]
    columns: int
    gutter_x: float | None
    spanning_lines: int

    @property
    def lines(self) -> list[OcrLine]:
        return [line for row in self.rows for line in row]

    def row_texts(self) -> list[str]:
        return [" ".join(line.text for line in row) for row in self.rows]

    def describe(self) -> str:
        if not self.lines:
            return "no text detected"
        if self.columns == 1:
            return f"single column, {len(self.lines)} text lines"
        return (
            f"two columns split at x≈{self.gutter_x:.0f}, {len(self.lines)} text lines, "
            f"{self.spanning_lines} across the columns (headings, running heads, page numbers)"
        )


def _rows(lines: Sequence[OcrLine]) -> list[list[OcrLine]]:
    """Group lines whose vertical centres are within half a line height; rows top to bottom."""
    if not lines:
        return []
    tolerance = 0.5 * median(line.height for line in lines)
    ordered = sorted(lines, key=lambda line: line.y_center)
    rows: list[list[OcrLine]] = [[ordered[0]]]
    for line in ordered[1:]:
        if abs(line.y_center - rows[-1][0].y_center) <= tolerance:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda line: line.x0) for row in rows]


def find_gutter(lines: Sequence[OcrLine], *, min_lines_per_column: int = 3) -> float | None:
    """The x of a vertical gap with a column of lines on either side, or None for one column.

    Lines wider than 60% of the text area are headings or running heads and are ignored; a few
    narrow lines may still cross the gap (a centred running head), so the gap is the widest run
    of x-positions that at most 5% of the column lines cover. A short column (the end of an
    index) still counts: what makes a column is a run of lines sharing a left margin.
    """
    if len(lines) < 2 * min_lines_per_column:
        return None
    left, right = min(line.x0 for line in lines), max(line.x1 for line in lines)
    width = right - left
    if width <= 0:
        return None
    narrow = [line for line in lines if (line.x1 - line.x0) < 0.6 * width]
    if len(narrow) < 2 * min_lines_per_column:
        return None
    bins = 200
    coverage = np.zeros(bins, dtype=int)
    for line in narrow:
        first = int((line.x0 - left) / width * (bins - 1))
        last = int((line.x1 - left) / width * (bins - 1))
        coverage[first : last + 1] += 1
    allowed = max(1, int(0.05 * len(narrow)))
    middle = range(int(0.25 * bins), int(0.75 * bins))
    best: tuple[int, int] | None = None
    run_start: int | None = None
    for index in [*middle, middle.stop]:
        low = index < middle.stop and coverage[index] <= allowed
        if low and run_start is None:
            run_start = index
        elif not low and run_start is not None:
            if best is None or index - run_start > best[1] - best[0]:
                best = (run_start, index)
            run_start = None
    if best is None:
        return None
    gutter = left + (best[0] + best[1]) / 2 / (bins - 1) * width
    sides = [[line for line in narrow if line.x1 <= gutter], [line for line in narrow if line.x0 >= gutter]]
    for side in sides:
        if len(side) < min_lines_per_column:
            return None
        # A column spans a good part of the page; a strip of page numbers flush right does not.
        if max(line.x1 for line in side) - min(line.x0 for line in side) < 0.25 * width:
            return None
    # Both columns have a left margin; the ragged pieces of a single column beside a gap do not.
    tolerance = 0.5 * median(line.height for line in narrow)
    if any(_left_edge_lines(side, tolerance) < min_lines_per_column for side in sides):
        return None
    return gutter


def _left_edge_lines(side: Sequence[OcrLine], tolerance: float) -> int:
    """The most lines of `side` that start within `tolerance` of one another's left edge."""
    starts = sorted(line.x0 for line in side)
    return max(bisect_right(starts, start + tolerance) - index for index, start in enumerate(starts))


def reading_order(lines: Sequence[OcrLine]) -> PageLayout:
    """Order lines for reading: bands between full-width lines, left column before right in each band.

    A line centred on the gutter (a page number at the foot, a short centred head) belongs to
    neither column: like a full-width line it ends a band, so it is read after the columns above it.
    """
    gutter = find_gutter(lines)
    if gutter is None:
        return PageLayout(_rows(lines), columns=1, gutter_x=None, spanning_lines=0)
    tolerance = 0.5 * median(line.height for line in lines)
    # A line spans the columns if it reaches well into both, or straddles the gutter centred on it;
    # one that merely touches the gutter (a justified line a few pixels long) stays in its column.
    reach = 0.05 * (max(line.x1 for line in lines) - min(line.x0 for line in lines))
    spanning = [
        line for line in lines
        if (line.x0 < gutter - reach and line.x1 > gutter + reach)
        or (line.x0 < gutter < line.x1 and abs((line.x0 + line.x1) / 2 - gutter) < reach)
    ]
    spanning_ids = {id(line) for line in spanning}
    # A page number beside a centred running head belongs to the head's row, not to a column.
    mates = {
        id(line): head for head in spanning for line in lines
        if id(line) not in spanning_ids and abs(line.y_center - head.y_center) <= tolerance
    }
    ordered: list[list[OcrLine]] = []
    band_left: list[OcrLine] = []
    band_right: list[OcrLine] = []
    for line in sorted(lines, key=lambda line: line.y_center):
        if id(line) in mates:
            continue
        if id(line) in spanning_ids:
            row = [line, *(other for other in lines if mates.get(id(other)) is line)]
            ordered += _rows(band_left) + _rows(band_right) + [sorted(row, key=lambda item: item.x0)]
            band_left, band_right = [], []
        elif (line.x0 + line.x1) / 2 < gutter:
            band_left.append(line)
        else:
            band_right.append(line)
    ordered += _rows(band_left) + _rows(band_right)
    return PageLayout(ordered, columns=2, gutter_x=gutter, spanning_lines=len(spanning))


def raw_ocr_from_layout(layout: PageLayout) -> RawOcr:
    """`RawOcr` with one text block per line, numbered in reading order, boxes rounded to pixels."""
    blocks = [
        TextBlock(
            block_id=index,
            position=[round(line.x0), round(line.y0), round(line.x1), round(line.y1)],
            text=line.text,
        )
        for index, line in enumerate(layout.lines)
    ]
    return RawOcr(text_blocks=blocks, layout_description=layout.describe())
