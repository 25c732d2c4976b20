"""Word spaces for PP-OCR recognition: CTC character positions matched against ink gaps.

The PP-OCRv4 recogniser shipped with RapidOCR (trained mostly on Chinese) often drops the spaces
of English print ("Threehours;laboratorywork"). A word gap is visible in the line image as a run
of ink-free columns much wider than the gaps between letters; each such gap that falls between
two decoded characters (located by their CTC frames) becomes a space.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import cv2
import numpy as np

# A word gap is at least this fraction of the line box height (letter gaps are far narrower;
# measured on serif print at 14–40 px: letters ≤ 0.1, word spaces ≥ 0.25).
WORD_GAP_RATIO = 0.2
# ...and at least this fraction of the mean character advance.
ADVANCE_RATIO = 0.35
# Ink within this fraction of the line height from a crop edge is too narrow to be a word.
EDGE_RATIO = 0.25


# Function words the recogniser glues to a following capitalised word ("ofBotany", "forHigh");
# camel-case names (McDonald, DeWitt) never start with one of these.
_GLUED_FUNCTION_WORD = re.compile(r"\b(of|for|and|the|in|on|at|to|with|by|from|Professor)(?=[A-Z][a-z])")


def tidy_text(text: str) -> str:
    """NFKC (full-width `，` → `,`, as the Chinese-trained model emits) and split glued function words."""
    return _GLUED_FUNCTION_WORD.sub(r"\1 ", unicodedata.normalize("NFKC", text))


_CLOSING = set(".,;:!?)]'’")


@dataclass(frozen=True)
class DecodedLine:
    """A recognised line: text, mean character confidence."""

    text: str
    score: float


def ink_gaps(crop: np.ndarray, min_width: float, *, margin: float = 0) -> list[tuple[int, int]]:
    """Runs of ink-free columns at least `min_width` wide, as (start, end) pixel columns.

    Only interior runs count: with at least `margin` columns of the crop on either side (a sliver
    of ink at a crop edge is a clipped neighbour, not a word).
    """
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    _, ink = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    empty = ink.sum(axis=0) == 0
    # Edges of ink-free runs: +1 where a run starts, -1 where it ends.
    padded = np.concatenate(([False], empty, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        (int(a), int(b)) for a, b in zip(starts, ends, strict=True)
        if a > max(margin, 0) and b < len(empty) - margin and b - a >= min_width
    ]


def ctc_decode_with_spaces(
    probs: np.ndarray,
    characters: list[str],
    crop: np.ndarray,
    *,
    input_width: int,
    resized_width: int,
    gap_ratio: float = WORD_GAP_RATIO,
    advance_ratio: float = ADVANCE_RATIO,
) -> DecodedLine:
    """Greedy CTC decoding of one line (`probs`: frames × classes, class 0 = blank), plus word spaces.

    The crop was scaled to `resized_width` and padded to `input_width` for the recogniser; that
    maps each CTC frame back to a column of the crop.
    """
    best = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    keep = best != 0
    keep[1:] &= best[1:] != best[:-1]
    frames = np.flatnonzero(keep)
    if frames.size == 0:
        return DecodedLine("", 0.0)
    decoded = [characters[i] for i in best[keep]]
    to_crop = (input_width / probs.shape[0]) * crop.shape[1] / resized_width
    centres = (frames + 0.5) * to_crop
    spaces: set[int] = set()
    height = crop.shape[0]
    # Capitals-only lines have short boxes but wide letter gaps: the mean character advance
    # (crop width per decoded character) bounds the threshold from below as well.
    advance = crop.shape[1] / len(decoded)
    min_width = max(gap_ratio * height, advance_ratio * advance)
    for start, end in ink_gaps(crop, min_width, margin=EDGE_RATIO * height):
        after = int(np.searchsorted(centres, (start + end) / 2))
        if 0 < after < len(decoded) and decoded[after - 1] != " " and decoded[after] != " ":
            before, char = decoded[after - 1], decoded[after]
            # A narrow digit ("1") leaves a wide gap, as does a period after a round glyph; but
            # print never splits a number ("1933-1934") or sets a space before closing punctuation.
            if not (before.isdigit() and char.isdigit()) and char not in _CLOSING and before not in "([":
                spaces.add(after)
    text = "".join((" " if index in spaces else "") + char for index, char in enumerate(decoded))
    return DecodedLine(tidy_text(text), float(confidence[keep].mean()))
