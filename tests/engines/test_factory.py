"""`engines.factory`: the one driver runs the engine its `EngineSpec` names and reports one `Progress` type."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ocr_assets.cli import app
from ocr_assets.core import EngineUnavailable, resolve_engine
from ocr_assets.engines.factory import drive, make_sync_engine
from ocr_assets.engines.gemini.context import LocalOcrContext
from ocr_assets.engines.gemini.realtime import GeminiRealtimeEngine
from ocr_assets.operations import reconstruct_prompt
from ocr_assets.pipeline import Pipeline, Progress
from ocr_assets.plan import build_plan
from ocr_assets.settings import Settings
from tests.engines.gemini.test_gemini_context import fake_recognise
from tests.fixtures.corpus import REPO_ROOT, settings_env, settings_for, write_book

BOOKS = {"ny:alpha:1900": [1, 2], "ca:beta:1910": [1]}


def planned(root: Path, **settings: object) -> Pipeline:
    for book, pages in BOOKS.items():
        write_book(root, book, images=pages, allow=pages)
    config = Settings.model_validate({
        "paths": {"images_root": root / "images", "allow_list_root": root / "allow_list",
                  "output_root": root / "output", "database": root / "state" / "store.duckdb"},
        "prompt": {"registry_dir": REPO_ROOT / "prompts"},
        "execution": {"poll_interval_seconds": 0.05}, **settings,
    })
    pipeline = Pipeline(config)
    build_plan(pipeline.store, config.paths.images_root, config.paths.allow_list_root)
    return pipeline


def test_drive_runs_the_spec_it_is_given_not_the_settings_engine(tmp_path: Path) -> None:
    pipeline = planned(tmp_path, engine="gemini-batch")  # no key anywhere: a Gemini engine could not start
    progress: list[Progress] = []
    summary = drive(pipeline, resolve_engine(pipeline.settings, "local"), on_progress=progress.append)
    assert summary.succeeded == 3
    assert {b.engine for b in pipeline.store.batches()} == {"local-rapidocr"}
    assert progress and all(type(p) is Progress for p in progress)
    assert (progress[-1].done, progress[-1].total) == (3, 3)


def test_drive_without_a_spec_resolves_the_settings_engine(tmp_path: Path) -> None:
    pipeline = planned(tmp_path, engine="gemini-batch")
    with pytest.raises(EngineUnavailable, match="GEMINI_API_KEY"):  # batch, from the settings: needs a key
        drive(pipeline)
    assert pipeline.store.status_counts() == {"PENDING": 3}  # stopped before any record was claimed


def test_an_engine_other_than_the_spec_names_is_refused_before_any_claim(tmp_path: Path) -> None:
    pipeline = planned(tmp_path)
    spec = resolve_engine(pipeline.settings, "local", engine="tesseract")
    other = make_sync_engine(pipeline.settings, resolve_engine(pipeline.settings, "local"))  # rapidocr, not loaded
    with pytest.raises(ValueError, match="'local-rapidocr' but the run's engine is 'local-tesseract'"):
        drive(pipeline, spec, sync_engine=other)
    assert pipeline.store.status_counts() == {"PENDING": 3}


def test_the_batch_loop_reports_the_same_progress_type_with_its_batch_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gemini_emulator  # noqa: F811
) -> None:
    server = gemini_emulator(batch_latency_s=0.1)
    monkeypatch.setenv("GEMINI_API_KEY", "emulator-key")
    pipeline = planned(tmp_path, gemini={"base_url": server.url})
    progress: list[Progress] = []
    spec = resolve_engine(pipeline.settings, "gemini-batch")  # the settings say local
    summary = drive(pipeline, spec, on_progress=progress.append)
    assert summary.succeeded == 3 and {b.engine for b in pipeline.store.batches()} == {"gemini-batch"}
    assert all(type(p) is Progress for p in progress)
    last = progress[-1]
    assert (last.done, last.total, last.active_batches) == (3, 3, 0)
    assert last.submitted_batches == last.ingested_batches == 2  # page 2 waits for page 1: two waves
    assert [p.tick for p in progress] == list(range(1, len(progress) + 1))
    assert all(a.done <= b.done for a, b in zip(progress, progress[1:], strict=False))


def test_a_realtime_spec_builds_the_realtime_engine_with_the_settings_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "emulator-key")
    settings = Settings(engine="local")
    engine = make_sync_engine(settings, resolve_engine(settings, "gemini-realtime"))
    assert isinstance(engine, GeminiRealtimeEngine) and engine.name == "gemini-realtime"


def test_a_local_model_that_cannot_load_stops_drive_before_any_record_is_claimed(tmp_path: Path) -> None:
    pipeline = planned(tmp_path)
    spec = resolve_engine(pipeline.settings, "local", engine="transformers", model_dir=tmp_path / "no-model")
    with pytest.raises(EngineUnavailable, match="no model at"):  # one clear line in `run`, not a traceback
        drive(pipeline, spec)
    assert pipeline.store.status_counts() == {"PENDING": 3}


def _chain_of_three(root: Path, server_url: str, monkeypatch: pytest.MonkeyPatch, **settings: object) -> Pipeline:
    """One book of pages 1 → 2 → 3, planned, with settings (and a key) pointing at the emulator."""
    write_book(root, "ny:alpha:1900", images=[1, 2, 3], allow=[1, 2, 3])
    monkeypatch.setenv("GEMINI_API_KEY", "emulator-key")
    pipeline = Pipeline(settings_for(root, gemini__base_url=server_url, **settings))
    build_plan(pipeline.store, pipeline.settings.paths.images_root, pipeline.settings.paths.allow_list_root)
    return pipeline


@pytest.mark.parametrize("kind", ["gemini-realtime", "gemini-flex"])
def test_a_realtime_or_flex_run_takes_its_context_from_the_configured_source_like_the_batch_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gemini_emulator, kind: str  # noqa: F811
) -> None:
    server = gemini_emulator()
    pipeline = _chain_of_three(tmp_path, server.url, monkeypatch, gemini__context_source="upstream_image",
                               prompt__version="v1.2")
    summary = drive(pipeline, resolve_engine(pipeline.settings, kind))
    assert summary.succeeded == 3 and summary.waves == 1  # no page waited for its upstream's answer
    sent = {e.key: e for e in server.state.request_log}
    assert sent["ny:alpha:1900:1"].images == 1
    assert sent["ny:alpha:1900:2"].images == sent["ny:alpha:1900:3"].images == 2  # the upstream image beside it
    assert "The second image is the previous page" in sent["ny:alpha:1900:3"].prompt
    # `prompt show` rebuilds it from the source the record ran with, whatever the settings say today.
    today = pipeline.settings.model_copy(update={"gemini": pipeline.settings.gemini.model_copy(
        update={"context_source": "upstream_output"})})
    rebuilt = reconstruct_prompt(today, pipeline.store, pipeline.registry, "ny:alpha:1900:3")
    assert rebuilt.ok and rebuilt.vars_hash_matches and rebuilt.text == sent["ny:alpha:1900:3"].prompt


def test_a_realtime_run_with_local_ocr_context_is_rebuilt_by_prompt_show_exactly_as_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gemini_emulator  # noqa: F811
) -> None:
    server = gemini_emulator()
    pipeline = _chain_of_three(tmp_path, server.url, monkeypatch, gemini__context_source="local_ocr")
    calls: list[list[str]] = []
    provider = LocalOcrContext(pipeline.settings, pipeline.store, recognise=fake_recognise(calls))
    summary = drive(pipeline, resolve_engine(pipeline.settings, "gemini-realtime"), provider=provider)
    assert summary.succeeded == 3 and summary.waves == 1
    sent = {e.key: e.prompt for e in server.state.request_log}
    assert "Context from the previous page (local_ocr)" in sent["ny:alpha:1900:2"]

    for name, value in settings_env(tmp_path, gemini__base_url=server.url).items():  # context_source: default
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["prompt", "show", "ny:alpha:1900:2"])
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip("\n") == sent["ny:alpha:1900:2"].rstrip("\n")
    assert "matches the stored hash" in result.stderr and len(calls) == 1  # from the cache: no second pass


def test_a_realtime_run_without_a_context_source_waits_for_each_upstream_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gemini_emulator  # noqa: F811
) -> None:
    server = gemini_emulator()
    pipeline = _chain_of_three(tmp_path, server.url, monkeypatch)
    summary = drive(pipeline, resolve_engine(pipeline.settings, "gemini-realtime"))
    assert summary.succeeded == 3 and summary.waves == 3  # each page's context is its upstream's output
    assert all(e.images == 1 for e in server.state.request_log)


def test_a_local_ocr_context_without_the_local_engine_installed_is_one_clear_error_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gemini_emulator  # noqa: F811
) -> None:
    import sys

    server = gemini_emulator()
    pipeline = _chain_of_three(tmp_path, server.url, monkeypatch, gemini__context_source="local_ocr")
    for name, value in settings_env(tmp_path, gemini__base_url=server.url, gemini__context_source="local_ocr").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(sys.modules, "ocr_assets.engines.local", None)  # an install without the local engine
    result = CliRunner().invoke(app, ["run", "--engine", "gemini-realtime", "--no-plan"])
    assert result.exit_code == 1, result.output
    assert "context_source=local_ocr needs the local engine" in result.stderr
    assert "Traceback" not in result.output
    assert pipeline.store.status_counts() == {"PENDING": 3}  # nothing claimed, nothing sent
    assert not any(e.key.endswith(":2") for e in server.state.request_log)
