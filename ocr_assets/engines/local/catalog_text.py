"""Clean-up of OCR text lines for the catalog extractor: spacing, capitals headings, sentences."""

from __future__ import annotations

import re
from collections.abc import Sequence

SMALL_WORDS = {"of", "and", "the", "in", "at", "for", "on", "to", "a", "an", "with", "by", "de", "von", "du"}
INSTITUTION = r"(?:UNIVERSITY|COLLEGE|INSTITUTE|SEMINARY|ACADEMY|SCHOOL|GYMNASIUM|CONSERVATORY)"
DEPARTMENT_PREFIX = re.compile(r"^(?:DEPARTMENT|SCHOOL|DIVISION)\s+OF\s+(?P<name>.+)$", re.I)
# Abbreviations a sentence never ends on (titles, initials, common catalog shorthand).
_ABBREVIATIONS = {
    "mr", "mrs", "dr", "prof", "st", "jr", "sr", "messrs", "vol", "vols", "no", "nos", "pp", "ed", "eds",
    "cf", "viz", "vs", "etc", "e.g", "i.e", "ph.d", "a.b", "a.m", "b.s", "s.b", "ll.d", "sci", "pol", "math",
    "hist", "econ", "chem", "phys", "lat", "gk", "eng", "fr", "ger", "bot", "zool", "geol", "astr", "educ",
    "phil", "span", "c.e", "m.e", "e.e", "sept", "oct", "nov", "dec", "jan", "feb", "aug",
}
_GLUED_PUNCT = re.compile(r"(?<=[a-z0-9)])([.;:,])(?=[A-Za-z(])")
_GLUED_OF = re.compile(rf"\b(DEPARTMENT|DIVISION|CATALOGUE|CATALOG|{INSTITUTION})OF(?=[A-Z])")
_GLUED_INSTITUTION = re.compile(rf"(?<=[A-Z])(?={INSTITUTION}\b)")


def normalise_line(text: str) -> str:
    """Collapse whitespace and restore spaces OCR drops after punctuation and inside caps headings."""
    text = " ".join(text.split())
    text = re.sub(r"(?<=\d)[oO](?=\d)", "0", text)  # "1o1" → "101": OCR reads a zero as o
    text = _GLUED_PUNCT.sub(r"\1 ", re.sub(r"(?<=\w) +(?=[.,;:](?:\s|$))", "", text))
    if is_caps(text):
        text = _GLUED_INSTITUTION.sub(" ", _GLUED_OF.sub(r"\1 OF ", text))
    return text


def is_caps(text: str) -> bool:
    """True for an all-capitals line with at least three letters."""
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 3 and all(c.isupper() for c in letters)


def join_wrapped_caps(lines: Sequence[str]) -> list[str]:
    """Rejoin a capitals heading wrapped over lines: at a function word (`MASSACHUSETTS INSTITUTE` /
    `OF TECHNOLOGY`), inside parentheses (`ENGLISH (ADVANCED` / `COURSES)`), or after a department
    prefix (`DEPARTMENT OF CIVIL` / `ENGINEERING`) — a narrow column wraps headings often.
    """
    joined: list[str] = []
    for line in lines:
        if joined and is_caps(line) and is_caps(joined[-1]) and not any(c.isdigit() for c in joined[-1] + line):
            previous = joined[-1]
            if (
                line.split()[0].lower() in SMALL_WORDS
                or previous.split()[-1].lower() in SMALL_WORDS
                or previous.count("(") > previous.count(")")
                or (DEPARTMENT_PREFIX.match(previous) and not DEPARTMENT_PREFIX.match(line)
                    and len(line.split()) <= 3)
            ):
                joined[-1] = f"{previous} {line}"
                continue
        joined.append(line)
    return joined


def title_case(text: str) -> str:
    """`UNIVERSITY OF CALIFORNIA AT LOS ANGELES` → `University of California at Los Angeles`."""
    words = text.split()
    out = []
    for index, word in enumerate(words):
        lower = word.lower()
        if index > 0 and lower in SMALL_WORDS:
            out.append(lower)
        else:
            out.append("-".join(part[:1].upper() + part[1:] for part in lower.split("-")))
    return " ".join(out)


def split_sentences(text: str) -> list[str]:
    """Split on sentence ends, but not after titles (`Mr.`), initials (`J.`) or catalog shorthand."""
    sentences: list[str] = []
    start = 0
    for match in re.finditer(r"[.!?](?=\s+[A-Z(\"'$]|\s*$)", text):
        before = text[start : match.start()]
        last = before.split()[-1] if before.split() else ""
        token = last.lower().rstrip(".")
        if token in _ABBREVIATIONS or (len(last) == 1 and last.isupper()) or re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", last):
            continue
        sentence = text[start : match.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences
