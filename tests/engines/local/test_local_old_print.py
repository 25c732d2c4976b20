"""The old-print fixes: each rule repairs what recognisers misread on real scans, and leaves sound text alone."""

from __future__ import annotations

import pytest

from ocr_assets.engines.local.old_print import fix_old_print, repair_word


@pytest.mark.parametrize(
    ("read", "printed"),
    [
        ("he said, ''yes'' and left", 'he said, "yes" and left'),
        ('tells us that " Their middles were', 'tells us that "Their middles were'),
        ('" Pah! I am sick', '"Pah! I am sick'),
        ("from about 138o to 18o6, in the 5oth year", "from about 1380 to 1806, in the 50th year"),
        ("costs from 6o cents", "costs from 60 cents"),
        ("P R E F A C E. The subject", "PREFACE. The subject"),
        ("to fnish the story by the fre", "to finish the story by the fire"),
        ("the evil infuences, a diffcult time", "the evil influences, a difficult time"),
        ("in tlhis province", "in this province"),
    ],
)
def test_a_misreading_seen_on_real_scans_is_repaired(read: str, printed: str) -> None:
    assert fix_old_print(read) == printed


@pytest.mark.parametrize(
    "text",
    [
        'She said, "Yes," and "no."',  # closing quotes keep their spaces
        "The fleet sailed; the feet were sore.",  # known words stay, even a possible `fleet` misread
        "No. 10 Room 2 Box",  # a letter before a digit: not a numeral
        "CHEM 101. Organic Chemistry. Professor McDonald.",  # codes and mixed-case names untouched
        "Courses A B C in order",  # three spaced capitals are not a letter-spaced word
        "1933-1934, Oct. 5, 2d term",
        "Zoology of the Xyzzq valley",  # an unknown word with no known neighbour stays
    ],
)
def test_sound_text_is_left_alone(text: str) -> None:
    assert fix_old_print(text) == text


def test_an_unknown_word_takes_the_most_frequent_known_neighbour() -> None:
    assert repair_word("Fnished") == "Finished"  # capitalised words are repaired, case kept
    assert repair_word("FNISH") == "FNISH"  # all capitals: a heading or a code, never touched
    assert repair_word("fn") == "fn"  # too short to judge
