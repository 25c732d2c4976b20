"""`ocr-assets run / submit / batch-status / batch-fetch / batch-cancel / batches` against the emulator."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ocr_assets.cli import app, common
from ocr_assets.pipeline import Pipeline
from ocr_assets.settings import load_settings
from ocr_assets.store import BatchState, RecordStatus
from tests.fixtures.corpus import REPO_ROOT, write_book

SENTINEL = "AIzaSENTINEL-cli-do-not-leak-0123456789abcdef"
BOOKS = {"ny:alpha:1900": [1, 2, 3], "ca:beta:1910": [1, 2]}
runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common.console, "width", 250)
    monkeypatch.setattr(common.err_console, "width", 250)


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gemini_emulator):
    server = gemini_emulator(batch_latency_s=0.3)
    for book, pages in BOOKS.items():
        write_book(tmp_path, book, images=pages, allow=pages)
    config = tmp_path / "ocr_assets.yaml"
    config.write_text(yaml.safe_dump({
        "engine": "local",
        "paths": {"images_root": "images", "allow_list_root": "allow_list", "output_root": "output",
                  "database": "state/store.duckdb"},
        "prompt": {"registry_dir": str(REPO_ROOT / "prompts")},
        "execution": {"max_attempts": 2},  # polls every 30 s unless a command says otherwise
        "gemini": {"base_url": server.url, "retry_initial_wait_s": 0, "retry_max_wait_s": 0},
    }))
    monkeypatch.setenv("GEMINI_API_KEY", SENTINEL)

    def invoke(*args: str):
        result = runner.invoke(app, [*args, "--config", str(config)])
        assert SENTINEL not in result.output
        return result

    return invoke, Pipeline(load_settings(config)), server


def _wait_done(server, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batches = server.batches.summaries()
        if batches and all(b["state"].endswith("SUCCEEDED") for b in batches):
            return
        time.sleep(0.05)
    raise AssertionError("the emulator's batches did not finish")


def test_submit_prints_only_the_batch_id_and_claims_the_records(cli):
    invoke, pipeline, _ = cli
    result = invoke("submit", "--batch", "--limit", "1")
    assert result.exit_code == 0, result.output
    batch_id = result.stdout.strip()
    batch = pipeline.store.get_batch(batch_id)
    assert batch is not None and batch.state == BatchState.PENDING and batch.record_count == 1
    assert batch.remote_name.startswith("batches/")
    running = pipeline.store.records(status=RecordStatus.RUNNING)
    assert [r.batch_id for r in running] == [batch_id]
    assert "1 records in 1 new batch" in result.stderr


def test_submit_that_sends_nothing_because_the_api_failed_exits_1_with_the_reason(cli):
    invoke, pipeline, server = cli
    server.state.update_config({"faults": {"endpoint_503": 1.0, "endpoint_routes": ["files.upload_chunk"]}})
    result = invoke("submit", "--batch", "--limit", "1")
    assert result.exit_code == 1 and result.stdout == ""
    assert "error: not submitted: batch gb-" in result.stderr and "input upload failed" in result.stderr
    assert pipeline.store.records(status=RecordStatus.RUNNING) == []  # the claim was put back
    assert all(r.attempts == 0 for r in pipeline.store.records())

    # A 503 on create leaves open whether the job exists: the batch stays SUBMITTING for recovery.
    server.state.update_config({"faults": {"endpoint_routes": ["batches.create"]}})
    uncertain = invoke("submit", "--batch", "--limit", "1")
    assert uncertain.exit_code == 1 and "batches.create failed" in uncertain.stderr
    assert "adopts it by its display name" in uncertain.stderr
    assert len(pipeline.store.batches(states=[BatchState.SUBMITTING])) == 1

    server.state.update_config({"faults": {"endpoint_503": 0.0, "endpoint_routes": []}})
    assert invoke("submit", "--batch", "--limit", "1").exit_code == 0  # and it goes through once the API is back


def test_status_then_fetch_ingests_once_and_replays_identically_from_the_archive(cli):
    invoke, pipeline, server = cli
    batch_id = invoke("submit", "--batch").stdout.strip()
    status = invoke("batch-status", batch_id)
    assert status.exit_code == 0 and batch_id in status.output
    _wait_done(server)
    fetched = invoke("batch-fetch", batch_id)
    assert fetched.exit_code == 0, fetched.output
    heads = {"ny:alpha:1900:1", "ca:beta:1910:1"}
    assert {r.key for r in pipeline.store.records(status=RecordStatus.SUCCESS)} == heads
    assert "2/2 parsed" in fetched.output
    outputs = {p: p.read_bytes() for p in Path(pipeline.settings.paths.output_root).rglob("*.json")}
    assert len(outputs) == 2
    attempts = {r.key: r.attempts for r in pipeline.store.records()}

    again = invoke("batch-fetch", batch_id)
    replay = invoke("batch-fetch", batch_id, "--from-archive")
    assert again.exit_code == 0 and replay.exit_code == 0
    assert "nothing changed" in again.output and "nothing changed" in replay.output
    assert {r.key: r.attempts for r in pipeline.store.records()} == attempts
    assert {p: p.read_bytes() for p in Path(pipeline.settings.paths.output_root).rglob("*.json")} == outputs
    assert "INGESTED" in invoke("batch-status", batch_id, "--no-refresh").output


def test_cancel_returns_the_records_to_retryable(cli):
    invoke, pipeline, _ = cli
    batch_id = invoke("submit", "--batch").stdout.strip()
    result = invoke("batch-cancel", batch_id)
    assert result.exit_code == 0, result.output
    assert "2 records back to retryable" in result.output
    assert pipeline.store.get_batch(batch_id).state == BatchState.CANCELLED
    members = {key for key, _, _ in pipeline.store.batch_members(batch_id)}
    assert len(members) == 2
    assert {r.status for r in pipeline.store.get_many(list(members)).values()} == {RecordStatus.RETRYABLE_FAILURE}
    again = invoke("batch-cancel", batch_id)
    assert again.exit_code == 1 and "only active batches" in again.output


def test_run_batch_drives_every_record_to_success_in_chain_order(cli):
    invoke, pipeline, server = cli
    result = invoke("run", "--batch", "--poll-interval", "0.1")  # at the 30 s default this would take minutes
    assert result.exit_code == 0, result.output
    [bar] = [line for line in result.output.splitlines() if line.startswith("gemini-batch ")]
    assert "5/5" in bar and "0 failed" in bar and "pages/s" in bar and "ETA 0s" in bar  # the progress bar, ended
    records = pipeline.store.records()
    assert len(records) == 5 and {r.status for r in records} == {RecordStatus.SUCCESS}
    # No page is ever sent twice.
    sent = [entry.key for entry in server.state.request_log]
    assert sorted(sent) == sorted(r.key for r in records)
    assert invoke("run", "--batch").output.strip().endswith("every selected record is terminal")
    listed = invoke("batches")
    assert listed.exit_code == 0 and listed.output.count("INGESTED") == len(server.batches.summaries())


def test_run_engine_wins_over_the_settings_engine_for_every_record_of_the_run(cli):
    invoke, pipeline, server = cli
    assert pipeline.settings.engine == "local"  # the file says local; the option says Gemini real-time
    result = invoke("run", "--engine", "gemini-realtime", "--book", "ny:alpha:1900")
    assert result.exit_code == 0, result.output
    assert "records with gemini-realtime" in result.output
    records = pipeline.store.records(book="ny:alpha:1900")
    assert {(r.status, r.engine) for r in records} == {(RecordStatus.SUCCESS, "gemini-realtime")}
    assert {b.engine for b in pipeline.store.batches()} == {"gemini-realtime"}
    assert sorted(e.key for e in server.state.request_log) == sorted(r.key for r in records)  # Gemini answered


def test_unknown_batch_and_missing_key_are_one_clear_line(cli, monkeypatch):
    invoke, _, _ = cli
    missing = invoke("batch-status", "gb-nope")
    assert missing.exit_code == 1 and "no batch gb-nope" in missing.output
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("OCR_ASSETS_GEMINI__BASE_URL", "https://generativelanguage.googleapis.com")
    nokey = invoke("submit", "--batch")
    assert nokey.exit_code == 1 and "GEMINI_API_KEY" in nokey.output and "Traceback" not in nokey.output


def test_submit_without_a_key_for_the_real_api_fails_before_claiming_anything(tmp_path: Path) -> None:
    write_book(tmp_path, "ny:alpha:1900", images=[1], allow=[1])
    config = tmp_path / "ocr_assets.yaml"
    config.write_text(yaml.safe_dump({
        "paths": {"images_root": "images", "allow_list_root": "allow_list", "output_root": "output",
                  "database": "state/store.duckdb"},
        "prompt": {"registry_dir": str(REPO_ROOT / "prompts")},
    }))  # no gemini.base_url: the real API, which needs $GEMINI_API_KEY (the conftest unsets it)
    result = runner.invoke(app, ["submit", "--batch", "--config", str(config)])
    assert result.exit_code == 1 and "GEMINI_API_KEY is not set" in result.stderr
    pipeline = Pipeline(load_settings(config))
    assert pipeline.store.batches() == [] and pipeline.store.records(status=RecordStatus.RUNNING) == []


# -- exit statuses, option checks and failed API calls ---------------------------------------------


def test_run_exits_1_with_the_counts_and_the_failures_hint_when_a_record_ends_fatal(cli):
    invoke, pipeline, _ = cli
    assert invoke("plan").exit_code == 0
    (Path(pipeline.settings.paths.images_root) / "ny" / "alpha" / "1900" / "2.jpg").unlink()  # after planning
    result = invoke("run", "--engine", "gemini-realtime", "--no-plan")
    assert result.exit_code == 1, result.output
    assert "2 selected records failed (1 fatal, 1 blocked" in result.stderr
    assert "ocr-assets failures" in result.stderr
    again = invoke("run", "--engine", "gemini-realtime", "--no-plan")  # nothing left to run: still not all SUCCESS
    assert again.exit_code == 1 and "every selected record is terminal" in again.stdout
    only_ok = invoke("run", "--engine", "gemini-realtime", "--no-plan", "--book", "ca:beta:1910")
    assert only_ok.exit_code == 0, only_ok.output  # every selected record SUCCESS


def test_a_book_not_in_the_plan_and_a_negative_limit_are_usage_errors(cli):
    invoke, pipeline, _ = cli
    unknown = invoke("run", "--engine", "gemini-realtime", "--book", "not-a-key")
    assert unknown.exit_code == 2
    assert "not in the plan: not-a-key" in unknown.stderr and "ocr-assets status" in unknown.stderr
    for command in (["run", "--engine", "gemini-realtime"], ["submit", "--batch"], ["local", "run"]):
        negative = invoke(*command, "--limit", "-5")
        assert negative.exit_code == 2 and "--limit" in negative.output, command
    assert {r.status for r in pipeline.store.records()} == {RecordStatus.PENDING}  # nothing ran


@pytest.mark.parametrize("root", ["images_root", "allow_list_root"])
def test_a_missing_corpus_root_is_a_configuration_error_naming_the_path(cli, monkeypatch, tmp_path: Path, root: str):
    invoke, _, _ = cli
    monkeypatch.setenv(f"OCR_ASSETS_PATHS__{root.upper()}", str(tmp_path / "nowhere"))
    for command in (["plan"], ["run", "--engine", "gemini-realtime"]):
        result = invoke(*command)
        assert result.exit_code == 2, (command, result.output)
        assert f"paths.{root} {tmp_path / 'nowhere'} does not exist" in result.stderr


def test_run_prints_the_plan_report_lines_not_only_their_count(cli, tmp_path: Path):
    invoke, _, _ = cli
    (tmp_path / "allow_list" / "ny" / "alpha" / "1900" / "2.json").write_text("{not json")
    result = invoke("run", "--engine", "gemini-realtime", "--limit", "1")
    assert "1 report entries" in result.stdout
    assert "allow-list file is not valid JSON" in result.stdout and "2.json" in result.stdout


def test_batch_cancel_whose_api_call_fails_is_one_line_and_changes_nothing(cli):
    invoke, pipeline, server = cli
    batch_id = invoke("submit", "--batch").stdout.strip()
    server.state.update_config({"faults": {"endpoint_503": 1.0, "endpoint_routes": ["batches.cancel"]}})
    result = invoke("batch-cancel", batch_id)
    assert result.exit_code == 1, result.output
    assert "error:" in result.stderr and "unchanged" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert pipeline.store.get_batch(batch_id).state == BatchState.PENDING
    assert {r.status for r in pipeline.store.records(status=RecordStatus.RUNNING)} == {RecordStatus.RUNNING}


def test_every_gemini_command_turns_an_unreachable_api_into_one_line_and_a_nonzero_exit(cli, monkeypatch):
    invoke, pipeline, _ = cli
    batch_id = invoke("submit", "--batch", "--limit", "1").stdout.strip()
    before = {r.key: (r.status, r.attempts) for r in pipeline.store.records()}
    monkeypatch.setenv("OCR_ASSETS_GEMINI__BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    for command in (["batch-cancel", batch_id], ["batch-status", batch_id], ["batch-fetch", batch_id],
                    ["submit", "--batch", "--no-plan"], ["run", "--engine", "gemini-realtime", "--no-plan"],
                    ["run", "--batch", "--no-plan", "--poll-interval", "0.01"]):
        result = invoke(*command)
        assert result.exit_code == 1, (command, result.output)
        assert "Traceback" not in result.output and "error" in result.stderr, command
    after = {r.key: (r.status, r.attempts) for r in pipeline.store.records()}
    assert after == before


def test_a_realtime_404_stops_the_run_naming_model_and_url_and_costs_no_attempt(cli, monkeypatch):
    invoke, pipeline, server = cli
    wrong = f"{server.url}/not-the-api"  # the emulator answers 404 there, as a wrong base URL does
    monkeypatch.setenv("OCR_ASSETS_GEMINI__BASE_URL", wrong)
    result = invoke("run", "--engine", "gemini-realtime")
    assert result.exit_code == 2, result.output
    assert "'gemini-2.5-flash' not found at" in result.stderr and wrong in result.stderr and "404" in result.stderr
    records = pipeline.store.records()
    assert {r.status for r in records} == {RecordStatus.PENDING} and {r.attempts for r in records} == {0}
    assert pipeline.store.failures(records[0].key) == []


def test_submit_exits_1_naming_the_records_that_failed_before_submit(cli):
    invoke, pipeline, _ = cli
    assert invoke("plan").exit_code == 0
    (Path(pipeline.settings.paths.images_root) / "ny" / "alpha" / "1900" / "1.jpg").unlink()  # after planning
    result = invoke("submit", "--batch", "--no-plan")
    assert result.exit_code == 1, result.output
    assert "1 records failed before submit" in result.stderr and "ocr-assets failures" in result.stderr
    [batch_id] = result.stdout.split()  # the rest went out: its id is still printed
    assert pipeline.store.get_batch(batch_id).record_count == 1
    assert pipeline.store.get("ny:alpha:1900:1").status == RecordStatus.FATAL_FAILURE


def test_batch_fetch_exits_1_when_the_batch_leaves_records_fatal(cli):
    invoke, pipeline, server = cli
    server.state.update_config({"faults": {"safety": 1.0}})  # every answer blocked: FATAL safety_block
    batch_id = invoke("submit", "--batch").stdout.strip()
    _wait_done(server)
    fetched = invoke("batch-fetch", batch_id)
    assert fetched.exit_code == 1, fetched.output
    assert "2 fatal, 3 blocked" in fetched.stderr and "ocr-assets failures" in fetched.stderr
    assert pipeline.store.get("ny:alpha:1900:1").status == RecordStatus.FATAL_FAILURE
