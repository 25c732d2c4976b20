"""`ocr-assets local run`: through the record store, with progress, exports, failures.csv and resume."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from ocr_assets.cli import app, common
from ocr_assets.core import PageSuccess
from ocr_assets.engines.local.batching import SafeRange
from ocr_assets.engines.local.runner import LocalInference
from ocr_assets.pipeline import open_store
from ocr_assets.schema import Course, OcrPageResult, PageInfo, RawOcr, TextBlock
from ocr_assets.settings import load_settings
from tests.fixtures.corpus import REPO_ROOT, write_book

runner = CliRunner()


class ScriptedBackend:
    """Answers each page with one course; remembers every key it was asked for."""

    model = "scripted"
    safe_range = SafeRange(1, 8)
    per_item_bytes = 2**20

    def __init__(self, seen: list[tuple[str, dict | None]]):
        self.seen = seen

    def run_batch(self, pages):
        outcomes = []
        for page in pages:
            request = page.request
            self.seen.append((request.key, request.previous_context))
            result = OcrPageResult(
                raw_ocr=RawOcr(text_blocks=[TextBlock(block_id=0, position=[10, 10, 90, 30], text=f"Page {request.page}")]),
                page_info=PageInfo(page_number=request.page),
                courses=[Course(course_name=f"Course {request.page}", department="Greek")],
            )
            outcomes.append(PageSuccess(key=request.key, result=result, model=self.model, latency_s=0.01))
        return outcomes


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common.console, "width", 250)


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_book(tmp_path, "MA:alpha:1901", images=[1, 2, 3], allow=[1, 2, 3])
    write_book(tmp_path, "MA:beta:1902", images=[1, 2], allow=[1, 2])
    # Its header reads (the plan's cheap check passes) but its pixels do not: fatal at inference.
    noise = io.BytesIO()
    Image.frombytes("L", (64, 64), bytes(range(256)) * 16).save(noise, format="JPEG")
    (tmp_path / "images" / "MA" / "beta" / "1902" / "1.jpg").write_bytes(noise.getvalue()[:len(noise.getvalue()) // 2])
    config = tmp_path / "ocr_assets.yaml"
    config.write_text(yaml.safe_dump({
        "paths": {"images_root": str(tmp_path / "images"), "allow_list_root": str(tmp_path / "allow_list"),
                  "output_root": str(tmp_path / "output"), "database": str(tmp_path / "state" / "db.duckdb")},
        "prompt": {"registry_dir": str(REPO_ROOT / "prompts")},
        "local": {"device": "cpu"},
    }))
    seen: list[tuple[str, dict | None]] = []
    monkeypatch.setattr(LocalInference, "_load", lambda self, device: ScriptedBackend(seen))
    return tmp_path, config, seen


def _statuses(config: Path) -> dict[str, str]:
    return {r.key: str(r.status) for r in open_store(load_settings(config)).records()}


def test_local_run_ocrs_through_the_store_writes_exports_and_failures(corpus) -> None:
    root, config, seen = corpus
    result = runner.invoke(app, ["local", "run", "--config", str(config), "--formats", "json,txt,csv,alto"])
    assert result.exit_code == 1, result.output  # a page ended FATAL (and one BLOCKED)
    assert "2 selected records failed (1 fatal, 1 blocked" in result.output and "ocr-assets failures" in result.output
    assert "4/4" in result.output  # the blocked page never runs
    assert _statuses(config) == {
        "MA:alpha:1901:1": "SUCCESS", "MA:alpha:1901:2": "SUCCESS", "MA:alpha:1901:3": "SUCCESS",
        "MA:beta:1902:1": "FATAL_FAILURE", "MA:beta:1902:2": "BLOCKED",
    }
    assert [key for key, _ in seen] == ["MA:alpha:1901:1", "MA:alpha:1901:2", "MA:alpha:1901:3"]
    contexts = dict(seen)
    assert contexts["MA:alpha:1901:1"] is None
    assert contexts["MA:alpha:1901:2"]["last_courses"] == [{"course_name": "Course 1", "department": "Greek"}]
    out = root / "output" / "MA" / "alpha" / "1901"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{page}.{ext}" for page in (1, 2, 3) for ext in ("json", "txt", "csv", "alto.xml"))
    failures = list(csv.DictReader((root / "output" / "failures.csv").open()))
    assert [(row["key"], row["error_type"], row["error_class"]) for row in failures] == [
        ("MA:beta:1902:1", "image_unreadable", "fatal")]
    assert "image_unreadable" in result.output


def test_a_second_run_resumes_from_the_store_and_skips_success_pages(corpus) -> None:
    root, config, seen = corpus
    first = runner.invoke(app, ["local", "run", "--config", str(config), "--limit", "2"])
    assert first.exit_code == 1, first.output  # MA:beta:1902:1 ran and failed
    statuses = _statuses(config)
    assert sorted(statuses.values()) == ["BLOCKED", "FATAL_FAILURE", "PENDING", "PENDING", "SUCCESS"]
    second = runner.invoke(app, ["local", "run", "--config", str(config)])
    assert second.exit_code == 1, second.output
    keys = [key for key, _ in seen]
    assert len(keys) == len(set(keys)) == 3  # nothing answered twice
    third = runner.invoke(app, ["local", "run", "--config", str(config)])
    assert "nothing to run" in third.output
    assert third.exit_code == 1  # still not every record SUCCESS


def test_local_run_uses_the_local_engine_its_options_name_whatever_the_settings_engine(corpus) -> None:
    _root, config, seen = corpus
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "engine": "gemini-batch"}))  # no key: Gemini would fail at once
    result = runner.invoke(app, ["local", "run", "--config", str(config), "--engine", "tesseract", "--book",
                                 "MA:alpha:1901"])
    assert result.exit_code == 0, result.output
    store = open_store(load_settings(config))
    assert {b.engine for b in store.batches()} == {"local-tesseract"}  # the spec's label, not the file's engine
    assert {r.engine for r in store.records(book="MA:alpha:1901")} == {"local-tesseract"}
    assert len(seen) == 3


def test_dry_run_times_one_page_and_changes_nothing(corpus) -> None:
    _root, config, seen = corpus
    result = runner.invoke(app, ["local", "run", "--config", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "5 pages on cpu with rapidocr" in result.output
    assert len(seen) == 1
    assert set(_statuses(config).values()) == {"PENDING"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--formats", "json,pdf"], "unknown format"),
        (["--device", "cuda:9", "--engine", "transformers", "--model-dir", "/nowhere"], "does not exist"),
        (["--batch-size", "lots"], "batch_size"),
    ],
)
def test_bad_options_are_one_red_line(corpus, args: list[str], message: str) -> None:
    _root, config, _seen = corpus
    result = runner.invoke(app, ["local", "run", "--config", str(config), *args])
    assert result.exit_code == 1
    assert message in result.output
