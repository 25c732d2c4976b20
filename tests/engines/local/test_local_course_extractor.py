"""The rule-based catalog extractor: line parsers (parametrize tables) and whole pages."""

from __future__ import annotations

import pytest

from ocr_assets.engines.local.course_extractor import (
    carried_department,
    extract_fields,
    extract_page,
    join_wrapped_caps,
    normalise_line,
    parse_academic_year,
    parse_catalog_year,
    parse_course_heading,
    parse_department_heading,
    parse_instructors,
    parse_school_name,
    parse_term,
    parse_textbooks,
    parse_topics,
    split_sentences,
    strip_page_number,
    title_case,
)
from ocr_assets.prompts import upstream_context
from ocr_assets.schema import RawOcr, TextBlock, Textbook


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("DEPARTMENT OF MATHEMATICS", "Mathematics"),
        ("DEPARTMENTOFMATHEMATICS", "Mathematics"),
        ("MATHEMATICS", "Mathematics"),
        ("POLITICAL ECONOMY", "Political Economy"),
        ("DEPARTMENT OF HISTORY AND POLITICAL SCIENCE", "History and Political Science"),
        ("Department of Greek", "Greek"),
        ("DEPARTMENT OF GERMAN (ADVANCED COURSES)", "German"),
        ("MATHEMATICS—Continued", "Mathematics"),
        ("CORNELL UNIVERSITY", None),
        ("COURSES OF INSTRUCTION", None),
        ("CONTENTS", None),
        ("OF TECHNOLOGY", None),
        ("BERKELEY, CALIFORNIA", None),
        ("Department of Mathematics 12", None),
        ("1. Plane Trigonometry.", None),
        ("Professor Smith; Dr. Brown.", None),
    ],
)
def test_department_headings(line: str, expected: str | None) -> None:
    assert parse_department_heading(normalise_line(line)) == expected


@pytest.mark.parametrize(
    ("line", "prefix", "label", "title", "rest"),
    [
        ("Math 12. Analytic Geometry. Three hours. Fall term.", "Math", "12", "Analytic Geometry",
         "Three hours. Fall term."),
        ("1. Plane Trigonometry.", "", "1", "Plane Trigonometry", ""),
        ("Pol. Sci. 3. Comparative Politics.", "Pol. Sci.", "3", "Comparative Politics", ""),
        ("C.E. 101. Bridge Design.", "C.E.", "101", "Bridge Design", ""),
        ("Course 12. Goethe's Faust.", "Course", "12", "Goethe's Faust", ""),
        ("A. Elementary Algebra.", "", "A", "Elementary Algebra", ""),
        ("12a. The English Drama.—Lectures.", "", "12a", "The English Drama", "Lectures."),
    ],
)
def test_course_headings(line, prefix, label, title, rest) -> None:
    heading = parse_course_heading(line)
    assert heading is not None
    assert (heading.prefix, heading.label, heading.title, heading.rest) == (prefix, label, title, rest)


