"""The prompt registry: Jinja2 templates `prompts/{name}/{version}.jinja`, versioned and hashed.

A record stores prompt identity (name, version, vars_hash), not rendered text; rendering is
deterministic, so the exact prompt is reconstructed from the record and its upstream output.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel

from ocr_assets.core import PromptIdentity
from ocr_assets.schema import OcrPageResult

CONTEXT_TAIL_CHARS = 500
CONTEXT_COURSES = 3


class PromptError(ValueError):
    """A missing template or variable, raised before anything is submitted."""


class RenderedPrompt(BaseModel):
    text: str
    identity: PromptIdentity
    variables: dict[str, Any]


def vars_hash(variables: dict[str, Any]) -> str:
    canonical = json.dumps(variables, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def upstream_context(result: OcrPageResult | None) -> dict[str, Any] | None:
    """What a page's prompt carries from its upstream page: text tail + last courses."""
    if result is None:
        return None
    text = result.raw_ocr.full_text()
    courses = [
        {"course_name": c.course_name, "department": c.department} for c in result.courses[-CONTEXT_COURSES:]
    ]
    return {"text_tail": text[-CONTEXT_TAIL_CHARS:], "last_courses": courses}


class PromptRegistry:
    """Templates under `registry_dir/{name}/{version}.jinja`, rendered with StrictUndefined."""

    def __init__(self, registry_dir: Path):
        self.registry_dir = Path(registry_dir)
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.registry_dir)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def versions(self, name: str) -> list[str]:
        folder = self.registry_dir / name
        return sorted(p.stem for p in folder.glob("*.jinja")) if folder.is_dir() else []

    def _path(self, name: str, version: str) -> Path:
        return self.registry_dir / name / f"{version}.jinja"

    def template_hash(self, name: str, version: str) -> str:
        return hashlib.sha256(self._path(name, version).read_bytes()).hexdigest()[:16]

    def check(self, name: str, version: str) -> None:
        """Fail early (before any submission) when the template is missing or does not compile."""
        if not self._path(name, version).is_file():
            known = ", ".join(self.versions(name)) or "none"
            raise PromptError(
                f"prompt template {name}/{version}.jinja not found in {self.registry_dir} (versions: {known})"
            )
        try:
            self._env.get_template(f"{name}/{version}.jinja")
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(f"prompt template {name}/{version}.jinja does not compile: {exc}") from exc

    def render(self, name: str, version: str, variables: dict[str, Any]) -> RenderedPrompt:
        self.check(name, version)
        template = self._env.get_template(f"{name}/{version}.jinja")
        try:
            text = template.render(**variables)
        except jinja2.UndefinedError as exc:
            raise PromptError(f"prompt {name}/{version} needs a variable that was not given: {exc}") from exc
        identity = PromptIdentity(
            name=name, version=version, vars_hash=vars_hash(variables),
            template_hash=self.template_hash(name, version),
        )
        return RenderedPrompt(text=text, identity=identity, variables=variables)


def page_variables(
    *, state: str, school: str, year: int, page: int, previous_context: dict[str, Any] | None,
    context_source: str = "upstream_output",
) -> dict[str, Any]:
    """The variables every page prompt is rendered with (their hash is the record's vars_hash)."""
    return {
        "state": state,
        "school": school,
        "year": year,
        "page": page,
        "previous_context": previous_context,
        "context_source": context_source,
    }
