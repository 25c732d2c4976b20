"""Braintrust tracking through the real SDK, pointed at a local capture endpoint on 127.0.0.1."""

import json
import logging
import socket
from pathlib import Path

import pytest

from ocr_assets.core import TokenUsage
from ocr_assets.outputs import file_sha256
from ocr_assets.pipeline import Pipeline
from ocr_assets.plan import build_plan
from ocr_assets.pricing import cost
from ocr_assets.tracking import (
    DEFAULT_PROJECT,
    BraintrustTracker,
    InferenceEvent,
    NullTracker,
    make_tracker,
    span_fields,
)
from tests.fixtures.braintrust_capture import braintrust_capture
from tests.fixtures.corpus import settings_for, write_book
from tests.fixtures.ops_scenario import ScriptedEngine, page_result

KEY = "sk-test-0123456789abcdef-secret"
BOOK = "CA:alpha:1900"


@pytest.fixture(autouse=True)
def _sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRAINTRUST_API_URL", "BRAINTRUST_APP_URL", "BRAINTRUST_ORG_NAME", "BRAINTRUST_PROJECT_NAME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def capture(monkeypatch: pytest.MonkeyPatch):
    with braintrust_capture() as cap:
        monkeypatch.setenv("BRAINTRUST_APP_URL", cap.url)
        yield cap


def _run(tmp_path: Path, tracker) -> tuple[Pipeline, ScriptedEngine, str]:
    """One wave through the real pipeline: page 1 succeeds, page 3 (its own chain) fails fatally."""
    write_book(tmp_path, BOOK, images=range(1, 4), allow=[1, 3])
    settings = settings_for(tmp_path)
    pipeline = Pipeline(settings, tracker=tracker)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    engine = ScriptedEngine(answers={f"{BOOK}:3": [("fatal", "safety", "blocked [HARM_CATEGORY_X]")]})
    done = pipeline.run_wave(engine, pipeline.store.runnable())
    assert done is not None
    return pipeline, engine, done[0]


