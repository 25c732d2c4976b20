"""The output contract: what a model may answer (normalised) and what is rejected (with the field named)."""

from __future__ import annotations

import json

import pytest

from ocr_assets.schema import OcrPageResult, OutputParseError, extract_json, parse_page_result, response_json_schema

BLOCKS = {"text_blocks": [{"block_id": 1, "text": "MATH 101 Algebra"}]}


def answer(**fields) -> dict:
    base = {"raw_ocr": BLOCKS, "page_info": {"page_number": 3}, "courses": [{"course_name": "MATH 101"}]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not OMIT}


OMIT = object()
VALID = json.dumps(answer())


@pytest.mark.parametrize(
    ("case", "text", "check"),
    [
        ("plain JSON", VALID, lambda r: r.courses[0].course_name == "MATH 101"),
        ("null topics, instructors, textbooks become []",
         json.dumps(answer(courses=[{"course_name": "X", "topics": None, "instructors": None, "textbooks": None}])),
         lambda r: (r.courses[0].topics, r.courses[0].instructors, r.courses[0].textbooks) == ([], [], [])),
        ("null courses become []", json.dumps(answer(courses=None)), lambda r: r.courses == []),
        ("a null string stays null", json.dumps(answer(school_name=None, courses=[{"course_name": "X", "term": None}])),
         lambda r: r.school_name is None and r.courses[0].term is None),
        ("a roman page label is kept as text", json.dumps(answer(page_info={"page_number": "xii"})),
         lambda r: (r.page_info.page_label, r.page_info.page_number) == ("xii", None)),
        ("a numeric label also gives the number", json.dumps(answer(page_info={"page_number": "12"})),
         lambda r: (r.page_info.page_label, r.page_info.page_number) == ("12", 12)),
        ("an explicit label with a null number", json.dumps(answer(page_info={"page_label": "A-3", "page_number": None})),
         lambda r: (r.page_info.page_label, r.page_info.page_number) == ("A-3", None)),
        ("an integer number gets its label", json.dumps(answer(page_info={"page_number": 7})),
         lambda r: (r.page_info.page_label, r.page_info.page_number) == ("7", 7)),
        ("null page flags take their defaults",
         json.dumps(answer(page_info={"page_number": None, "is_complete_page": None, "content_type": None})),
         lambda r: r.page_info.is_complete_page is True and r.page_info.content_type == "course_listing"),
        ("omitted optional fields", json.dumps(answer(page_info={}, courses=[{"course_name": "X"}])),
         lambda r: r.school_name is None and r.page_info.page_label is None),
        ("extra unknown keys are ignored", json.dumps(answer(confidence=0.9, courses=[{"course_name": "X", "credits": 3}])),
         lambda r: r.courses[0].course_name == "X"),
        ("a fenced block", "```json\n" + VALID + "\n```", lambda r: len(r.courses) == 1),
        ("a one-line fence", "```json " + VALID + "```", lambda r: len(r.courses) == 1),
        ("a fence without language", "```\n" + VALID + "\n```", lambda r: len(r.courses) == 1),
        ("prose around the JSON", "Here is the transcription:\n" + VALID + "\nLet me know if you need more.",
         lambda r: len(r.courses) == 1),
        ("an empty page", json.dumps(answer(raw_ocr={"text_blocks": []}, courses=[])), lambda r: r.courses == []),
    ],
)
def test_an_answer_the_prompt_allows_is_accepted_and_normalised(case, text, check):
    assert check(parse_page_result(text)), case


@pytest.mark.parametrize(
    ("case", "text", "kind", "field"),
    [
        ("no courses key", json.dumps(answer(courses=OMIT)), "schema", "courses"),
        ("no raw_ocr key", json.dumps(answer(raw_ocr=OMIT)), "schema", "raw_ocr"),
        ("no page_info key", json.dumps(answer(page_info=OMIT)), "schema", "page_info"),
        ("text blocks missing", json.dumps(answer(raw_ocr={"layout_description": "two columns"})), "schema",
         "raw_ocr.text_blocks"),
        ("text blocks null", json.dumps(answer(raw_ocr={"text_blocks": None})), "schema", "raw_ocr.text_blocks"),
        ("a block without text", json.dumps(answer(raw_ocr={"text_blocks": [{"block_id": 1}]})), "schema",
         "raw_ocr.text_blocks.0.text"),
        ("a course without a name", json.dumps(answer(courses=[{"course_name": "A"}, {"department": "Math"}])),
         "schema", "courses.1.course_name"),
        ("a course with an empty name", json.dumps(answer(courses=[{"course_name": "  "}])), "schema",
         "courses.0.course_name"),
        ("topics as a string", json.dumps(answer(courses=[{"course_name": "A", "topics": "algebra"}])), "schema",
         "courses.0.topics"),
        ("courses as a string", json.dumps(answer(courses="none")), "schema", "courses"),
        ("a catalog year as a list", json.dumps(answer(catalog_year=[1921])), "schema", "catalog_year"),
        ("a JSON array", "[1, 2]", "schema", "(top level)"),
        ("a JSON string", '"just text"', "schema", "(top level)"),
        ("broken JSON", '{"raw_ocr": {"text_blocks" []}}', "malformed_json", None),
        ("truncated JSON", VALID[:40], "malformed_json", None),
        ("prose only", "I cannot read this page.", "malformed_json", None),
        ("empty", "   ", "empty", None),
    ],
)
def test_a_wrong_answer_is_rejected_naming_the_field_and_why(case, text, kind, field):
    with pytest.raises(OutputParseError) as caught:
        parse_page_result(text)
    assert caught.value.kind == kind, case
    assert caught.value.field == field, case
    if field is not None:
        assert f"at {field}:" in str(caught.value) or field == "(top level)"


