"""The validated page output (`OcrPageResult`), the response schema sent to Gemini, and the per-page
error shape every engine returns.

The contract with the model: the prompt allows null or omitted values for anything a page does not
show, so null lists become `[]`, null strings stay null, and a printed page label ("xii") is kept as
text (`page_label`) with an integer `page_number` only when it is numeric. What is genuinely wrong
(wrong types, a course without a name, no text blocks, a missing required top-level field) is
rejected with the field named, so `ocr-assets failures` groups rejections by field.
"""

from __future__ import annotations

import functools
import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


def _none_is_empty(value: list[Any] | None) -> list[Any]:
    return [] if value is None else value


T = TypeVar("T")
# The prompt says "use null or empty lists": a null list means "none on this page". Checked per field
# after pydantic's own (Rust) validation, so a whole answer still parses in one pass over its JSON text;
# a model-level "before" validator made every object a Python dict first (3x slower ingest).
NullableList = Annotated[list[T] | None, AfterValidator(_none_is_empty)]


class TextBlock(_Model):
    block_id: int | str
    # Bounding box [x0, y0, x1, y1] in pixels when the engine knows it, else a free description.
    position: list[float] | str | None = None
    text: str
    font_style: str | None = None


class RawOcr(_Model):
    # Required in a model answer (see ANSWER_REQUIRED): no text blocks is no transcription; [] is a blank page.
    # Null is rejected by the type itself: a Python "before" validator here would make pydantic build the
    # whole list as Python objects first (a sixth of the page's validation time).
    text_blocks: list[TextBlock] = Field(default_factory=list)
    layout_description: str | None = None

    def full_text(self) -> str:
        return "\n".join(block.text for block in self.text_blocks)


ContentType = Literal[
    "course_listing", "title_page", "table_of_contents", "index", "front_matter", "other"
]


