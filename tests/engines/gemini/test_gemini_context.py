"""The local OCR context source: one pass per distinct upstream image, cached on disk by content."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ocr_assets.core import PageRequest, PageSuccess
from ocr_assets.engines.gemini.context import LocalOcrContext
from ocr_assets.pipeline import Pipeline
from ocr_assets.plan import build_plan
from ocr_assets.schema import OcrPageResult, PageInfo, RawOcr, TextBlock
from tests.fixtures.corpus import settings_for, write_book


def fake_recognise(calls: list[list[str]]):
    """A recogniser whose text names the image's digest, recording the keys it was asked for."""

    def recognise(requests: list[PageRequest]) -> list[PageSuccess]:
        calls.append([r.key for r in requests])
        return [PageSuccess(key=r.key, result=OcrPageResult(
            raw_ocr=RawOcr(text_blocks=[TextBlock(block_id=1, text=hashlib.sha256(
                Path(r.image_path).read_bytes()).hexdigest()[:12])]),
            page_info=PageInfo(page_number=r.page, content_type="course_listing"))) for r in requests]

    return recognise


def test_identical_upstream_images_are_recognised_once_and_the_cache_outlives_the_provider(tmp_path):
    write_book(tmp_path, "ny:alpha:1900", images=[1, 2, 3], allow=[1, 2, 3])
    write_book(tmp_path, "ca:beta:1910", images=[1, 2], allow=[1, 2])
    odd = tmp_path / "images" / "ny" / "alpha" / "1900" / "2.jpg"
    odd.write_bytes(odd.read_bytes() + b"\0")  # one image differs; the others are byte-identical
    settings = settings_for(tmp_path)
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    records = [r for r in pipeline.store.records() if r.upstream_key]
    assert {r.upstream_key for r in records} == {"ny:alpha:1900:1", "ny:alpha:1900:2", "ca:beta:1910:1"}

    calls: list[list[str]] = []
    provider = LocalOcrContext(settings, pipeline.store, recognise=fake_recognise(calls))
    contexts = provider.contexts(records)
    assert len(calls) == 1 and len(calls[0]) == 2  # three upstream pages, two distinct images
    assert contexts["ny:alpha:1900:2"] == contexts["ca:beta:1910:2"] != contexts["ny:alpha:1900:3"]
    assert provider.problems == {}

    again = LocalOcrContext(settings, pipeline.store, recognise=fake_recognise(calls))
    assert again.contexts(records) == contexts and len(calls) == 1  # rebuilt at ingest: same text, no pass

    odd.write_bytes(odd.read_bytes() + b"\0")  # a rescanned page is recognised again
    assert again.contexts(records)["ny:alpha:1900:3"] != contexts["ny:alpha:1900:3"] and calls[-1] == [
        "ny:alpha:1900:2"]


def test_upstream_image_context_sends_every_page_at_once_with_its_upstream_image(tmp_path, monkeypatch,
                                                                                  gemini_emulator):
    from ocr_assets.engines.gemini.batch import GeminiBatchClient
    from ocr_assets.engines.gemini.client import make_client
    from ocr_assets.engines.gemini.submit import submit_wave
    from ocr_assets.operations import reconstruct_prompt

    server = gemini_emulator()
    write_book(tmp_path, "ny:alpha:1900", images=[1, 2, 3], allow=[1, 2, 3])
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    settings = settings_for(tmp_path, gemini__base_url=server.url, gemini__context_source="upstream_image",
                            prompt__version="v1.2")
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    client = GeminiBatchClient(settings, make_client(settings), store=pipeline.store)
    report = submit_wave(pipeline, client)
    assert report.records == 3 and len(report.batches) == 1  # no page waits for its upstream's answer

    import time

    from ocr_assets.engines.gemini.ingest import ingest_batch
    from ocr_assets.engines.gemini.poll import poll_active

    deadline = time.monotonic() + 20
    while not poll_active(pipeline, client) and time.monotonic() < deadline:
        time.sleep(0.05)
    result = ingest_batch(pipeline, client, report.batches[0])
    assert result.succeeded == 3
    log = {e.key: e for e in server.state.request_log}
    assert log["ny:alpha:1900:1"].images == 1
    assert log["ny:alpha:1900:2"].images == log["ny:alpha:1900:3"].images == 2
    assert "The second image is the previous page" in log["ny:alpha:1900:3"].prompt
    rebuilt = reconstruct_prompt(settings.model_copy(update={"gemini": settings.gemini.model_copy(
        update={"context_source": "upstream_output"})}), pipeline.store, pipeline.registry, "ny:alpha:1900:3")
    assert rebuilt.ok and rebuilt.vars_hash_matches and rebuilt.text == log["ny:alpha:1900:3"].prompt