def test_null_text_blocks_say_what_a_page_without_text_sends_instead():
    with pytest.raises(OutputParseError) as caught:
        parse_page_result(json.dumps(answer(raw_ocr={"text_blocks": None})))
    assert str(caught.value).endswith("at raw_ocr.text_blocks: null where a list is required (none is [])")
    with pytest.raises(OutputParseError) as caught:  # the wrong type is still just that
        parse_page_result(json.dumps(answer(raw_ocr={"text_blocks": "none"})))
    assert str(caught.value).endswith("at raw_ocr.text_blocks: not a list")


def test_an_oversized_answer_is_rejected_before_parsing():
    with pytest.raises(OutputParseError) as caught:
        parse_page_result(VALID, max_chars=10)
    assert caught.value.kind == "oversized"


def test_json_is_extracted_from_fences_and_prose_but_plain_json_is_left_alone():
    assert extract_json(VALID) == VALID
    assert extract_json(f"Sure! ```json\n{VALID}\n``` Done.") == VALID
    assert extract_json(f"Answer: {VALID} (end)") == VALID


def test_an_output_in_the_previous_shape_stays_readable():
    # What outputs written before page labels existed look like on disk.
    previous = {"raw_ocr": {"text_blocks": [{"block_id": 1, "position": None, "text": "T", "font_style": None}],
                            "layout_description": None},
                "page_info": {"page_number": 4, "is_complete_page": True, "content_type": "course_listing"},
                "school_name": None, "catalog_year": 1900, "academic_year": None, "courses": []}
    result = OcrPageResult.model_validate_json(json.dumps(previous))
    assert result.page_info.page_number == 4 and result.page_info.page_label == "4"


def test_the_response_schema_is_the_page_model_with_refs_inlined():
    schema = response_json_schema()
    assert "$ref" not in json.dumps(schema) and "$defs" not in schema
    assert set(schema["required"]) == {"raw_ocr", "page_info", "courses"}
    courses, null = schema["properties"]["courses"]["anyOf"]  # the prompt allows null for "none"
    assert null == {"type": "null"} and courses["items"]["required"] == ["course_name"]
    assert "page_label" in schema["properties"]["page_info"]["properties"]
    assert schema["properties"]["raw_ocr"]["required"] == ["text_blocks"]


@pytest.mark.parametrize("version", ["v1", "v1.1", "v1.2"])
def test_every_field_the_prompt_names_exists_in_the_response_schema(version):
    import re

    from ocr_assets.prompts import PromptRegistry, page_variables
    from tests.fixtures.corpus import REPO_ROOT

    variables = page_variables(state="ny", school="A", year=1900, page=2, previous_context=None)
    text = PromptRegistry(REPO_ROOT / "prompts").render("page_ocr", version, variables).text
    # Quoted words that are not enum values ("regular" | "bold"): the field names the prompt asks for.
    named = set(re.findall(r'(?<!\| )"(\w+)"(?! \|)', text))
    assert {"raw_ocr", "text_blocks", "page_info", "page_number", "courses", "course_name"} <= named

    def fields(node) -> set[str]:
        found = set()
        if isinstance(node, dict):
            found |= set(node.get("properties", {}))
            for value in node.values():
                found |= fields(value)
        elif isinstance(node, list):
            for value in node:
                found |= fields(value)
        return found

    assert named - fields(response_json_schema()) == set()


def test_a_wrong_type_in_a_union_field_names_the_types_it_may_have():
    with pytest.raises(OutputParseError) as caught:
        parse_page_result(json.dumps(answer(catalog_year=[1921])))
    assert str(caught.value) == "schema_violation at catalog_year: wrong type (expected int or str)"
