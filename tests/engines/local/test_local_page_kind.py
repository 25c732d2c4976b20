"""The non-catalog detector: entries that read like courses, and whole pages that are not course listings."""

from __future__ import annotations

import pytest

from ocr_assets.engines.local.course_extractor import extract_fields, parse_course_heading
from ocr_assets.engines.local.page_kind import (
    catalog_words,
    entries_are_courses,
    is_catalog_entry,
    is_people_record,
    reads_as_catalog,
)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("Analytic Geometry. Three hours a week. Fall term.", True),
        ("Elementary Latin. Four periods. Text: Collar and Daniell, First Latin Book.", True),
        ("General Chemistry. Lectures and laboratory work. Professor Brown.", True),
        ("The English Drama. Open to juniors and seniors.", True),
        ("Caroline, born 12 July, 1838; married Warren Horton.", False),
        ("Rachel Amanda, b. 5 April, 1826; d. 1890.", False),
        ("WOVEN DESIGN IN FLAT REED. These four strands comprise the unit, and it is repeated.", False),
        ("The First Voyage. Of course the ship sailed at dawn, and the passengers slept.", False),
    ],
)
def test_an_entry_reads_like_a_course_only_with_catalog_words_and_no_family_record(entry, expected) -> None:
    assert is_catalog_entry(entry) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("George Bertrand, born 27 April, 1844", True),
        ("married Henrietta Meeks, daughter of John Meeks", True),
        ("d. Jan. 3, 1870", True),
        ("Three hours a week, first semester", False),
        ("He was born to rule.", True),  # a false alarm costs nothing when the entry has no catalog words
    ],
)
def test_records_of_people(text: str, expected: bool) -> None:
    assert is_people_record(text) is expected


def test_catalog_words_are_counted_once_each_and_of_course_is_prose() -> None:
    assert catalog_words("Three hours. Three hours. Fall term.") == {"three hours", "fall term"}
    assert catalog_words("Of course he came; it took some hours.") == set()


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([], False),
        (["Algebra. Three hours.", "Geometry. Two hours.", "Trigonometry."], True),  # the last one is cut off
        (["Algebra. Three hours.", "Geometry.", "Trigonometry."], False),
        (["Mary, born 1820. Three hours later she married.", "John, born 1822.", "Ann. Lectures."], False),
    ],
)
def test_a_page_keeps_its_entries_when_most_read_like_courses(entries, expected) -> None:
    assert entries_are_courses(entries) is expected


GENEALOGY = [
    "48 HORTON GENEALOGY.",
    "Children of Cornelius and Mary Horton:",
    "1. Caroline, born 12 July, 1838; married Warren Horton,",
    "of Chatham, N. Y.",
    "2. Edward Baker, born 21 October, 1840; married Ellen Delma.",
    "3. George Bertrand, born 27 April, 1844; married Henrietta Meeks.",
    "4. Cornelius Miller, born in Philmont, N. Y., 26 November, 1844.",
    "5. Rachel Amanda, born 5 April, 1846; died 3 May, 1850.",
]
PROSE = [
    "WHY AND WHEREFORE.",
    "In making a study of my race, I have found three marked characteristics:",
    "Intelligence, Energy, Industry. Combined with these three characteristics is",
    "an intense Love of Nationality. We live in a complex world.",
]
VERSE = [
    "THE SONG OF THE MOAT.",
    "1. The water lies so still and deep,",
    "Where willows bend and lilies sleep;",
    "2. The Castle Wall is grey and old,",
    "And all its tales are long since told.",
]
STEPS = [
    "70 SEAT WEAVING",
    "Strand 3. Under 2, over 2, under 2, then under 1, and repeat across the frame.",
    "FIG. 59. WOVEN DESIGN IN FLAT REED.",
    "These four strands comprise the unit, and it is repeated until the frame is woven.",
]
INDEX = [
    "INDEX.",
    "Abbott, Captain, 12, 40",
    "Boston, 3, 17, 55",
    "Chatham, N. Y., 48",
]
CATALOG = [
    "DEPARTMENT OF MATHEMATICS",
    "1. Algebra. Three hours a week. Fall term.",
    "2. Analytic Geometry. Three hours a week. Spring term.",
    "Professor Smith.",
]


@pytest.mark.parametrize(
    ("lines", "content_type"),
    [(GENEALOGY, "other"), (PROSE, "other"), (VERSE, "other"), (STEPS, "other"), (INDEX, "index")],
    ids=["genealogy", "prose under a caps heading", "numbered verse", "numbered steps and a figure", "index"],
)
def test_pages_that_are_not_catalog_listings_yield_no_courses(lines: list[str], content_type: str) -> None:
    found = extract_fields(lines)
    assert found.courses == []
    assert found.content_type == content_type


def test_a_catalog_page_still_yields_its_courses() -> None:
    found = extract_fields(CATALOG)
    assert [(c.course_name, c.department) for c in found.courses] == [
        ("Algebra", "Mathematics"), ("Analytic Geometry", "Mathematics")]
    assert found.content_type == "course_listing"


def test_a_department_heading_alone_is_a_course_listing_only_beside_catalog_words() -> None:
    assert reads_as_catalog(["DEPARTMENT OF GREEK", "The courses are open to freshmen; lectures daily."])
    assert extract_fields(["DEPARTMENT OF GREEK", "The courses are open to freshmen; lectures daily."]
                          ).content_type == "course_listing"
    assert not reads_as_catalog(PROSE)


def test_terse_entries_under_a_department_heading_are_courses_but_people_never_are() -> None:
    terse = ["MATHEMATICS", "1. Algebra. Equations and graphs.", "2. Geometry. Plane figures and proofs."]
    assert [c.course_name for c in extract_fields(terse).courses] == ["Algebra", "Geometry"]
    assert entries_are_courses(["Algebra. Equations.", "Geometry. Figures."], under_department=[True, True])
    assert not entries_are_courses(["Algebra. Equations.", "Geometry. Figures."], under_department=[False, False])
    people = ["Caroline, born 12 July, 1838.", "Edward, born 21 October, 1840."]
    assert not entries_are_courses(people, under_department=[True, True])


@pytest.mark.parametrize("line", ["FIG. 59. WOVEN DESIGN IN FLAT REED.", "Chapter 3. The Voyage Out.",
                                  "No. 4. Rachel Amanda Horton.", "Plate 2. The Old Mill."])
def test_numbered_figures_chapters_and_plates_are_not_course_headings(line: str) -> None:
    assert parse_course_heading(line) is None
