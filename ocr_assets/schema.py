"""The validated page output (`OcrPageResult`) and the per-page error shape every engine returns."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class TextBlock(_Model):
    block_id: int | str
    # Bounding box [x0, y0, x1, y1] in pixels when the engine knows it, else a free description.
    position: list[float] | str | None = None
    text: str
    font_style: str | None = None


class RawOcr(_Model):
    text_blocks: list[TextBlock] = Field(default_factory=list)
    layout_description: str | None = None

    def full_text(self) -> str:
        return "\n".join(block.text for block in self.text_blocks)


ContentType = Literal[
    "course_listing", "title_page", "table_of_contents", "index", "front_matter", "other"
]


class PageInfo(_Model):
    page_number: int | None = None
    is_complete_page: bool = True
    content_type: str = "course_listing"


class Textbook(_Model):
    title: str
    author: str | None = None


class Course(_Model):
    course_name: str
    department: str | None = None
    level: str | None = None
    topics: list[str] = Field(default_factory=list)
    textbooks: list[Textbook] = Field(default_factory=list)
    term: str | None = None
    instructors: list[str] = Field(default_factory=list)
    description: str | None = None


class OcrPageResult(_Model):
    raw_ocr: RawOcr
    page_info: PageInfo
    school_name: str | None = None
    catalog_year: int | str | None = None
    academic_year: str | None = None
    courses: list[Course] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


class ErrorClass(StrEnum):
    RETRYABLE = "retryable"
    FATAL = "fatal"


class PageError(BaseModel):
    """Why one record's inference failed; engines return it instead of raising."""

    key: str
    error_class: ErrorClass
    error_type: str
    message: str
    raw_response: str | None = None
    traceback: str | None = None


class OutputParseError(ValueError):
    """Model output that is not a valid `OcrPageResult`; `kind` says why (for classification)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _strip_fences(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        if stripped.rstrip().endswith("```"):
            stripped = stripped.rstrip()[:-3]
    return stripped.strip()


def parse_page_result(text: str, *, max_chars: int = 2_000_000) -> OcrPageResult:
    """Parse a model's text answer into an `OcrPageResult` or raise `OutputParseError`."""
    if len(text) > max_chars:
        raise OutputParseError("oversized", f"model output is {len(text)} chars (limit {max_chars})")
    body = _strip_fences(text)
    if not body:
        raise OutputParseError("empty", "model output is empty")
    # Parsed and validated in one pass over the text (pydantic's JSON parser), not json.loads +
    # model_validate over an intermediate dict: the answer is the largest thing a record carries.
    try:
        return OcrPageResult.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        if first["type"] == "json_invalid":  # the whole text is rejected with this one error
            reason = first["ctx"]["error"]
            raise OutputParseError("malformed_json", f"model output is not valid JSON: {reason}") from exc
        if first["type"] == "model_type" and not first["loc"]:
            raise OutputParseError("schema", "model output is valid JSON but not an object") from exc
        raise OutputParseError("schema", f"model output does not match OcrPageResult: {exc}") from exc
