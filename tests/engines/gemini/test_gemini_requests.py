"""Building Gemini requests from page requests: image part, prompt, generation config, cache."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from ocr_assets.core import PageRequest, PromptIdentity
from ocr_assets.engines.gemini.requests import (
    FileRef,
    ImageUnreadable,
    build_request,
    jsonl_line,
    load_image,
    load_context_image,
    sdk_call,
)
from ocr_assets.engines.gemini.metering import raw_estimate
from ocr_assets.schema import response_json_schema
from tests.fixtures.corpus import settings_for


def page_request(image: Path, prompt: str = "Catalog: A (ny), catalog year 1900, page 3.") -> PageRequest:
    return PageRequest(key="ny:a:1900:3", book="ny:a:1900", page=3, image_path=image, prompt=prompt,
                       prompt_identity=PromptIdentity(name="page_ocr", version="v1.1", vars_hash="abc"))


def write_image(path: Path, fmt: str, size=(40, 30)) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, format=fmt)
    path.write_bytes(buf.getvalue())
    return path


def test_a_request_carries_the_image_inline_then_the_prompt_and_the_generation_config(tmp_path):
    settings = settings_for(tmp_path, model__generation__temperature=0.2, model__generation__max_output_tokens=999)
    image_path = write_image(tmp_path / "3.jpg", "JPEG")
    image = load_image(image_path)
    body = build_request(page_request(image_path), settings, image=image)
    parts = body["contents"][0]["parts"]
    assert parts[0]["inlineData"]["mimeType"] == "image/jpeg"
    assert base64.b64decode(parts[0]["inlineData"]["data"]) == image_path.read_bytes()
    assert parts[1]["text"].startswith("Catalog: A (ny)")
    assert body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 999,
                                        "responseMimeType": "application/json",
                                        "responseJsonSchema": response_json_schema(),
                                        "thinkingConfig": {"thinkingBudget": 0}}
    assert "cachedContent" not in body


def test_a_file_reference_replaces_inline_bytes_and_a_cache_is_named_when_configured(tmp_path):
    settings = settings_for(tmp_path, gemini__cached_content="cachedContents/abc")
    ref = FileRef(name="files/x", uri="http://h/v1beta/files/x", mime_type="image/png")
    body = build_request(page_request(tmp_path / "none.jpg"), settings, file_ref=ref)
    assert body["contents"][0]["parts"][0] == {"fileData": {"mimeType": "image/png", "fileUri": ref.uri}}
    assert body["cachedContent"] == "cachedContents/abc"


def test_a_jsonl_line_is_one_line_keyed_by_the_record_key(tmp_path):
    line = jsonl_line("ny:a:1900:3", {"contents": [{"parts": [{"text": "a\nb"}]}]})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"key": "ny:a:1900:3", "request": {"contents": [{"parts": [{"text": "a\nb"}]}]}}


def test_tiff_scans_are_sent_as_png_and_sizes_are_known(tmp_path):
    image = load_image(write_image(tmp_path / "3.tif", "TIFF", size=(50, 70)))
    assert image.mime_type == "image/png" and (image.width, image.height) == (50, 70)
    assert Image.open(io.BytesIO(image.data)).format == "PNG"


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_an_unreadable_image_raises_image_unreadable(tmp_path, content):
    path = tmp_path / "3.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageUnreadable):
        load_image(path)
    with pytest.raises(ImageUnreadable):
        load_image(tmp_path / "missing.jpg")


def test_the_sdk_call_uses_the_same_config_and_can_ask_for_the_flex_tier(tmp_path):
    settings = settings_for(tmp_path)
    image_path = write_image(tmp_path / "3.png", "PNG")
    contents, config = sdk_call(page_request(image_path), settings, image=load_image(image_path),
                                service_tier="flex")
    assert contents[0].parts[0].inline_data.mime_type == "image/png"
    assert contents[0].parts[1].text.startswith("Catalog:")
    assert config.response_mime_type == "application/json" and config.service_tier.value == "flex"


@pytest.mark.parametrize(
    ("overrides", "thinking", "media"),
    [
        ({}, {"thinkingBudget": 0}, None),
        ({"model__generation__thinking_budget": 1024, "model__generation__media_resolution": "low"},
         {"thinkingBudget": 1024}, "MEDIA_RESOLUTION_LOW"),
        ({"model__generation__thinking_level": "low", "model__generation__media_resolution": "medium"},
         {"thinkingLevel": "LOW"}, "MEDIA_RESOLUTION_MEDIUM"),
        ({"model__generation__thinking_budget": "null"}, None, None),
    ],
)
def test_thinking_and_media_resolution_settings_reach_both_request_spellings(tmp_path, overrides, thinking, media):
    settings = settings_for(tmp_path, **overrides)
    image_path = write_image(tmp_path / "3.png", "PNG")
    image = load_image(image_path)
    generation = build_request(page_request(image_path), settings, image=image)["generationConfig"]
    assert generation.get("thinkingConfig") == thinking and generation.get("mediaResolution") == media
    _, config = sdk_call(page_request(image_path), settings, image=image)
    sdk_thinking = config.thinking_config
    if thinking is None:
        assert sdk_thinking is None
    else:
        level = sdk_thinking.thinking_level.value if sdk_thinking.thinking_level else None
        assert (sdk_thinking.thinking_budget, level) == (thinking.get("thinkingBudget"), thinking.get("thinkingLevel"))
    assert (config.media_resolution.value if config.media_resolution else None) == media
    assert config.response_json_schema == response_json_schema()


def test_a_context_image_goes_after_the_pages_own_image_downscaled(tmp_path):
    settings = settings_for(tmp_path, gemini__context_source="upstream_image")
    page = write_image(tmp_path / "3.png", "PNG", size=(1200, 1600))
    upstream = write_image(tmp_path / "2.png", "PNG", size=(1200, 1600))
    context = load_context_image(upstream, settings.gemini.context_image_side)
    assert max(context.width, context.height) == 384 and context.mime_type == "image/jpeg"
    body = build_request(page_request(page), settings, image=load_image(page), context_image=context)
    parts = body["contents"][0]["parts"]
    assert [("inlineData" in p, "text" in p) for p in parts] == [(True, False), (True, False), (False, True)]
    assert base64.b64decode(parts[1]["inlineData"]["data"]) == context.data
    # The small context image costs one tile on top of the page's own tiles.
    assert raw_estimate("", 1200, 1600, extra_images=[(context.width, context.height)]) == \
        raw_estimate("", 1200, 1600) + 258


def test_a_media_resolution_sets_the_image_token_estimate_per_model_family():
    assert raw_estimate("", 1200, 1600, media_resolution="low", model="gemini-2.5-flash") == 64
    assert raw_estimate("", 1200, 1600, media_resolution="low", model="gemini-3-flash-preview") == 280
    assert raw_estimate("", 1200, 1600, media_resolution="high") == raw_estimate("", 1200, 1600)


def test_both_thinking_settings_at_once_are_refused_at_load_time(tmp_path):
    from ocr_assets.settings import SettingsError

    with pytest.raises(SettingsError, match="not both"):
        settings_for(tmp_path, model__generation__thinking_budget=128, model__generation__thinking_level="low")
    with pytest.raises(SettingsError, match="minimum is 128"):
        settings_for(tmp_path, model__name="gemini-2.5-pro")
