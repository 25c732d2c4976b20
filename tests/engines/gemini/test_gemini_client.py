"""The API key comes only from $GEMINI_API_KEY and never shows in error texts or reprs."""

from __future__ import annotations

import pytest

from ocr_assets.engines.gemini.batch import GeminiBatchClient
from ocr_assets.engines.gemini.client import (
    REDACTED,
    GeminiUnavailable,
    describe_error,
    make_client,
    resolve_base_url,
    scrub,
)
from ocr_assets.engines.gemini.realtime import GeminiRealtimeEngine, flex_supported
from tests.fixtures.corpus import settings_for

SENTINEL = "AIzaSENTINEL-do-not-leak-0123456789abcdefXYZ"


def test_scrub_removes_the_configured_key_and_anything_shaped_like_a_google_key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "plain-secret-value")
    assert scrub("bad key plain-secret-value!") == f"bad key {REDACTED}!"
    assert SENTINEL not in scrub(f"x {SENTINEL} y")
    assert "plain-secret-value" not in describe_error(ValueError("key=plain-secret-value"))


def test_without_a_key_only_a_loopback_emulator_url_is_allowed(tmp_path):
    with pytest.raises(GeminiUnavailable, match="GEMINI_API_KEY"):
        make_client(settings_for(tmp_path), environ={})
    client = make_client(settings_for(tmp_path, gemini__base_url="http://127.0.0.1:9"), environ={})
    assert client is not None


def test_the_base_url_comes_from_settings_or_the_sdk_environment_variable(tmp_path):
    assert resolve_base_url(settings_for(tmp_path), {"GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:5"}) == \
        "http://127.0.0.1:5"
    assert resolve_base_url(settings_for(tmp_path, gemini__base_url="http://x:1"), {}) == "http://x:1"


def test_reprs_of_engine_objects_do_not_hold_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", SENTINEL)
    settings = settings_for(tmp_path, gemini__base_url="http://127.0.0.1:9")
    client = make_client(settings)
    for obj in (GeminiBatchClient(settings, client), GeminiRealtimeEngine(settings, client)):
        assert SENTINEL not in repr(obj)


def test_the_installed_sdk_supports_the_flex_service_tier():
    assert flex_supported()