def test_without_an_api_key_tracking_is_off_said_once_at_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ocr_assets.tracking"):
        tracker = make_tracker("anything")
    assert isinstance(tracker, NullTracker)
    lines = [r for r in caplog.records if r.name == "ocr_assets.tracking"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert "BRAINTRUST_API_KEY not set" in lines[0].getMessage()


def test_with_an_api_key_the_tracker_is_braintrust_on_the_configured_project(monkeypatch) -> None:
    monkeypatch.setenv("BRAINTRUST_API_KEY", KEY)
    assert make_tracker().project == DEFAULT_PROJECT
    monkeypatch.setenv("BRAINTRUST_PROJECT_NAME", "catalogs")
    tracker = make_tracker()
    assert isinstance(tracker, BraintrustTracker) and tracker.project == "catalogs"
    assert make_tracker("explicit").project == "explicit"
    assert KEY not in repr(tracker)


def test_one_span_per_inference_carries_input_output_metadata_metrics_and_errors(
    tmp_path: Path, capture, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = BraintrustTracker("ocr-test", api_key=KEY)
    with caplog.at_level(logging.WARNING):
        pipeline, engine, batch_id = _run(tmp_path, tracker)
    assert not tracker.disabled and not caplog.records
    assert capture.paths()[:2] == ["/api/apikey/login", "/v1/project"]
    rows = {row["metadata"]["key"]: row for row in capture.rows()}
    assert set(rows) == {f"{BOOK}:1", f"{BOOK}:3"}
    settings = pipeline.settings
    sent = {r.key: r for r in engine.seen}
    template_hash = pipeline.registry.template_hash("page_ocr", "v1.1")
    usage = TokenUsage(prompt_tokens=1200, output_tokens=300, cached_tokens=100)
    billed = cost(usage, settings.model, "realtime")

    for page, success in ((1, True), (3, False)):
        key = f"{BOOK}:{page}"
        row, request = rows[key], sent[key]
        assert row["project_id"] == "project-id"
        assert row["span_attributes"]["name"] == f"page_ocr {key}" and row["span_attributes"]["type"] == "llm"
        assert row["input"] == {
            "key": key,
            "prompt": {"name": "page_ocr", "version": "v1.1", "vars_hash": request.prompt_identity.vars_hash,
                       "template_hash": template_hash},
            "rendered_prompt": request.prompt,
            "previous_context": None,
            "generation_config": {**settings.model.generation.model_dump(), "context_source": "upstream_output"},
        }
        assert row["metadata"] == {
            "key": key, "batch_id": batch_id, "engine": "scripted", "model": "scripted-model", "book": BOOK,
            "state": "CA", "school": "alpha", "year": 1900, "page": page, "success": success,
            "prompt_version": "v1.1",
        }
        metrics = dict(row["metrics"])
        start, end = metrics.pop("start"), metrics.pop("end")
        latency = 1.25 if success else 0.5
        assert metrics == {"prompt_tokens": 1200, "completion_tokens": 300, "prompt_cached_tokens": 100,
                           "tokens": 1500, "cost_usd": billed, "attempt": 1, "latency_s": latency}
        assert end - start == pytest.approx(latency)
        assert row["tags"] == ["v1.1"]

    assert rows[f"{BOOK}:1"]["output"] == page_result(1).model_dump(mode="json")
    assert "error" not in rows[f"{BOOK}:1"]
    failed = rows[f"{BOOK}:3"]
    assert failed.get("output") is None
    assert failed["error"] == {"class": "fatal", "type": "safety", "message": "blocked [HARM_CATEGORY_X]",
                               "traceback": "Traceback: boom", "raw_response": f"raw answer for {BOOK}:3"}


def test_the_inference_log_holds_the_same_fields_as_the_span(tmp_path: Path) -> None:
    class Recording(NullTracker):
        enabled = True

        def __init__(self) -> None:
            self.events: list[InferenceEvent] = []

        def log_inferences(self, events: list[InferenceEvent]) -> None:
            self.events.extend(events)

    tracker = Recording()
    pipeline, _, _ = _run(tmp_path, tracker)
    rows = {r["key"]: r for r in pipeline.store.query("SELECT * FROM inference_log")}
    columns = set(next(iter(rows.values())))
    assert set(InferenceEvent.model_fields) - {"output"} <= columns
    assert len(tracker.events) == 2
    for event in tracker.events:
        row = rows[event.key]
        # The output is logged by reference: the file written, whose bytes the sha256 names.
        if event.success:
            assert row["output_json"] is None
            assert file_sha256(Path(row["output_path"])) == row["output_sha256"]
            assert json.loads(Path(row["output_path"]).read_text(encoding="utf-8")) == event.output
        else:
            assert row["output_path"] is None and row["output_sha256"] is None and event.output is None
        for name, value in event.model_dump(exclude={"output"}).items():
            stored = row[name]
            if name in ("previous_context", "generation_config"):
                stored = json.loads(stored) if stored is not None else None
            if name == "error_message" and value is not None:
                assert stored.endswith(value)  # the store may prefix "retries exhausted after N attempts: "
                continue
            assert stored == value, name
        # and the span is built from exactly these values
        fields = span_fields(event)
        assert fields["input"]["rendered_prompt"] == row["rendered_prompt"]
        assert fields["metrics"]["completion_tokens"] == row["output_tokens"]


def test_an_unreachable_endpoint_never_fails_the_run_and_warns_once_without_the_key(
    tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("BRAINTRUST_APP_URL", f"http://127.0.0.1:{port}")
    tracker = BraintrustTracker("ocr-test", api_key=KEY)
    with caplog.at_level(logging.INFO):
        pipeline, _, _ = _run(tmp_path, tracker)
        tracker.log_inferences([InferenceEvent(key=f"{BOOK}:9", book=BOOK, page=9, engine="e", model="m",
                                               success=True)])
        tracker.flush()
    assert tracker.disabled
    assert {str(r.status) for r in pipeline.store.records()} == {"SUCCESS", "FATAL_FAILURE"}
    assert len(pipeline.store.query("SELECT * FROM inference_log")) == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "ocr_assets.tracking"]
    assert len(warnings) == 1 and "Braintrust tracking is off" in warnings[0].getMessage()
    out = capsys.readouterr()
    assert KEY not in caplog.text and KEY not in out.out and KEY not in out.err


def test_a_rejected_key_turns_tracking_off_without_showing_the_key(
    tmp_path: Path, capture, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    capture.login_status = 401
    tracker = BraintrustTracker("ocr-test", api_key=KEY)
    with caplog.at_level(logging.INFO):
        pipeline, _, _ = _run(tmp_path, tracker)
    assert tracker.disabled and capture.rows() == []
    assert len(pipeline.store.query("SELECT * FROM inference_log")) == 2
    assert "login failed" in caplog.text
    out = capsys.readouterr()
    assert KEY not in caplog.text and KEY not in out.out and KEY not in out.err


def test_evaluation_rows_are_logged_as_one_experiment(capture) -> None:
    tracker = BraintrustTracker("ocr-test", api_key=KEY)
    row = {"input": {"key": "CA:a:1900:1"}, "output": {"courses": []}, "expected": {"courses": []},
           "scores": {"char_accuracy": 0.9, "course_f1": 1.0, "schema_valid": 1.0},
           "metrics": {"prompt_tokens": 10, "cost_usd": 0.001}, "metadata": {"page": 1}}
    assert tracker.log_experiment("page_ocr v1 run-1", [row], metadata={"prompt_version": "v1"}) == "page_ocr v1 run-1"
    registered = [json.loads(b) for m, p, b, _ in capture.requests if p == "/v1/experiment"]
    assert registered[0]["name"] == "page_ocr v1 run-1" and registered[0]["metadata"] == {"prompt_version": "v1"}
    [logged] = capture.rows()
    assert logged["experiment_id"] == "experiment-page_ocr v1 run-1"
    assert (logged["input"], logged["output"], logged["expected"]) == (row["input"], row["output"], row["expected"])
    assert logged["scores"] == row["scores"] and logged["metrics"]["prompt_tokens"] == 10


def test_a_span_names_the_ray_worker_that_ran_the_page_and_only_then() -> None:
    event = dict(key=f"{BOOK}:1", book=BOOK, page=1, engine="local", model="m", success=True)
    assert span_fields(InferenceEvent(**event, worker="gpu-7/node-a"))["metadata"]["worker"] == "gpu-7/node-a"
    assert "worker" not in span_fields(InferenceEvent(**event))["metadata"]
