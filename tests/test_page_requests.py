"""The one request builder: the pipeline, batch submit/ingest and `prompt show` build the same request."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ocr_assets.cli import app
from ocr_assets.core import PageSuccess
from ocr_assets.engines.gemini.context import LocalOcrContext
from ocr_assets.page_requests import UpstreamOutputContext, build_page_requests
from ocr_assets.pipeline import Pipeline
from ocr_assets.plan import build_plan
from ocr_assets.schema import Course, OcrPageResult, PageInfo, RawOcr, TextBlock
from tests.engines.gemini.test_gemini_context import fake_recognise
from tests.fixtures.corpus import settings_env, settings_for, write_book


def _result(page: int) -> OcrPageResult:
    return OcrPageResult(raw_ocr=RawOcr(text_blocks=[TextBlock(block_id=1, text=f"text of page {page}")]),
                         page_info=PageInfo(page_number=page), courses=[Course(course_name=f"C{page}")])


def _run(pipeline: Pipeline, provider=None) -> dict[str, str]:
    """Claim, 'infer' and ingest every record once; returns key → prompt sent."""
    records = pipeline.store.records()
    requests, problems = pipeline.build_requests(records, provider=provider)
    assert problems == []
    claimed = pipeline.store.claim("b1", pipeline.claim_items(requests), engine="local", model="m", owner="t",
                                   require_upstream=provider is None)
    assert len(claimed) == len(records)
    pipeline.ingest("b1", requests, [PageSuccess(key=r.key, result=_result(r.page)) for r in requests],
                    engine="local", pricing_mode="local")
    return {r.key: r.prompt for r in requests}


def test_a_local_ocr_context_record_is_rebuilt_by_prompt_show_exactly_as_sent(tmp_path: Path, monkeypatch):
    write_book(tmp_path, "ny:alpha:1900", images=[1, 2, 3], allow=[1, 2, 3])
    settings = settings_for(tmp_path, gemini__context_source="local_ocr")
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    calls: list[list[str]] = []
    sent = _run(pipeline, LocalOcrContext(settings, pipeline.store, recognise=fake_recognise(calls)))
    assert "Context from the previous page (local_ocr)" in sent["ny:alpha:1900:2"]

    # `prompt show` with today's settings file saying upstream_output: the record's logged source wins,
    # and the local OCR context comes from the on-disk cache (no pass, no engine).
    env = settings_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["prompt", "show", "ny:alpha:1900:2"])
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip("\n") == sent["ny:alpha:1900:2"].rstrip("\n")
    assert "matches the stored hash" in result.stderr and len(calls) == 1


def _two_pages_head_done(tmp_path: Path) -> Pipeline:
    """A book of pages 1 → 2 whose page 1 succeeded."""
    write_book(tmp_path, "ny:alpha:1900", images=[1, 2], allow=[1, 2])
    settings = settings_for(tmp_path)
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    head = pipeline.store.get("ny:alpha:1900:1")
    requests, _ = pipeline.build_requests([head])
    pipeline.store.claim("b0", pipeline.claim_items(requests), engine="local", model="m", owner="t")
    pipeline.ingest("b0", requests, [PageSuccess(key=head.key, result=_result(1))], engine="local",
                    pricing_mode="local")
    return pipeline


def test_an_upstream_output_record_rebuilds_with_the_upstream_pages_text(tmp_path: Path):
    pipeline = _two_pages_head_done(tmp_path)
    second = pipeline.store.get("ny:alpha:1900:2")
    built, problems = build_page_requests([second], registry=pipeline.registry, prompt_name="page_ocr",
                                          prompt_version="v1.1", provider=UpstreamOutputContext(pipeline.store))
    assert problems == [] and "text of page 1" in built[0].prompt and built[0].context_source == "upstream_output"


def test_an_unreadable_upstream_output_makes_the_record_unbuildable_not_the_batch(tmp_path: Path):
    pipeline = _two_pages_head_done(tmp_path)
    Path(pipeline.store.get("ny:alpha:1900:1").output_path).write_text("{not json")
    built, problems = pipeline.build_requests(pipeline.store.records())
    assert [r.key for r in built] == ["ny:alpha:1900:1"]
    assert [(rec.key, "is unreadable" in why) for rec, why in problems] == [("ny:alpha:1900:2", True)]


@pytest.mark.parametrize("version", ["v1", "v1.1"])
def test_every_prompt_version_builds_through_the_one_builder(tmp_path: Path, version: str):
    write_book(tmp_path, "ny:alpha:1900", images=[1], allow=[1])
    settings = settings_for(tmp_path)
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    built, _ = pipeline.build_requests(pipeline.store.records(), prompt_version=version)
    assert built[0].prompt_identity.version == version and "page 1" in built[0].prompt


def test_a_prompt_version_that_cannot_render_a_context_source_says_so_before_anything_is_sent(tmp_path: Path):
    from ocr_assets.engines.gemini.context import UpstreamImageContext
    from ocr_assets.prompts import PromptError

    write_book(tmp_path, "ny:alpha:1900", images=[1, 2], allow=[1, 2])
    settings = settings_for(tmp_path)
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    with pytest.raises(PromptError, match="context_source upstream_image"):
        pipeline.build_requests(pipeline.store.records(), prompt_version="v1.1",
                                provider=UpstreamImageContext(pipeline.store))
    built, _ = pipeline.build_requests(pipeline.store.records(), prompt_version="v1.2",
                                       provider=UpstreamImageContext(pipeline.store))
    second = next(r for r in built if r.page == 2)
    assert second.context_image_path == Path(pipeline.store.get("ny:alpha:1900:1").image_path)
