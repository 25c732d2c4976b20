"""The emulator's model-like answers: the same page content, varied the way real Gemini output varies.

Real answers are not our own `model_dump_json()`: a model sends null for an empty list, leaves
optional fields out, prints front-matter page numbers in roman numerals, wraps JSON in a code fence
or a sentence, adds keys nobody asked for, and bills thinking tokens. Every variant here stays
inside the response schema the request sent (null only where it allows null, only its optional
fields left out), except `invalid`, which breaks the page contract on purpose and says which field.
All draws are pure functions of (seed, record key, attempt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ocr_assets.engines.emulator.config import ModelLikeConfig
from ocr_assets.engines.emulator.faults import unit

# Tokens of thought per thinking level (Gemini 3 levels; a rough scale for the emulator's usage figures).
LEVEL_TOKENS = {"MINIMAL": 0, "LOW": 256, "MEDIUM": 1024, "HIGH": 4096}


@dataclass(frozen=True)
class Varied:
    text: str
    invalid_field: str | None = None  # the contract field an invalid answer breaks


def thinking_tokens(config: ModelLikeConfig, seed: int, key: str, attempt: int, thinking: dict | None) -> int:
    """Thought tokens billed for one answer under the request's `thinkingConfig`."""
    natural = int(config.natural_thinking_tokens * (0.5 + unit(seed, "thinking", key, attempt)))
    thinking = thinking or {}
    level = thinking.get("thinkingLevel") or thinking.get("thinking_level")
    budget = thinking.get("thinkingBudget", thinking.get("thinking_budget"))
    if level is not None:
        return min(natural, LEVEL_TOKENS.get(str(level).upper(), natural))
    if budget is None or int(budget) < 0:  # the model decides
        return natural
    return min(natural, int(budget))


def roman(number: int) -> str:
    """Lower-case roman numerals, as front matter prints page numbers."""
    out, n = "", max(1, number)
    for value, letters in ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"), (50, "l"),
                           (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")):
        while n >= value:
            out, n = out + letters, n - value
    return out


def _allows_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(option.get("type") == "null" for option in prop.get("anyOf", []))


def _object_schema(prop: dict[str, Any], want: str) -> dict[str, Any]:
    """The member of `prop` (itself or one of its anyOf options) of JSON type `want`."""
    for option in [prop, *prop.get("anyOf", [])]:
        if option.get("type") == want:
            return option
    return {}


def _vary_object(value: dict[str, Any], schema: dict[str, Any], draw, where: str) -> dict[str, Any]:
    """Nulls for empty/absent values where the schema allows them, optional fields left out, recursively."""
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    out: dict[str, Any] = {}
    for name, item in value.items():
        prop = properties.get(name)
        path = f"{where}.{name}" if where else name
        if prop is None:
            out[name] = item
            continue
        empty = item is None or item == []
        if empty and name not in required and draw("omit", path):
            continue
        if empty and _allows_null(prop) and draw("null", path):
            out[name] = None
            continue
        if isinstance(item, dict):
            item = _vary_object(item, _object_schema(prop, "object"), draw, path)
        elif isinstance(item, list):
            items = _object_schema(prop, "array").get("items", {})
            item = [_vary_object(x, items, draw, f"{path}.{i}") if isinstance(x, dict) else x
                    for i, x in enumerate(item)]
        out[name] = item
    return out


def _break(answer: dict[str, Any], which: float) -> tuple[dict[str, Any], str]:
    """One contract violation, chosen by `which`: (broken answer, the field it breaks)."""
    courses = answer.get("courses") or []
    if which < 1 / 3 and courses:
        broken = dict(courses[0])
        broken.pop("course_name", None)
        return {**answer, "courses": [broken, *courses[1:]]}, "courses.0.course_name"
    if which < 2 / 3:
        return {k: v for k, v in answer.items() if k != "courses"}, "courses"
    return {**answer, "raw_ocr": {**answer.get("raw_ocr", {}), "text_blocks": None}}, "raw_ocr.text_blocks"


def vary(text: str, config: ModelLikeConfig, seed: int, key: str, attempt: int,
         schema: dict[str, Any] | None) -> Varied:
    """A model-like rendering of answer `text` (a JSON object) for this attempt of this record."""
    try:
        answer = json.loads(text)
    except ValueError:
        return Varied(text)
    if not isinstance(answer, dict):
        return Varied(text)

    def draw(kind: str, where: str = "") -> bool:
        return unit(seed, "model_like", kind, key, attempt, where) < getattr(config, f"{kind}_rate")

    info = answer.get("page_info")
    if isinstance(info, dict) and isinstance(info.get("page_number"), int) and draw("roman"):
        answer["page_info"] = {**info, "page_label": roman(info["page_number"]), "page_number": None}
    if schema:
        answer = _vary_object(answer, schema, draw, "")
    if draw("extra_key"):
        answer["confidence"] = round(0.8 + 0.2 * unit(seed, "confidence", key, attempt), 2)
    invalid = None
    if draw("invalid"):
        answer, invalid = _break(answer, unit(seed, "which_invalid", key, attempt))
    body = json.dumps(answer, ensure_ascii=False, indent=2 if unit(seed, "indent", key, attempt) < 0.5 else None)
    if draw("fence"):
        body = f"```json\n{body}\n```"
    if draw("prose"):
        body = f"Here is the transcription of the page:\n{body}\nLet me know if anything needs another look."
    return Varied(body, invalid)
