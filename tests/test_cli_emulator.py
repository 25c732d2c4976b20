"""`ocr-assets emulator`: the real command in a subprocess, asked over HTTP what it was started with."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

URL = re.compile(r"Gemini emulator on (http://127\.0\.0\.1:\d+)")
CLI = Path(sys.executable).parent / "ocr-assets"  # the console script the venv installed


def served_config(*flags: str) -> dict:
    """Start `ocr-assets emulator` with `flags`, read GET /_emulator/config, stop it with SIGTERM."""
    proc = subprocess.Popen(
        [str(CLI), "emulator", "--port", "0", "--answerer", "echo", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            found = URL.search(line)
            if found:
                break
        else:
            pytest.fail(f"the emulator did not start: {''.join(lines)}")
        with urllib.request.urlopen(f"{found.group(1)}/_emulator/config", timeout=10) as response:
            config = json.load(response)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        return config
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_model_like_turns_on_the_emulators_model_like_answers() -> None:
    config = served_config("--model-like", "--seed", "7")
    assert config["model_like"]["enabled"] is True
    assert config["faults"]["seed"] == 7


def test_without_model_like_the_emulator_answers_plainly() -> None:
    assert served_config()["model_like"]["enabled"] is False
