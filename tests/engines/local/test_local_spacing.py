"""Word spaces restored from ink gaps and CTC character positions."""

from __future__ import annotations

import numpy as np
import pytest

from ocr_assets.engines.local.spacing import ctc_decode_with_spaces, ink_gaps, tidy_text

CHARACTERS = ["blank", "a", "b", "1", "2", " "]


def crop_with_ink(width: int, height: int, ink_columns: list[tuple[int, int]]) -> np.ndarray:
    crop = np.full((height, width, 3), 255, dtype=np.uint8)
    for start, end in ink_columns:
        crop[5:-5, start:end] = 0
    return crop


def probs_for(frames: dict[int, int], total: int) -> np.ndarray:
    """One-hot CTC output: `frames` maps frame → class; every other frame is blank."""
    probs = np.zeros((total, len(CHARACTERS)), dtype=np.float32)
    probs[:, 0] = 1.0
    for frame, cls in frames.items():
        probs[frame] = 0.0
        probs[frame, cls] = 0.9
    return probs


def test_ink_gaps_finds_interior_runs_wider_than_the_minimum() -> None:
    crop = crop_with_ink(100, 40, [(10, 20), (22, 30), (45, 60)])
    assert ink_gaps(crop, min_width=8) == [(30, 45)]
    assert ink_gaps(crop, min_width=1) == [(20, 22), (30, 45)]


def test_a_wide_gap_between_two_characters_becomes_a_space() -> None:
    # Crop 100 px wide fed unscaled into a 100-px input with 10 frames of 10 px each.
    crop = crop_with_ink(100, 40, [(10, 25), (60, 80)])
    probs = probs_for({1: 1, 7: 2}, total=10)
    decoded = ctc_decode_with_spaces(probs, CHARACTERS, crop, input_width=100, resized_width=100, gap_ratio=0.2)
    assert decoded.text == "a b"
    assert decoded.score == pytest.approx(0.9)


def test_narrow_gaps_and_digit_pairs_get_no_space() -> None:
    crop = crop_with_ink(100, 40, [(10, 25), (60, 80)])
    assert ctc_decode_with_spaces(probs_for({1: 3, 7: 4}, 10), CHARACTERS, crop, input_width=100,
                                  resized_width=100).text == "12"
    tight = crop_with_ink(100, 40, [(10, 40), (42, 80)])
    assert ctc_decode_with_spaces(probs_for({1: 1, 7: 2}, 10), CHARACTERS, tight, input_width=100,
                                  resized_width=100).text == "ab"


def test_repeated_frames_collapse_and_an_empty_line_scores_zero() -> None:
    crop = crop_with_ink(100, 40, [(10, 80)])
    assert ctc_decode_with_spaces(probs_for({1: 1, 2: 1, 4: 1}, 10), CHARACTERS, crop, input_width=100,
                                  resized_width=100).text == "aa"
    empty = ctc_decode_with_spaces(probs_for({}, 10), CHARACTERS, crop, input_width=100, resized_width=100)
    assert (empty.text, empty.score) == ("", 0.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Manual ofBotany", "Manual of Botany"),
        ("Botany forHigh Schools", "Botany for High Schools"),
        ("ProfessorFiske", "Professor Fiske"),
        ("field work， and the herbarium；", "field work, and the herbarium;"),
        ("McDonald and DeWitt", "McDonald and DeWitt"),
        ("iPhone", "iPhone"),
    ],
)
def test_tidy_text_normalises_width_and_splits_glued_function_words(raw: str, expected: str) -> None:
    assert tidy_text(raw) == expected
