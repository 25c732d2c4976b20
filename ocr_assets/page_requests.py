"""The one place a record becomes a `PageRequest`: its prompt rendered with the context its configured
source supplies. Used by the pipeline (synchronous engines), batch submit, batch ingest (to rebuild
what a batch was sent) and `ocr-assets prompt show` (to rebuild what one record was sent), so the
four can never disagree about a record's prompt.

Context sources (`gemini.context_source`) implement `ContextProvider`:
- `upstream_output` (here): the upstream page's validated output (the page waits for it);
- `local_ocr`, `upstream_image` (`engines/gemini/context.py`): no wait on the upstream page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ocr_assets.core import PageRequest, PromptIdentity
from ocr_assets.outputs import read_output
from ocr_assets.prompts import PromptError, PromptRegistry, page_variables, upstream_context
from ocr_assets.store import RecordRow, RecordStore

UPSTREAM_OUTPUT = "upstream_output"


class ContextProvider(Protocol):
    """Supplies each record's previous-page context; `source` is one of the prompt's variables."""

    source: str

    def contexts(self, records: Sequence[RecordRow]) -> dict[str, dict[str, Any] | None]:
        """record key → context (None for chain heads, or where it failed: see `problem_for`)."""
        ...

    def problem_for(self, record: RecordRow) -> str | None:
        """Why this record's context could not be built (the record fails, retryable), or None."""
        ...


def waits_for_upstream(provider: ContextProvider | None) -> bool:
    """Whether a record must wait for its upstream page's answer: only the upstream output is that answer."""
    return provider is None or provider.source == UPSTREAM_OUTPUT


class UpstreamOutputContext:
    """Context from the upstream page's validated output on disk."""

    source = UPSTREAM_OUTPUT

    def __init__(self, store: RecordStore):
        self.store = store
        self.problems: dict[str, str] = {}

    def contexts(self, records: Sequence[RecordRow]) -> dict[str, dict[str, Any] | None]:
        self.problems = {}
        upstreams = self.store.get_many([r.upstream_key for r in records if r.upstream_key])
        found: dict[str, dict[str, Any] | None] = {}
        for record in records:
            upstream = upstreams.get(record.upstream_key or "")
            if record.upstream_key is None or upstream is None or not upstream.output_path:
                found[record.key] = None
                continue
            try:
                found[record.key] = upstream_context(read_output(Path(upstream.output_path)))
            except (OSError, ValueError) as exc:
                self.problems[record.key] = (
                    f"upstream output of {record.upstream_key} ({upstream.output_path}) is unreadable: {exc}"
                )
                found[record.key] = None
        return found

    def problem_for(self, record: RecordRow) -> str | None:
        return self.problems.get(record.key)


def build_page_requests(
    records: Sequence[RecordRow],
    *,
    registry: PromptRegistry,
    prompt_name: str,
    prompt_version: str,
    provider: ContextProvider,
) -> tuple[list[PageRequest], list[tuple[RecordRow, str]]]:
    """Each record's request, its prompt rendered with the provider's context; (requests, unbuildable)."""
    registry.check(prompt_name, prompt_version)
    contexts = provider.contexts(records)
    images: dict[str, Path] = getattr(provider, "images", {})  # sources that send an extra image
    requests: list[PageRequest] = []
    problems: list[tuple[RecordRow, str]] = []
    for record in records:
        why = provider.problem_for(record) if record.upstream_key else None
        if why:
            problems.append((record, why))
            continue
        context = contexts.get(record.key)
        variables = page_variables(state=record.state, school=record.school, year=record.year, page=record.page,
                                   previous_context=context, context_source=provider.source)
        try:
            rendered = registry.render(prompt_name, prompt_version, variables)
        except PromptError as exc:
            raise PromptError(f"{exc} (context_source {provider.source}: does {prompt_name}/{prompt_version} "
                              "support it? see prompts/page_ocr/README.md)") from None
        requests.append(PageRequest(
            key=record.key, book=record.book, page=record.page, image_path=Path(record.image_path),
            prompt=rendered.text, prompt_identity=rendered.identity, upstream_key=record.upstream_key,
            previous_context=context, context_source=provider.source, context_image_path=images.get(record.key),
            attempt=record.attempts + 1,
        ))
    return requests, problems


def stored_identity(record: RecordRow) -> PromptIdentity:
    """The prompt identity the store holds for a record (empty strings where it holds none)."""
    return PromptIdentity(name=record.prompt_name or "", version=record.prompt_version or "",
                          vars_hash=record.prompt_vars_hash or "")


def placeholder_request(record: RecordRow, identity: PromptIdentity, *, attempt: int) -> PageRequest:
    """A request for a record whose prompt could not be built (it is claimed and failed, never sent)."""
    return PageRequest(
        key=record.key, book=record.book, page=record.page, image_path=Path(record.image_path), prompt="",
        prompt_identity=identity, upstream_key=record.upstream_key, attempt=attempt,
    )