@pytest.mark.parametrize(
    "line",
    [
        "Three hours a week. Fall term.",
        "1890. The history of the college.",  # a year, not a course number
        "Professor A. Smith. Lectures.",  # an initial, not a course letter
        "2. required of all students.",  # not a title
        "Sept. 12, Monday. Entrance examinations begin.",
        "Analytic Geometry, 12",
    ],
)
def test_lines_that_are_not_course_headings(line: str) -> None:
    assert parse_course_heading(line) is None


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Professor Smith.", ["Professor Smith"]),
        ("Professor Smith and Mr. Brown.", ["Professor Smith", "Mr. Brown"]),
        ("Assistant Professor J. H. Pratt.", ["Assistant Professor J. H. Pratt"]),
        ("Professors Smith and Jones.", ["Professor Smith", "Professor Jones"]),
        ("Miss Porter; Dr. Hadley.", ["Miss Porter", "Dr. Hadley"]),
        ("A study of the solar system.", []),
        ("Three hours.", []),
    ],
)
def test_instructors(sentence: str, expected: list[str]) -> None:
    assert parse_instructors(sentence) == expected


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Text: Wentworth, Analytic Geometry.", [Textbook(author="Wentworth", title="Analytic Geometry")]),
        ("Texts: Smith and Gale, Elements of Analytic Geometry; James, Psychology, Briefer Course.",
         [Textbook(author="Smith and Gale", title="Elements of Analytic Geometry"),
          Textbook(author="James", title="Psychology, Briefer Course")]),
        ("Texts: Strasburger, A Text-Book of Botany: Coulter, Plant Relations.",
         [Textbook(author="Strasburger", title="A Text-Book of Botany"),
          Textbook(author="Coulter", title="Plant Relations")]),
        ("Textbook: Higher Algebra, by Hall and Knight.", [Textbook(title="Higher Algebra", author="Hall and Knight")]),
        ("Textbook: Shakspere Primer.", [Textbook(title="Shakspere Primer")]),
        ("The text of Homer is read.", []),
    ],
)
def test_textbooks(sentence: str, expected: list[Textbook]) -> None:
    assert parse_textbooks(sentence) == expected


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Fall term.", "Fall term"),
        ("First semester.", "First semester"),
        ("Throughout the year.", "Throughout the year"),
        ("Second half-year.", "Second half-year"),
        ("either semester", "Either semester"),
        ("Three hours a week.", None),
    ],
)
def test_terms(sentence: str, expected: str | None) -> None:
    assert parse_term(sentence) == expected


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("A study of the solar system, the motions of the moon, and eclipses.",
         ["the solar system", "the motions of the moon", "eclipses"]),
        ("Lectures and recitations on limits and derivatives.", ["limits", "derivatives"]),
        ("An introduction to nutrition, growth, and irritability, with frequent written exercises.",
         ["nutrition", "growth", "irritability"]),
        ("The course treats the Papacy and the Empire and feudalism.", ["the Papacy and the Empire", "feudalism"]),
        ("Recitations, lectures, and exercises in forms and syntax.", ["forms", "syntax"]),
        ("Required of Freshmen.", []),
    ],
)
def test_topics(sentence: str, expected: list[str]) -> None:
    assert parse_topics(sentence) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("for the Academic Year 1890-1891", "1890-1891"),
        ("CATALOGUE FOR 1890-91", "1890-1891"),
        ("1899–1900", "1899-1900"),
        ("1890-1895", None),
        ("Course 12-14", None),
    ],
)
def test_academic_years(text: str, expected: str | None) -> None:
    assert parse_academic_year(text) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [("1890", 1890), ("Boston, 1912.", 1912), ("1890-1891", None), ("12", None), ("History since 1789 and", None)],
)
def test_catalog_years(line: str, expected: int | None) -> None:
    assert parse_catalog_year(line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("UNIVERSITY OF CALIFORNIA", "University of California"),
        ("12 UNIVERSITY OF CALIFORNIA AT LOS ANGELES", "University of California at Los Angeles"),
        ("CATALOGUE OF OBERLIN COLLEGE, 1890-91", "Oberlin College"),
        ("CATALOGUEOFOBERLINCOLLEGE", "Oberlin College"),
        ("THE UNIVERSITY OF CHICAGO", "The University of Chicago"),
        ("Wellesley College", "Wellesley College"),
        ("Published by the University", None),
        ("DEPARTMENT OF MATHEMATICS", None),
        ("SCHOOL OF LAW", None),
        ("The courses of the college are elective", None),
    ],
)
def test_school_names(line: str, expected: str | None) -> None:
    assert parse_school_name(normalise_line(line)) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("12 CORNELL UNIVERSITY", ("CORNELL UNIVERSITY", 12)),
        ("CORNELL UNIVERSITY 13", ("CORNELL UNIVERSITY", 13)),
        ("7", ("", 7)),
        ("1890", ("1890", None)),
        ("Math 12", ("Math 12", None)),
    ],
)
def test_page_numbers_in_running_heads(line: str, expected) -> None:
    assert strip_page_number(line) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("term.Professor Smith.The straight line,the conic", "term. Professor Smith. The straight line, the conic"),
        ("  many   spaces ", "many spaces"),
        ("3.5 hours", "3.5 hours"),
        ("DEPARTMENTOFGREEK", "DEPARTMENT OF GREEK"),
    ],
)
def test_normalise_line(raw: str, expected: str) -> None:
    assert normalise_line(raw) == expected


def test_sentences_do_not_split_after_titles_initials_or_shorthand() -> None:
    text = "Professor J. H. Smith and Mr. Brown. A study of Pol. Sci. texts. Fee, $3. Done"
    assert split_sentences(text) == [
        "Professor J. H. Smith and Mr. Brown.", "A study of Pol. Sci. texts.", "Fee, $3.", "Done",
    ]


def test_title_case_and_wrapped_capitals() -> None:
    assert title_case("GOETHE'S FAUST AND THE ANGLO-SAXON") == "Goethe's Faust and the Anglo-Saxon"
    assert join_wrapped_caps(["CATALOGUE", "OF THE", "MASSACHUSETTS INSTITUTE", "OF TECHNOLOGY", "Boston"]) == [
        "CATALOGUE OF THE MASSACHUSETTS INSTITUTE OF TECHNOLOGY", "Boston",
    ]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["ENGLISH (ADVANCED", "COURSES)", "Mr. Dunning."], ["ENGLISH (ADVANCED COURSES)", "Mr. Dunning."]),
        (["DEPARTMENT OF CIVIL", "ENGINEERING", "Professor Gilman."], ["DEPARTMENT OF CIVIL ENGINEERING",
                                                                       "Professor Gilman."]),
        (["DEPARTMENT OF GREEK", "DEPARTMENT OF LATIN"], ["DEPARTMENT OF GREEK", "DEPARTMENT OF LATIN"]),
        (["KNOX COLLEGE", "DEPARTMENT OF LATIN"], ["KNOX COLLEGE", "DEPARTMENT OF LATIN"]),
    ],
)
def test_department_headings_wrapped_in_a_narrow_column_are_rejoined(lines, expected) -> None:
    assert join_wrapped_caps(lines) == expected
    assert parse_department_heading(join_wrapped_caps(lines)[0]) == parse_department_heading(expected[0])


COURSE_PAGE = """\
12 UNIVERSITY OF CALIFORNIA
1. Plane Trigonometry.
Three hours a week. Fall term. Professor Smith. A study of the trigonometric functions,
logarithms, and the solution of triangles. Required of Freshmen.
Text: Todhunter, Plane Trigonometry.
DEPARTMENT OF PHYSICS
Professor Howland; Mr. Ware.
The elementary courses are prerequisite to all others in the department.
2. General Physics.
Five hours; laboratory work two afternoons a week. Either semester. Mr. Ware. Lectures and
recitations on optics and heat. Prerequisite:
Course 1. Laboratory fee, $5.
Courses primarily for Graduates
101. Theory of Electricity and Electro-
magnetic Waves.
Two hours. Throughout the year. Professor Howland and Mr. Ware. The course treats potential and electric waves.
Texts: Preston, The Theory of Light; Thompson, Elementary Lessons in Electricity and Magnetism.
A. Elementary Physics.
Three hours. First semester. Mr. Ware.""".splitlines()


def test_a_course_page_yields_every_field_it_shows() -> None:
    found = extract_fields(COURSE_PAGE, carried_department="Mathematics")
    assert found.content_type == "course_listing"
    assert found.school_name == "University of California"
    assert found.page_number == 12
    assert (found.catalog_year, found.academic_year) == (None, None)  # not visible on this page
    assert found.departments == ["Physics"]
    trig, physics, electricity, elementary = found.courses
    assert trig.model_dump() == {
        "course_name": "Plane Trigonometry", "department": "Mathematics", "level": "undergraduate",
        "topics": ["the trigonometric functions", "logarithms", "the solution of triangles"],
        "textbooks": [{"title": "Plane Trigonometry", "author": "Todhunter"}], "term": "Fall term",
        "instructors": ["Professor Smith"],
        "description": "A study of the trigonometric functions, logarithms, and the solution of triangles. "
                       "Required of Freshmen.",
    }
    assert (physics.course_name, physics.department, physics.term, physics.instructors) == (
        "General Physics", "Physics", "Either semester", ["Mr. Ware"])
    assert physics.description == "Lectures and recitations on optics and heat. Prerequisite: Course 1. Laboratory fee, $5."
    assert electricity.course_name == "Theory of Electricity and Electromagnetic Waves"
    assert electricity.level == "graduate"
    assert electricity.instructors == ["Professor Howland", "Mr. Ware"]
    assert [t.author for t in electricity.textbooks] == ["Preston", "Thompson"]
    assert (elementary.level, elementary.description, elementary.textbooks) == ("graduate", None, [])


def test_without_a_visible_school_or_department_the_fields_stay_empty() -> None:
    found = extract_fields(["3. Plane Geometry.", "Three hours. Fall term. Mr. Hale."])
    (course,) = found.courses
    assert (course.department, course.level) == (None, None)
    assert found.school_name is None


def test_a_high_school_catalog_marks_courses_secondary() -> None:
    found = extract_fields(["ERASMUS HALL HIGH SCHOOL 4", "ENGLISH", "1. English Literature.",
                            "Four periods a week. Throughout the year. Miss Porter."])
    assert found.courses[0].level == "secondary"
    assert found.courses[0].department == "English"


