"""Pytest fixtures for the emulator (import them into a test module or conftest, or list this module in
`pytest_plugins` of the root conftest):

    from ocr_assets.engines.emulator.testing import gemini_emulator  # noqa: F401

    def test_something(gemini_emulator):
        emulator = gemini_emulator(batch_latency_s=0.2, faults={"error_429": 0.1})
        client = emulator.client()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ocr_assets.engines.emulator.answers import Answerer, EchoAnswerer
from ocr_assets.engines.emulator.config import EmulatorConfig
from ocr_assets.engines.emulator.server import EmulatorServer

EmulatorFactory = Callable[..., EmulatorServer]
TEST_API_KEY = "emulator-test-key"


@pytest.fixture
def gemini_emulator() -> Iterator[EmulatorFactory]:
    """A factory of started emulators (EchoAnswerer unless told otherwise), all stopped after the test.

    `gemini_emulator(config=None, *, answerer=None, **fields)`: `fields` are `EmulatorConfig` fields
    (`faults` may be a dict); `config` wins over them.
    """
    started: list[EmulatorServer] = []

    def make(config: EmulatorConfig | None = None, *, answerer: Answerer | None = None,
             **fields: Any) -> EmulatorServer:
        server = EmulatorServer(config or EmulatorConfig(**fields), answerer=answerer or EchoAnswerer())
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def gemini_emulator_env(gemini_emulator: EmulatorFactory,
                        monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """One started emulator with `GOOGLE_GEMINI_BASE_URL` and `GEMINI_API_KEY` pointing at it."""
    server = gemini_emulator()
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    monkeypatch.setenv("GEMINI_API_KEY", TEST_API_KEY)
    return server
