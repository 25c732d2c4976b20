"""Book and record keys: `state:school:year` and `state:school:year:page` (page as an unpadded int)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A name part must be safe as a path segment and as a Dagster partition key.
_PART = re.compile(r"^\w[\w\-. ']*$")


class KeyFormatError(ValueError):
    """A malformed book or record key."""


def check_name_part(value: str, what: str) -> str | None:
    """Why `value` cannot be a state/school name, or None when it is fine."""
    if not value:
        return f"{what} name is empty"
    if ":" in value:
        return f"{what} name {value!r} contains ':' (the key separator)"
    if "/" in value or "\\" in value:
        return f"{what} name {value!r} contains a path separator"
    if value in {".", ".."} or "..." in value:
        return f"{what} name {value!r} is a relative path marker or contains '...'"
    if not _PART.match(value):
        return f"{what} name {value!r} has characters outside letters, digits, space, and _ - . '"
    return None


@dataclass(frozen=True, order=True)
class BookKey:
    state: str
    school: str
    year: int

    def __str__(self) -> str:
        return f"{self.state}:{self.school}:{self.year}"

    @classmethod
    def parse(cls, text: str) -> "BookKey":
        parts = text.split(":")
        if len(parts) != 3 or not parts[2].isdigit():
            raise KeyFormatError(f"book key {text!r} is not 'state:school:year'")
        # Keys become output paths: a key that did not come from a valid plan must not escape the root.
        problem = check_name_part(parts[0], "state") or check_name_part(parts[1], "school")
        if problem:
            raise KeyFormatError(f"book key {text!r}: {problem}")
        return cls(parts[0], parts[1], int(parts[2]))


@dataclass(frozen=True, order=True)
class RecordKey:
    book: BookKey
    page: int

    def __str__(self) -> str:
        return f"{self.book}:{self.page}"

    @classmethod
    def parse(cls, text: str) -> "RecordKey":
        head, sep, page = text.rpartition(":")
        if not sep or not page.isdigit():
            raise KeyFormatError(f"record key {text!r} is not 'state:school:year:page'")
        return cls(BookKey.parse(head), int(page))