TITLE_PAGE = [
    "ANNUAL CATALOGUE", "OF THE", "MASSACHUSETTS INSTITUTE", "OF TECHNOLOGY", "Catalogue of Courses",
    "for the Academic Year 1933-1934", "with Announcements for 1934-1935", "BOSTON, MASSACHUSETTS",
    "Printed for the Institute", "1933",
]


@pytest.mark.parametrize(
    ("lines", "content_type"),
    [
        (TITLE_PAGE, "title_page"),
        (COURSE_PAGE, "course_listing"),
        (["2 WILLIAMS COLLEGE", "CONTENTS", "Officers of Instruction 3", "Department of Mathematics 8"],
         "table_of_contents"),
        (["WILLIAMS COLLEGE 9", "INDEX", "Analytic Geometry, 12", "Botany, 4, 5"], "index"),
        (["WILLIAMS COLLEGE 3", "OFFICERS OF INSTRUCTION", "JOHN A. SMITH, A.M., Professor of Mathematics."],
         "front_matter"),
        (["Candidates for admission must present testimonials."], "other"),
        ([], "other"),
    ],
)
def test_page_content_types(lines: list[str], content_type: str) -> None:
    assert extract_fields(lines).content_type == content_type


def test_a_title_page_gives_school_and_years() -> None:
    found = extract_fields(TITLE_PAGE)
    assert (found.school_name, found.catalog_year, found.academic_year) == (
        "Massachusetts Institute of Technology", 1933, "1933-1934")
    assert found.courses == []


def test_extract_page_uses_the_upstream_department_and_falls_back_to_the_request_page() -> None:
    raw = RawOcr(text_blocks=[TextBlock(block_id=0, text="5. Heat.")], layout_description="single column")
    context = {"text_tail": "…", "last_courses": [{"course_name": "Light", "department": "Physics"}]}
    result = extract_page(raw, ["5. Heat.", "Two hours. Fall term."], page=7, previous_context=context)
    assert result.raw_ocr == raw
    assert result.page_info.page_number == 7
    assert result.courses[0].department == "Physics"


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (None, None),
        ({"last_courses": []}, None),
        ({"last_courses": [{"course_name": "A", "department": "Greek"}, {"course_name": "B", "department": None}]},
         "Greek"),
        # The upstream page ends with a new department's heading: its courses start on this page.
        ({"text_tail": "Text: Jebb, Sophocles.\nDEPARTMENT OF LATIN\nProfessor Lane.",
          "last_courses": [{"course_name": "Homer", "department": "Greek"}]}, "Latin"),
        ({"text_tail": "DEPARTMENT OF LATIN\n1. Livy.\nThree hours.",
          "last_courses": [{"course_name": "Livy", "department": "Latin"}]}, "Latin"),
        ({"text_tail": "GREEK\n1. Homer.\nThree hours. Text: Jebb, Sophocles.",
          "last_courses": [{"course_name": "Homer", "department": None}]}, None),
        # A tail cut to length starts mid-line: its first line is not read as a heading.
        ({"text_tail": "LATIN\n" + "Three hours a week. " * 30, "last_courses": []}, None),
    ],
)
def test_carried_department(context, expected) -> None:
    assert carried_department(context) == expected


def test_a_page_opening_mid_department_files_its_courses_under_the_carried_heading() -> None:
    # The upstream page ends with the Latin heading and staff; Latin's first course is on this page.
    lines = ["4", "GREEK", "7. Homer.", "Three hours. Fall term. Professor Baldwin.", "DEPARTMENT OF LATIN",
             "Professor Lane; Mr. Hale."]
    raw = RawOcr(text_blocks=[TextBlock(block_id=i, text=text) for i, text in enumerate(lines)])
    context = upstream_context(extract_page(raw, lines, page=4))
    assert context is not None and context["last_courses"] == [{"course_name": "Homer", "department": "Greek"}]
    page = ["5", "1. Livy.", "Three hours. Fall term. Mr. Hale.", "2. Horace.", "Two hours. Spring term.",
            "DEPARTMENT OF MATHEMATICS", "1. Plane Geometry.", "Five hours. Fall term."]
    found = extract_fields(page, carried_department=carried_department(context))
    assert [(c.course_name, c.department) for c in found.courses] == [
        ("Livy", "Latin"), ("Horace", "Latin"), ("Plane Geometry", "Mathematics")]
