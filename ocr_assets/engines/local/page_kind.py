"""Is a page a course listing? Evidence that tells catalog entries from other numbered text.

The course extractor's line rules fire on any numbered list with capitalised items: a genealogy
(`1. Rachel Amanda, born 5 April, 1826; married …`), numbered steps of a handbook, numbered
paragraphs of prose. A catalog entry says what a course is: hours, credits, a term, lectures,
a laboratory, a prerequisite, a textbook, who teaches it or who takes it; or it stands under a
department heading. A page keeps its courses only when most of its entries say so, and fewer
than half read like records of people.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NUMBER = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|twelve|\d{1,2}|[1-9]½)"
# Words a course entry uses and book prose rarely does: counted hours or credits, terms, kinds of
# teaching, who teaches and who takes it ("of course" and "the unit" are prose).
_CATALOG_WORDS = re.compile(
    rf"\b(?:{_NUMBER}\s+(?:(?:semester|credit|class)\s+)?(?:hours?|credits?|units?|periods?|lectures?|recitations?)"
    r"|(?:fall|autumn|spring|winter|summer|first|second|third|either|each)\s+(?:term|semester|quarter|half[- ]year)s?"
    r"|throughout\s+the\s+year|lectures?|recitations?|laborator(?:y|ies)|prerequisites?|electives?"
    r"|text-?books?|texts?:|(?:assistant\s+|associate\s+)?professors?|instructors?|prof\.|freshm[ae]n"
    r"|sophomores?|juniors?|seniors?|undergraduates?|graduate\s+students|seminars?|required\s+of|open\s+to)\b",
    re.I,
)
# Records of people: births, marriages, deaths (genealogies, registers of families).
_PEOPLE_RECORD = re.compile(
    r"\b(?:born|married|died|baptized|buried|daughter\s+of|son\s+of|widow\s+of|resides?\s+(?:at|in)"
    r"|(?:b|m|d)\.\s+(?:\d|[A-Z][a-z]+\.?\s+\d))",
    re.I,
)
# A department heading alone (no course under it yet) makes a course listing only beside this
# much catalog vocabulary: a caps heading over prose ("WHY AND WHEREFORE.") is a chapter title.
MIN_PAGE_CATALOG_WORDS = 2


def catalog_words(text: str) -> set[str]:
    """The distinct catalog words in `text`, lower-cased."""
    return {" ".join(match.group(0).lower().split()) for match in _CATALOG_WORDS.finditer(text)}


def is_people_record(text: str) -> bool:
    """True for text that records a person's birth, marriage or death."""
    return _PEOPLE_RECORD.search(text) is not None


def is_catalog_entry(text: str) -> bool:
    """True for an entry (heading line plus its description) that reads like a course."""
    return bool(catalog_words(text)) and not is_people_record(text)


def entries_are_courses(entries: Sequence[str], *, under_department: Sequence[bool] | None = None) -> bool:
    """True when at least half the numbered entries on a page read like courses, and under half like people.

    An entry under a department heading (`under_department[i]`) reads like a course whatever its
    words: a terse catalog lists `1. Algebra. Equations and graphs.` with no hours. Half, not all:
    a page's last entry is often cut off before its hours or term.
    """
    if not entries:
        return False
    headed = list(under_department) if under_department is not None else [False] * len(entries)
    people = sum(1 for entry in entries if is_people_record(entry))
    courses = sum(1 for entry, heading in zip(entries, headed, strict=True)
                  if (heading or is_catalog_entry(entry)) and not is_people_record(entry))
    return 2 * courses >= len(entries) and 2 * people < len(entries)


def reads_as_catalog(lines: Sequence[str]) -> bool:
    """True for a page whose text uses catalog vocabulary (a department heading alone is not enough)."""
    text = " ".join(lines)
    return len(catalog_words(text)) >= MIN_PAGE_CATALOG_WORDS and not is_people_record(text)
