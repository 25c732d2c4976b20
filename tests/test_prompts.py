import hashlib
from pathlib import Path

import pytest

from ocr_assets.prompts import (
    CONTEXT_COURSES,
    CONTEXT_TAIL_CHARS,
    PromptError,
    PromptRegistry,
    page_variables,
    upstream_context,
    vars_hash,
)
from ocr_assets.schema import OcrPageResult
from tests.fixtures.corpus import REPO_ROOT

REGISTRY = PromptRegistry(REPO_ROOT / "prompts")


def _upstream() -> OcrPageResult:
    return OcrPageResult.model_validate({
        "raw_ocr": {"text_blocks": [
            {"block_id": 1, "text": "HEAD-OF-PAGE " + "a" * 700},
            {"block_id": 2, "text": "b" * 100 + " END-OF-PAGE"},
        ]},
        "page_info": {"page_number": 7},
        "courses": [{"course_name": f"Course {i}", "department": "Greek" if i % 2 else None} for i in range(1, 6)],
    })


def _variables(context: dict | None = None, **changes) -> dict:
    base = dict(state="CA", school="ucla", year=1921, page=8, previous_context=context)
    base.update(changes)
    return page_variables(**base)


def test_the_registry_lists_the_shipped_versions() -> None:
    assert {"v1", "v1.1"} <= set(REGISTRY.versions("page_ocr"))
    assert REGISTRY.versions("no_such_prompt") == []


@pytest.mark.parametrize("version", ["v1", "v1.1"])
def test_rendering_is_deterministic(version: str) -> None:
    context = upstream_context(_upstream())
    first = REGISTRY.render("page_ocr", version, _variables(context))
    second = PromptRegistry(REPO_ROOT / "prompts").render("page_ocr", version, _variables(context))
    assert first.text == second.text and first.identity == second.identity
    assert "Catalog: ucla (CA), catalog year 1921, page 8." in first.text


def test_identity_is_name_version_vars_hash_and_template_hash_and_stable() -> None:
    variables = _variables(upstream_context(_upstream()))
    identity = REGISTRY.render("page_ocr", "v1.1", variables).identity
    template = (REPO_ROOT / "prompts" / "page_ocr" / "v1.1.jinja").read_bytes()
    assert (identity.name, identity.version) == ("page_ocr", "v1.1")
    assert identity.template_hash == hashlib.sha256(template).hexdigest()[:16]
    assert identity.vars_hash == vars_hash(dict(reversed(list(variables.items()))))  # key order is irrelevant
    assert len(identity.vars_hash) == 16
    assert REGISTRY.render("page_ocr", "v1", variables).identity.vars_hash == identity.vars_hash
    assert vars_hash(_variables(upstream_context(_upstream()), page=9)) != identity.vars_hash
    assert vars_hash(_variables(None)) != identity.vars_hash


def test_upstream_context_is_the_last_500_chars_and_the_last_3_courses() -> None:
    context = upstream_context(_upstream())
    assert context is not None
    assert len(context["text_tail"]) == CONTEXT_TAIL_CHARS == 500
    assert context["text_tail"].endswith("b" * 100 + " END-OF-PAGE") and "HEAD-OF-PAGE" not in context["text_tail"]
    assert CONTEXT_COURSES == 3
    assert context["last_courses"] == [
        {"course_name": "Course 3", "department": "Greek"},
        {"course_name": "Course 4", "department": None},
        {"course_name": "Course 5", "department": "Greek"},
    ]
    assert upstream_context(None) is None


def test_v1_1_carries_the_upstream_context_and_v1_does_not() -> None:
    variables = _variables(upstream_context(_upstream()))
    v11 = REGISTRY.render("page_ocr", "v1.1", variables).text
    v1 = REGISTRY.render("page_ocr", "v1", variables).text
    tail = upstream_context(_upstream())["text_tail"]
    assert tail in v11
    assert "- Course 3 (Greek)\n" in v11 and "- Course 4\n" in v11 and "- Course 5 (Greek)\n" in v11
    assert "Course 2" not in v11 and "Course 1 " not in v11
    assert "END-OF-PAGE" not in v1 and "Course 5" not in v1 and "Greek" not in v1
    assert "previous page" not in v1


def test_v1_1_says_so_when_a_page_starts_a_chain() -> None:
    text = REGISTRY.render("page_ocr", "v1.1", _variables(None)).text
    assert "no previous-page context" in text and "Last text of the previous page" not in text


def test_a_missing_template_is_a_prompt_error_naming_the_file_and_the_known_versions() -> None:
    with pytest.raises(PromptError) as err:
        REGISTRY.render("page_ocr", "v9", _variables())
    assert "page_ocr/v9.jinja not found" in str(err.value)
    assert "v1, v1.1" in str(err.value)
    with pytest.raises(PromptError, match="versions: none"):
        REGISTRY.check("no_such_prompt", "v1")


def test_a_missing_variable_is_a_prompt_error_naming_it(tmp_path: Path) -> None:
    variables = _variables()
    del variables["school"]
    with pytest.raises(PromptError, match="needs a variable that was not given: 'school' is undefined"):
        REGISTRY.render("page_ocr", "v1", variables)
    (tmp_path / "page_ocr").mkdir()
    (tmp_path / "page_ocr" / "v2.jinja").write_text("Page {{ page }} of {{ catalogue_title }}\n")
    with pytest.raises(PromptError, match="'catalogue_title' is undefined"):
        PromptRegistry(tmp_path).render("page_ocr", "v2", _variables())


def test_a_template_that_does_not_compile_is_a_prompt_error(tmp_path: Path) -> None:
    (tmp_path / "page_ocr").mkdir()
    (tmp_path / "page_ocr" / "broken.jinja").write_text("{% if page %}no end\n")
    with pytest.raises(PromptError, match="broken.jinja does not compile"):
        PromptRegistry(tmp_path).check("page_ocr", "broken")
