"""Secrets never leave: the scrubber itself, and a sentinel-key sweep over every CLI command and the store."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ocr_assets.cli import app, common
from ocr_assets.pipeline import open_store
from ocr_assets.redaction import REDACTED, is_secret_value, looks_secret, scrub
from ocr_assets.settings import load_settings
from tests.fixtures.corpus import REPO_ROOT, write_book

SENTINEL = "sentinel-gemini-key-0123456789"


@pytest.mark.parametrize(
    ("name", "secret"),
    [("api_key", True), ("BRAINTRUST_API_KEY", True), ("auth_token", True), ("client_secret", True),
     ("db_password", True), ("images_root", False), ("model", False), ("engine", False)],
)
def test_a_name_that_could_hold_a_credential_looks_secret(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_scrub_redacts_every_configured_secret_and_anything_shaped_like_a_google_key() -> None:
    environ = {"GEMINI_API_KEY": SENTINEL, "BRAINTRUST_API_KEY": "bt-sentinel-98765"}
    google_shaped = "AIza" + "x" * 35
    text = f"failed with {SENTINEL} and bt-sentinel-98765 and {google_shaped}"
    assert scrub(text, environ) == f"failed with {REDACTED} and {REDACTED} and {REDACTED}"
    assert is_secret_value(f"...{SENTINEL}...", environ) and not is_secret_value("plain", environ)
    assert scrub("short", {"GEMINI_API_KEY": "abc"}) == "short"  # too short to be a key: ordinary words stay


def test_no_cli_command_output_nor_any_store_row_carries_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  gemini_emulator) -> None:
    monkeypatch.setattr(common.console, "width", 250)
    monkeypatch.setattr(common.err_console, "width", 250)
    server = gemini_emulator(batch_latency_s=0.2)
    write_book(tmp_path, "ny:alpha:1900", images=[1, 2, 3], allow=[1, 2, 3])
    write_book(tmp_path, "ca:beta:1910", images=[1, 2], allow=[1, 2])
    (tmp_path / "allow_list" / "ca" / "beta" / "1910" / "3.json").write_text("{broken")  # a plan report line
    config = tmp_path / "ocr_assets.yaml"
    config.write_text(yaml.safe_dump({
        "paths": {"images_root": "images", "allow_list_root": "allow_list", "output_root": "output",
                  "database": "state/store.duckdb"},
        "prompt": {"registry_dir": str(REPO_ROOT / "prompts")},
        "execution": {"max_attempts": 2},
        "gemini": {"base_url": server.url, "retry_initial_wait_s": 0, "retry_max_wait_s": 0},
    }))
    monkeypatch.setenv("GEMINI_API_KEY", SENTINEL)
    outputs: dict[str, str] = {}  # the command (key redacted, to name it) → what it printed

    def invoke(*args: str) -> int:
        result = CliRunner().invoke(app, [*args, "--config", str(config)])
        outputs[scrub(" ".join(args))] = result.output
        return result.exit_code

    assert invoke("plan") == 0
    (tmp_path / "images" / "ny" / "alpha" / "1900" / "2.jpg").unlink()  # FATAL + BLOCKED rows with errors
    assert invoke("run", "--engine", "gemini-realtime", "--no-plan", "--book", "ny:alpha:1900") == 1
    # Batch commands, with API faults so error texts reach the store and the output.
    server.state.update_config({"faults": {"endpoint_503": 1.0, "endpoint_routes": ["files.upload_chunk"]}})
    assert invoke("submit", "--batch", "--limit", "1") == 1
    server.state.update_config({"faults": {"endpoint_503": 0.0, "endpoint_routes": []}})
    assert invoke("run", "--batch", "--poll-interval", "0.1") in (0, 1)
    store = open_store(load_settings(config))
    batch = store.batches()[0].batch_id
    key = store.records()[0].key
    for args in (["status"], ["records"], ["batches"], ["batch-status", batch, "--json"], ["batch-fetch", batch],
                 ["batch-fetch", batch, "--from-archive"], ["batch-cancel", batch], ["failures"],
                 ["failures", "export", "--csv", str(tmp_path / "failures.csv")], ["retry", "--all-retryable",
                 "--dry-run"], ["show", key, "--full"], ["inferences", "--full"], ["prompt", "show", key],
                 ["backup", "--to", str(tmp_path / "backup.duckdb")], ["run", "--engine", "teleport"],
                 ["run", "--engine", SENTINEL], ["batch-status", SENTINEL], ["show", SENTINEL],
                 ["run", "--no-plan", "--book", SENTINEL]):
        invoke(*args)
    assert batch in outputs["batches"] and key in outputs[f"show {key} --full"]  # the sweep really ran them
    assert [command for command, output in outputs.items() if SENTINEL in output] == []
    assert SENTINEL not in (tmp_path / "failures.csv").read_text()
    # Every row of every table, through the store's own connection (the one writer of the file).
    tables = [r["table_name"] for r in store.query("SELECT table_name FROM information_schema.tables")]
    assert "records" in tables and "failure_log" in tables
    for table in tables:
        for row in store.query(f'SELECT * FROM "{table}"'):
            assert SENTINEL not in repr(row), table
    for path in (tmp_path / "output").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".txt", ".csv"):
            assert SENTINEL not in path.read_text(errors="replace"), path