class PageInfo(_Model):
    # The printed page number as an integer when it is numeric ("12" → 12; "xii" → None).
    page_number: int | None = None
    # The printed page label exactly as printed ("xii", "12", "A-3"); None when none is printed.
    page_label: str | None = None
    is_complete_page: bool = True
    content_type: str = "course_listing"

    @model_validator(mode="before")
    @classmethod
    def _printed_label(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        number, label = data.get("page_number"), data.get("page_label")
        if isinstance(number, str):  # a model that puts the printed label in page_number
            label = label if label is not None else number.strip()
            number = int(number) if number.strip().isdigit() else None
        elif isinstance(number, int) and not isinstance(number, bool) and label is None:
            label = str(number)
        if number is None and isinstance(label, str) and label.strip().isdigit():
            number = int(label)
        data["page_number"], data["page_label"] = number, label
        for name in ("is_complete_page", "content_type"):  # null = "not stated": the default
            if name in data and data[name] is None:
                del data[name]
        return data


class Textbook(_Model):
    title: str = Field(min_length=1)
    author: str | None = None


class Course(_Model):
    course_name: str = Field(min_length=1)
    department: str | None = None
    level: str | None = None
    topics: NullableList[str] = Field(default_factory=list)
    textbooks: NullableList[Textbook] = Field(default_factory=list)
    term: str | None = None
    instructors: NullableList[str] = Field(default_factory=list)
    description: str | None = None


class OcrPageResult(_Model):
    raw_ocr: RawOcr
    page_info: PageInfo
    school_name: str | None = None
    catalog_year: int | str | None = None
    academic_year: str | None = None
    courses: NullableList[Course] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.to_json_bytes().decode("utf-8")

    def to_json_bytes(self) -> bytes:
        """The canonical JSON of the page (what its output file holds, less the final newline): UTF-8 straight
        from pydantic's serializer, never a `str` to decode and encode again (~25 µs a page)."""
        return self.__pydantic_serializer__.to_json(self, indent=2)


# What a model answer must name even where the Python model has a default: an answer without a
# `courses` key is a broken answer, not "a page with no courses" (null or [] says that).
ANSWER_REQUIRED: dict[str, tuple[str, ...]] = {
    "": ("raw_ocr", "page_info", "courses"),
    "raw_ocr": ("text_blocks",),
}


def _missing_required(result: OcrPageResult) -> str | None:
    """The first field ANSWER_REQUIRED names that the answer left out (dotted path), or None."""
    for path, names in ANSWER_REQUIRED.items():
        node = getattr(result, path) if path else result
        for name in names:
            if name not in node.model_fields_set:
                return f"{path}.{name}" if path else name
    return None


# -- the response schema sent with every request ---------------------------------------------------

_SCHEMA_KEYS = {"type", "properties", "required", "items", "anyOf", "enum", "description", "minLength"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """The pydantic JSON schema with `$ref`s inlined and only the keywords Gemini documents kept."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _inline(prop, defs) for name, prop in value.items()}
        elif key in _SCHEMA_KEYS:
            out[key] = _inline(value, defs)
    return out


@functools.cache  # built once (~5 ms): every request line carries it; callers must not mutate it
def response_json_schema() -> dict[str, Any]:
    """`OcrPageResult` as the JSON Schema Gemini's `responseJsonSchema` takes (one source of truth)."""
    schema = OcrPageResult.model_json_schema()
    inlined = _inline(schema, schema.get("$defs", {}))
    for path, names in ANSWER_REQUIRED.items():
        node = inlined["properties"][path] if path else inlined
        node["required"] = sorted(set(node.get("required", [])) | set(names), key=list(node["properties"]).index)
    return inlined


# -- errors ----------------------------------------------------------------------------------------


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
    """Model output that is not a valid `OcrPageResult`; `kind` says why (for classification) and
    `field` which field (dotted path, e.g. `courses.2.course_name`) when it is a schema violation."""

    def __init__(self, kind: str, message: str, field: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.field = field


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)\n?[ \t]*```", re.S)


def extract_json(text: str) -> str:
    """The JSON object in a model answer: the whole text, a fenced block, or the object inside prose."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        return body
    fenced = _FENCE.search(body)
    if fenced and (body.startswith("```") or fenced.group(1).strip().startswith("{")):
        return fenced.group(1).strip()
    start = body.find("{")
    if start < 0:
        return body
    try:  # the first complete object after any leading prose; trailing prose is ignored
        _, end = json.JSONDecoder().raw_decode(body, start)
    except ValueError:
        return body[start:] if not body.startswith("```") else body
    return body[start:end]


_WHY = {
    "missing": "missing",
    "string_too_short": "empty",
    "model_type": "not an object",
    "dict_type": "not an object",
    "list_type": "not a list",
    "string_type": "not a string",
    "int_type": "not an integer",
    "int_parsing": "not an integer",
    "int_from_float": "not a whole number",
    "bool_type": "not a boolean",
    "bool_parsing": "not a boolean",
    "float_type": "not a number",
    "float_parsing": "not a number",
}


# pydantic names the member of a union it tried (`catalog_year.int`): not part of the field's path.
_UNION_TAG = re.compile(r"^(int|str|float|bool|none|constrained-\w+|(list|dict|function-\w+)\[.*\])$")


def _describe(exc: ValidationError) -> tuple[str, str]:
    """(field, message) for the first error of a validation failure: `courses.2.course_name: missing`."""
    errors = exc.errors(include_url=False)

    def path(error) -> str:
        return ".".join(str(p) for p in error["loc"] if not _UNION_TAG.match(str(p))) or "(top level)"

    field = path(errors[0])
    here = [e for e in errors if path(e) == field]
    if len(here) > 1:  # a union (`int | str`) reports one error per member it tried
        tried = [str(e["loc"][-1]).removeprefix("constrained-") for e in here if _UNION_TAG.match(str(e["loc"][-1]))]
        why = f"wrong type (expected {' or '.join(tried)})" if tried else _WHY.get(here[0]["type"], here[0]["msg"])
    elif here[0]["type"] == "list_type" and here[0].get("input") is None:
        why = "null where a list is required (none is [])"  # e.g. text_blocks: a blank page sends []
    else:
        why = _WHY.get(here[0]["type"]) or here[0]["msg"].removeprefix("Value error, ")
    others = len({path(e) for e in errors} - {field})
    more = f" (+{others} more)" if others else ""
    return field, f"schema_violation at {field}: {why}{more}"


def parse_page_result(text: str, *, max_chars: int = 2_000_000) -> OcrPageResult:
    """Parse a model's text answer into an `OcrPageResult` or raise `OutputParseError`."""
    if len(text) > max_chars:
        raise OutputParseError("oversized", f"model output is {len(text)} chars (limit {max_chars})")
    body = extract_json(text)
    if not body:
        raise OutputParseError("empty", "model output is empty")
    # Parsed and validated in one pass over the text (pydantic's JSON parser), not json.loads +
    # model_validate over an intermediate dict: the answer is the largest thing a record carries.
    try:
        result = OcrPageResult.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        if first["type"] == "json_invalid":  # the whole text is rejected with this one error
            reason = first["ctx"]["error"]
            raise OutputParseError("malformed_json", f"model output is not valid JSON: {reason}") from exc
        if first["type"] == "model_type" and not first["loc"]:
            raise OutputParseError("schema", "model output is valid JSON but not an object",
                                   field="(top level)") from exc
        field, message = _describe(exc)
        raise OutputParseError("schema", message, field=field) from exc
    if missing := _missing_required(result):
        raise OutputParseError("schema", f"schema_violation at {missing}: missing", field=missing)
    return result
