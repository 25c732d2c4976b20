"""Shared pytest setup: keep tests off real credentials and the user's Dagster home."""

from __future__ import annotations

import pytest

# The emulator fixtures (`gemini_emulator`, `gemini_emulator_env`) for every test module.
pytest_plugins = ["tests.fixtures.emulator"]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never talk to real services: drop any credentials the developer has exported.
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "BRAINTRUST_API_KEY", "OCR_ASSETS_CONFIG",
                 "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
