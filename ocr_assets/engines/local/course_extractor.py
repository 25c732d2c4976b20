"""Rule-based extraction of catalog fields (departments, courses, school, years) from OCR text lines.

Pure functions over lines in reading order. What the page does not show stays None or empty:
nothing is guessed from the corpus path or filled from a default.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ocr_assets.engines.local.catalog_text import (  # re-exported: the extractor's public helpers
    DEPARTMENT_PREFIX,
    INSTITUTION,
    SMALL_WORDS,
    is_caps,
    join_wrapped_caps,
    normalise_line,
    split_sentences,
    title_case,
)
from ocr_assets.engines.local.page_kind import entries_are_courses, reads_as_catalog
from ocr_assets.prompts import CONTEXT_TAIL_CHARS
from ocr_assets.schema import Course, OcrPageResult, PageInfo, RawOcr, Textbook

# Heading words that name a part of the book rather than a department.
_SECTION_WORDS = {
    "CATALOGUE", "CATALOG", "REGISTER", "BULLETIN", "ANNOUNCEMENT", "ANNOUNCEMENTS", "CONTENTS", "INDEX",
    "CALENDAR", "OFFICERS", "FACULTY", "TRUSTEES", "ADMISSION", "ADMISSIONS", "COURSES", "INSTRUCTION",
    "EXPENSES", "DEGREES", "STUDENTS", "GRADUATES", "APPENDIX", "PREFACE", "THE",
}
_CONTENT_HEADINGS = {
    "CONTENTS": "table_of_contents", "TABLE OF CONTENTS": "table_of_contents", "INDEX": "index",
    "CALENDAR": "front_matter", "OFFICERS OF INSTRUCTION": "front_matter", "FACULTY": "front_matter",
    "ADMISSION": "front_matter", "ADMISSIONS": "front_matter", "TRUSTEES": "front_matter",
    "BOARD OF TRUSTEES": "front_matter", "EXPENSES": "front_matter", "DEGREES": "front_matter",
}
_CATALOGUE_WORDS = re.compile(r"\b(?:CATALOGUE|CATALOG|REGISTER|ANNOUNCEMENTS?|BULLETIN|PROSPECTUS)\b", re.I)
_NUMBER_WORDS = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|\d{1,2})"

_PAGE_NUMBER = re.compile(r"^\d{1,3}$")
_HEAD_NUMBER = re.compile(r"^(?:(?P<lead>\d{1,3})\s+(?P<a>.+)|(?P<b>.+?)\s+(?P<trail>\d{1,3}))$")
_PARENTHETICAL = re.compile(r"\s*[-—–]?\s*\([^)]*\)\s*$|\s*[-—–]\s*continued\.?$", re.I)
_COURSE_START = re.compile(
    r"^(?P<prefix>(?:(?:[A-Z][A-Za-z]*\.(?:[A-Z]\.)*|[A-Z][a-z]+)\s+){0,3}?)"
    r"(?P<label>\d{1,3}[a-z]?|[A-H])\s*[.:]\s+(?P<rest>[A-Z(\"'].*)$"
)
# "FIG. 59. WOVEN DESIGN …", "Chapter 3. The Voyage", "No. 4. Rachel …": numbered, but not courses.
_NOT_A_COURSE_PREFIX = re.compile(r"^(?:fig|figure|plate|chapter|chap|page|p|vol|no|art|sec|section|part|book)\.?$", re.I)
_ACADEMIC_YEAR = re.compile(r"\b(?P<a>1[5-9]\d\d|20\d\d)\s*[-–—/]\s*(?P<b>\d{4}|\d{2})\b")
_YEAR_LINE = re.compile(r"^(?:[A-Za-z ,.]*?\s)?(?P<year>1[5-9]\d\d|20[0-2]\d)\.?$")
_TERM = re.compile(
    r"\b(?:(?:fall|autumn|winter|spring|summer)\s+(?:term|quarter|semester|session)"
    r"|(?:first|second|third|either|both|each)\s+(?:term|semester|quarter|half[- ]year)s?"
    r"|throughout\s+the\s+year|full\s+year|the\s+whole\s+year)\b",
    re.I,
)
_HOURS = re.compile(rf"^\s*{_NUMBER_WORDS}\s+(?:hours?|periods?|exercises?|recitations?|lectures?)\b", re.I)
_TITLE_WORD = r"(?:Assistant\s+|Associate\s+|Adjunct\s+)?(?:Professors?|Prof\.|Drs?\.|Mr\.|Mrs\.|Miss|Instructors?|Tutors?)"
_NAME = r"(?:[A-Z]\.\s*)*[A-Z][a-zA-Z'’-]+"
_INSTRUCTOR_SENTENCE = re.compile(
    rf"^(?:{_TITLE_WORD}\s+{_NAME}(?:\s*(?:,|;|and)\s*(?:{_TITLE_WORD}\s+)?{_NAME})*)\.?$"
)
_TEXTBOOK = re.compile(r"^(?:Texts?|Text-?books?|Textbooks?)\s*:\s*(?P<list>.+?)\.?$", re.I)
_TOPIC_LEAD = re.compile(
    r"^(?:A\s+(?:study|survey|course)\s+(?:of|in)|An\s+introduction\s+to|The\s+course\s+treats"
    r"|(?:(?:Lectures|Recitations|Exercises|Readings)(?:,?\s+(?:and\s+)?(?:lectures|recitations|exercises|readings))*)"
    r"\s+(?:on|in)|Topics\s*:)\s+(?P<list>.+?)(?:,\s+with\s+.*)?\.?$"
)
_GRADUATE = re.compile(r"\b(?:primarily\s*for\s*graduates|graduate\s+courses?|for\s+graduate\s+students)\b", re.I)
_UNDERGRADUATE = re.compile(r"\b(?:freshm[ae]n|sophomores?|juniors?|seniors?|undergraduates?)\b", re.I)
_SECONDARY_SCHOOL = re.compile(r"\b(?:HIGH\s+SCHOOL|ACADEMY|LATIN\s+SCHOOL|GRAMMAR\s+SCHOOL)\b", re.I)


# -- line-level parsers (each a pure function with a parametrize table in the tests) ----------


def strip_page_number(line: str) -> tuple[str, int | None]:
    """`"12 UNIVERSITY OF CALIFORNIA"` → (`"UNIVERSITY OF CALIFORNIA"`, 12); other lines unchanged."""
    if _PAGE_NUMBER.match(line):
        return "", int(line)
    match = _HEAD_NUMBER.match(line)
    if match and is_caps(match.group("a") or match.group("b") or ""):
        number = match.group("lead") or match.group("trail")
        return (match.group("a") or match.group("b")).strip(), int(number)
    return line, None


def parse_department_heading(line: str) -> str | None:
    """The department a heading line names (`DEPARTMENT OF MATHEMATICS` → `Mathematics`), else None."""
    text = _PARENTHETICAL.sub("", line).strip().rstrip(".")
    if not text or any(ch.isdigit() for ch in text) or "," in text or ";" in text:
        return None
    prefixed = DEPARTMENT_PREFIX.match(text)
    if prefixed and len(text.split()) <= 9:
        name = prefixed.group("name").strip()
        return title_case(name) if is_caps(name) else name
    if not is_caps(text) or len(text.split()) > 6 or text.split()[0].lower() in SMALL_WORDS:
        return None
    words = set(re.findall(r"[A-Z]+", text))
    if words & _SECTION_WORDS or re.search(rf"\b{INSTITUTION}\b", text) or _CATALOGUE_WORDS.search(text):
        return None
    if text in {"OF THE", "AND", "FOR"}:
        return None
    return title_case(text)


def parse_school_name(line: str) -> str | None:
    """The institution a running head or title line names (`CATALOGUE OF OBERLIN COLLEGE` → `Oberlin College`)."""
    text, _number = strip_page_number(line)
    text = re.sub(r"[,.]?\s*(?:\d{4}\s*[-–—]\s*\d{2,4}|\d{4})\.?$", "", text).strip(" ,.")
    if not re.search(rf"\b{INSTITUTION}\b", text, re.I):
        return None
    text = re.sub(rf"^(?:(?:ANNUAL\s+)?{_CATALOGUE_WORDS.pattern}\s+OF\s+(?:THE\s+)?)", "", text, flags=re.I).strip()
    if re.match(r"^(?:Published|Printed|Press|Issued|Department\s+of|School\s+of|Division\s+of)\b", text, re.I):
        return None
    if is_caps(text):
        return title_case(text) if len(text.split()) <= 8 else None
    words = text.split()
    capitalised = all(w[:1].isupper() or w.lower() in SMALL_WORDS for w in words)
    return text if capitalised and len(words) <= 8 and not _CATALOGUE_WORDS.search(text) else None


def parse_academic_year(text: str) -> str | None:
    """`1890-91` / `1890–1891` → `1890-1891` (only a range of consecutive years)."""
    for match in _ACADEMIC_YEAR.finditer(text):
        first = int(match.group("a"))
        second = match.group("b")
        end = int(second) if len(second) == 4 else (first // 100) * 100 + int(second)
        if end == first + 1:
            return f"{first}-{end}"
    return None


def parse_catalog_year(line: str) -> int | None:
    """A year standing alone on a title-page line (`1890`, `MDCCCXC` is not read), else None."""
    match = _YEAR_LINE.match(line.strip())
    if match and not _ACADEMIC_YEAR.search(line):
        return int(match.group("year"))
    return None


def parse_term(sentence: str) -> str | None:
    """`Fall term.` → `Fall term`; `Throughout the year.` → `Throughout the year`."""
    match = _TERM.search(sentence)
    if match is None:
        return None
    term = match.group(0)
    return term[:1].upper() + term[1:]


def parse_instructors(sentence: str) -> list[str]:
    """`Professor Smith and Mr. Brown.` → `["Professor Smith", "Mr. Brown"]`; non-instructor sentences → []."""
    text = sentence.strip()
    if not _INSTRUCTOR_SENTENCE.match(text):
        return []
    people: list[str] = []
    title = ""
    for part in re.split(r"\s*(?:,|;|\band\b)\s*", text.rstrip(".")):
        part = part.strip()
        if not part:
            continue
        titled = re.match(rf"^(?P<title>{_TITLE_WORD})\s+(?P<name>.+)$", part)
        if titled:
            title = titled.group("title")
            name = titled.group("name")
        else:
            name = part
        singular = re.sub(r"(Professor|Instructor|Tutor)s\b", r"\1", re.sub(r"^Drs\.", "Dr.", title))
        people.append(f"{singular} {name}".strip())
    return people


def parse_textbooks(sentence: str) -> list[Textbook]:
    """`Text: Wentworth, Analytic Geometry.` → one `Textbook(author, title)`; `Texts: a; b.` → several."""
    match = _TEXTBOOK.match(sentence.strip())
    if match is None:
        return []
    books: list[Textbook] = []
    # Items are `;`-separated; OCR often reads an italic `;` as `:` before the next `Author,`.
    for item in re.split(r"\s*;\s*|\s*:\s+(?=[A-Z][\w'.-]*(?:\s+and\s+[A-Z][\w'.-]*)?,)", match.group("list")):
        item = item.strip().rstrip(".").strip()
        if not item:
            continue
        by = re.match(r"^(?P<title>.+?),?\s+by\s+(?P<author>.+)$", item)
        if by:
            books.append(Textbook(title=by.group("title").strip(), author=by.group("author").strip()))
        elif "," in item:
            author, title = item.split(",", 1)
            books.append(Textbook(title=title.strip(), author=author.strip()))
        else:
            books.append(Textbook(title=item))
    return books


def parse_topics(sentence: str) -> list[str]:
    """`A study of limits, derivatives, and maxima and minima.` → the listed topics; other sentences → []."""
    match = _TOPIC_LEAD.match(sentence.strip())
    if match is None:
        return []
    listing = match.group("list").strip().rstrip(".")
    if "," in listing:
        parts = [re.sub(r"^and\s+", "", part.strip()) for part in listing.split(",")]
    else:
        head, sep, tail = listing.rpartition(" and ")
        parts = [head, tail] if sep else [listing]
    return [part for part in (p.strip() for p in parts) if part]


@dataclass(frozen=True)
class CourseHeading:
    """The start of a course entry: label (`12`, `A`), subject prefix, title, and the rest of the line.

    `title_complete` is False when the title runs on to the next line (no closing period yet).
    """

    prefix: str
    label: str
    title: str
    rest: str
    title_complete: bool = True


def parse_course_heading(line: str) -> CourseHeading | None:
    """`Math 12. Analytic Geometry. Three hours.` → prefix `Math`, label `12`, title `Analytic Geometry`."""
    match = _COURSE_START.match(line.strip())
    if match is None:
        return None
    text = match.group("rest")
    first = split_sentences(text)[0]
    # "12. The English Drama.—Lectures…": a dash also ends the title.
    dash = re.search(r"\.?\s*[—–]\s*|\s+-{1,2}\s+", first)
    if dash:
        title, rest, complete = first[: dash.start()], text[dash.end() :], True
    else:
        title, rest, complete = first, text[len(first) :], first.endswith(".")
    title = title.rstrip(".").strip()
    prefix = match.group("prefix").strip()
    if (not title or not _looks_like_title(title) or re.search(rf"{_TITLE_WORD}$", prefix)
            or _NOT_A_COURSE_PREFIX.match(prefix)):
        return None
    return CourseHeading(prefix=prefix, label=match.group("label"), title=title, rest=rest.strip(),
                         title_complete=complete)


def _looks_like_title(title: str) -> bool:
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z'’-]*", title) if w.lower() not in SMALL_WORDS]
    if not words or len(title.split()) > 12:
        return False
    return sum(1 for w in words if w[0].isupper()) >= max(1, round(0.75 * len(words)))


# -- the page ----------------------------------------------------------------------------------


@dataclass
class _Entry:
    title: str
    label: str
    department: str | None
    graduate_section: bool
    title_open: bool
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PageFields:
    """Everything the extractor found on a page, ready to become an `OcrPageResult`."""

    content_type: str
    courses: list[Course]
    departments: list[str]
    school_name: str | None
    catalog_year: int | None
    academic_year: str | None
    page_number: int | None


def _join(lines: Sequence[str]) -> str:
    """Join wrapped lines, undoing end-of-line hyphenation before a lower-case continuation."""
    text = ""
    for line in lines:
        if text.endswith("-") and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}" if text else line
    return text


def _course_from_entry(entry: _Entry, level_default: str | None) -> Course:
    term: str | None = None
    instructors: list[str] = []
    textbooks: list[Textbook] = []
    description: list[str] = []
    # "Laboratory fee, $2 Texts: …": a textbook list starts a sentence even when OCR lost the period.
    parts = re.split(r"\s+(?=(?:Texts?|Text-?books?)\s*:)", _join(entry.lines))
    for sentence in (s for part in parts for s in split_sentences(part)):
        if found_books := parse_textbooks(sentence):
            textbooks += found_books
        elif people := parse_instructors(sentence):
            instructors += people
        elif _HOURS.match(sentence):
            continue  # meeting hours: the schema has no field for them
        elif (sentence_term := parse_term(sentence)) and len(sentence.split()) <= 5:
            term = term or sentence_term
        else:
            description.append(sentence)
    text = " ".join(description) or None
    if entry.graduate_section or (text and _GRADUATE.search(text)):
        level: str | None = "graduate"
    elif re.fullmatch(r"[A-H]", entry.label):
        level = "preparatory"
    elif level_default is None and text and _UNDERGRADUATE.search(text):
        level = "undergraduate"
    else:
        level = level_default
    return Course(
        course_name=entry.title, department=entry.department, level=level,
        topics=parse_topics(description[0]) if description else [], textbooks=textbooks, term=term,
        instructors=instructors, description=text,
    )


def _page_edges(
    lines: Sequence[str], edge_rows: int
) -> tuple[str | None, int | None, list[str]]:
    """School name and printed page number from the running head/foot; returns the other lines."""
    edges = set(range(min(edge_rows, len(lines)))) | set(range(max(0, len(lines) - 2), len(lines)))
    school_name: str | None = None
    page_number: int | None = None
    body: list[str] = []
    for index, line in enumerate(lines):
        if index in edges:
            stripped, number = strip_page_number(line)
            if number is not None and (not stripped or is_caps(stripped)):
                page_number = number if page_number is None else page_number
                if not stripped:
                    continue
            if is_caps(stripped) and (school := parse_school_name(stripped)) is not None:
                school_name = school_name or school
                continue
        body.append(line)
    return school_name, page_number, body


def _entries(body: Sequence[str], department: str | None) -> tuple[list[_Entry], list[str]]:
    """Group body lines into course entries under the department headings in force."""
    entries: list[_Entry] = []
    departments: list[str] = []
    graduate_section = False
    entry: _Entry | None = None
    previous: str | None = None  # None right after a heading: the next line may open an entry
    for line in body:
        if entry is not None and entry.title_open:
            first, *rest = split_sentences(line) or [""]
            entry.title = _join([entry.title, first.rstrip(".")])
            entry.title_open = not first.endswith(".")
            entry.lines += [" ".join(rest)] if rest else []
            previous = line
            continue
        heading = parse_course_heading(line)
        if heading is not None and _ends_sentence(previous):
            entry = _Entry(heading.title, heading.label, department, graduate_section, not heading.title_complete)
            entry.lines += [heading.rest] if heading.rest else []
            entries.append(entry)
            previous = line
        elif (name := parse_department_heading(line)) is not None:
            department, graduate_section, entry, previous = name, False, None, None
            departments.append(name)
        elif _GRADUATE.search(line) and len(line.split()) <= 6:
            graduate_section, entry, previous = True, None, None
        else:
            if entry is not None:
                entry.lines.append(line)
            previous = line
    return entries, departments


def _ends_sentence(line: str | None) -> bool:
    # Not ":": "Prerequisite:" at a line end continues with "Course 2." on the next line.
    return line is None or line.rstrip().endswith((".", ")", "!", "?"))


def extract_fields(
    lines: Sequence[str], *, carried_department: str | None = None, edge_rows: int = 3
) -> PageFields:
    """Read one page's lines (reading order) into catalog fields.

    `carried_department` is the department in force at the end of the previous page (from the
    upstream context): a page that opens mid-department files its first courses under it.
    """
    clean = join_wrapped_caps([line for line in (normalise_line(raw) for raw in lines) if line])
    school_name, page_number, body = _page_edges(clean, edge_rows)
    entries, departments = _entries(body, carried_department)
    if not entries_are_courses([_join([entry.title, *entry.lines]) for entry in entries],
                               under_department=[entry.department is not None for entry in entries]):
        entries = []  # a numbered list of people, steps or paragraphs: not courses
    catalogue_words = any(is_caps(line) and _CATALOGUE_WORDS.search(line) for line in clean)
    if school_name is None and (catalogue_words or not entries):
        school_name = next((s for s in map(parse_school_name, body) if s), None)
    academic_year = next((y for y in map(parse_academic_year, clean) if y), None)

    level_default: str | None = None
    if school_name is not None:
        level_default = "secondary" if _SECONDARY_SCHOOL.search(school_name) else "undergraduate"
    courses = [_course_from_entry(entry, level_default) for entry in entries]

    section = next((_CONTENT_HEADINGS[line.upper().rstrip(".")] for line in body
                    if is_caps(line) and line.upper().rstrip(".") in _CONTENT_HEADINGS), None)
    catalog_year: int | None = None
    if courses:
        content_type = "course_listing"
    elif section:
        content_type = section
    elif departments and reads_as_catalog(body):
        content_type = "course_listing"
    elif school_name and (catalogue_words or academic_year) and len(clean) <= 30:
        content_type = "title_page"
        catalog_year = next((y for y in map(parse_catalog_year, body) if y), None)
    else:
        content_type = "other"
    return PageFields(
        content_type=content_type, courses=courses, departments=departments, school_name=school_name,
        catalog_year=catalog_year, academic_year=academic_year, page_number=page_number,
    )


def carried_department(previous_context: dict | None) -> str | None:
    """The department in force at the end of the upstream page, from a request's `previous_context`.

    A department heading in the upstream text's tail after its last course heading wins (its
    courses start on this page); otherwise the department of the upstream page's last course.
    """
    if not previous_context:
        return None
    if heading := _trailing_department(str(previous_context.get("text_tail") or "")):
        return heading
    courses = previous_context.get("last_courses") or []
    for course in reversed(courses):
        if isinstance(course, dict) and course.get("department"):
            return str(course["department"])
    return None


def _trailing_department(tail: str) -> str | None:
    """The department a heading names after the last course heading of an upstream text tail, else None."""
    lines = tail.splitlines()
    if len(tail) >= CONTEXT_TAIL_CHARS:
        lines = lines[1:]  # the tail was cut to length: its first line may be a fragment
    department: str | None = None
    for line in join_wrapped_caps([line for line in map(normalise_line, lines) if line]):
        if parse_course_heading(line) is not None:
            department = None
        elif (name := parse_department_heading(line)) is not None:
            department = name
    return department


def extract_page(
    raw_ocr: RawOcr, lines: Sequence[str], *, page: int | None = None, previous_context: dict | None = None
) -> OcrPageResult:
    """An `OcrPageResult` from OCR output: `raw_ocr` as recognised, fields read from `lines`."""
    found = extract_fields(lines, carried_department=carried_department(previous_context))
    return OcrPageResult(
        raw_ocr=raw_ocr,
        page_info=PageInfo(
            page_number=found.page_number if found.page_number is not None else page,
            is_complete_page=True,
            content_type=found.content_type,
        ),
        school_name=found.school_name,
        catalog_year=found.catalog_year,
        academic_year=found.academic_year,
        courses=found.courses,
    )
