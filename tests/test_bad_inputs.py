"""Hostile inputs, end to end: each gives a clear error, and no record or output is lost or corrupted.

One corpus holds every hostile case side by side with healthy pages, and runs once per engine:
through the Gemini batch path against the emulator (whose answerer returns the hostile model answers)
and through the local engine. The parametrize tables then check each case's record, chain, failure log
and output files, and one test checks the whole store and output tree afterwards.

Already covered elsewhere, not repeated here:
- plan-level bad entries (non-numeric and duplicate page names, missing image, invalid or binary
  allow-list JSON, allow-list symlink escaping the root, unreadable files, ':' and non-numeric folder
  names, non-UTF-8 names, book-folder symlinks escaping the root, missing roots): tests/test_plan.py;
- invalid YAML settings naming the field, secrets in the file, unreadable or missing settings files:
  tests/test_settings.py;
- `load_image` on empty / non-image bytes: tests/engines/gemini/test_gemini_requests.py;
- result-file integrity (unknown, duplicate, missing, malformed lines) and per-response classification:
  tests/engines/gemini/test_gemini_results.py, tests/engines/gemini/test_gemini_classify.py.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from ocr_assets.engines.emulator import Answer, EchoAnswerer, EmulatorConfig, EmulatorServer, FaultConfig
from ocr_assets.engines.emulator.answers import AnswerRequest, estimate_output_tokens, parse_page_identity
from ocr_assets.engines.gemini.classify import RAW_RESPONSE_LIMIT, classify_response
from ocr_assets.outputs import file_sha256, output_path, read_output
from ocr_assets.pipeline import Pipeline
from ocr_assets.plan import PlanResult, build_plan
from ocr_assets.schema import OutputParseError, parse_page_result
from ocr_assets.settings import SettingsError, load_settings
from ocr_assets.store import ACTIVE_BATCH_STATES, RecordRow
from tests.fixtures.corpus import settings_for, tiny_jpeg, write_book

# -- hostile images ------------------------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width`×`height` (a decompression bomb's header) over a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + data + chunk(b"IEND", b"")


def _encoded(fmt: str, size: tuple[int, int] = (8, 8), noise: bool = False) -> bytes:
    image = Image.effect_noise(size, 80).convert("RGB") if noise else Image.new("RGB", size, "white")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    data = _encoded("JPEG", (256, 256), noise=True)
    return data[: int(len(data) * 0.6)]


def _write(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _folder(path: Path) -> None:
    path.mkdir()


def _dangling_link(path: Path) -> None:
    os.symlink(path.with_name("999.jpg"), path)  # inside the root, to nothing


def _self_link(path: Path) -> None:
    os.symlink(path, path)  # a symlink loop


@dataclass(frozen=True)
class ImageCase:
    id: str
    make: Callable[[Path], None]  # writes page 2's image at the given path
    gemini: str  # expected status through the Gemini batch path
    local: str  # expected status through the local engine
    after_plan: bool = False  # `make` runs after planning (the file changes under a planned record)


FATAL, SUCCESS = "FATAL_FAILURE", "SUCCESS"
# The plan checks each new image cheaply (size, header, dimensions): what fails there is reported and
# left out of the plan (its successor starts a new chain), never run; the rest is caught at inference.
REPORTED = "reported by the plan"
IMAGE_CASES = [
    ImageCase("corrupt bytes", _write(b"\x00\x01not an image\xff" * 64), REPORTED, REPORTED),
    ImageCase("zero bytes", _write(b""), REPORTED, REPORTED),
    ImageCase("decompression bomb header", _write(_png_header(30_000, 30_000)), REPORTED, REPORTED),
    ImageCase("text named jpg", _write(b"page 2 was not scanned\n"), REPORTED, REPORTED),
    ImageCase("folder named jpg", _folder, REPORTED, REPORTED),
    ImageCase("dangling symlink", _dangling_link, REPORTED, REPORTED),
    ImageCase("symlink loop", _self_link, REPORTED, REPORTED),
    ImageCase("deleted after planning", lambda path: path.unlink(), FATAL, FATAL, after_plan=True),
    # The Gemini path sends a decodable header's bytes as they are and the API judges them (a 400 about
    # the image is classified fatal image_unreadable, see test_gemini_classify); the local engine decodes.
    ImageCase("truncated jpeg", _write(_truncated_jpeg()), SUCCESS, FATAL),
    # The content decides the format, not the extension.
    ImageCase("png bytes named jpg", _write(_encoded("PNG")), SUCCESS, SUCCESS),
    ImageCase("tiff bytes named jpg", _write(_encoded("TIFF")), SUCCESS, SUCCESS),
]


def _image_book(case: ImageCase) -> str:
    return f"BI:{case.id}:1900"


# -- hostile corpus entries that the plan handles ------------------------------------------------


@dataclass(frozen=True)
class PlanCase:
    id: str
    book: str
    make: Callable[[Path], None]  # gets the corpus root
    reason: str  # part of the plan report's reason
    missing_page: int | None  # the page left out of the plan (its successor starts a new chain)


def _escaping_image_link(root: Path) -> None:
    outside = root.parent / f"{root.name}-outside.jpg"
    outside.write_bytes(tiny_jpeg())
    image = root / "images" / "BP" / "escaping image link" / "1900" / "2.jpg"
    image.unlink()
    os.symlink(outside, image)


def _invalid_allow_list(root: Path) -> None:
    (root / "allow_list" / "BP" / "invalid allow list" / "1900" / "2.json").write_text('{"label": "curric')


def _dots_school(root: Path) -> None:
    write_book(root, "BP:a...b:1900", images=[1], allow=[1])


PLAN_CASES = [
    PlanCase("image symlink escaping the root", "BP:escaping image link:1900", _escaping_image_link,
             "image symlink escapes the root", 2),
    PlanCase("invalid allow-list JSON mid-chain", "BP:invalid allow list:1900", _invalid_allow_list,
             "not valid JSON", 2),
    PlanCase("'...' in a school folder", "BP:a...b:1900", _dots_school, "contains '...'", None),
]

UNICODE_BOOK = "QC:École Saint-Jean d'Arc:1905"

# -- hostile model answers (Gemini path) ---------------------------------------------------------

ANSWER_SCHOOL = "hostile answers"
ANSWER_BOOK = f"BA:{ANSWER_SCHOOL}:1910"


def _enormous() -> str:
    blocks = ",".join(json.dumps({"block_id": i, "text": "lorem ipsum " * 20}) for i in range(12_000))
    return '{"raw_ocr": {"text_blocks": [' + blocks + ']}, "page_info": {"page_number": 1}}'


@dataclass(frozen=True)
class AnswerCase:
    id: str
    page: int  # the hostile page; page + 1 is its downstream page
    text: str
    error_type: str
    raw_part: str  # what the failure log's raw response must contain


ANSWER_CASES = [
    AnswerCase("prose instead of JSON", 1, "I am sorry, but I cannot read this page.", "malformed_json",
               "I am sorry, but I cannot read this page."),
    AnswerCase("a JSON array", 4, "[1, 2, 3]", "schema_violation", "[1, 2, 3]"),
    AnswerCase("the wrong schema", 7, '{"text": "ALGEBRA I", "courses": "none"}', "schema_violation",
               "ALGEBRA I"),
    AnswerCase("nesting too deep to decode", 10, "[" * 5_000 + "]" * 5_000, "malformed_json", "[[[["),
    AnswerCase("an enormous answer", 13, _enormous(), "truncated", "lorem ipsum"),
    AnswerCase("an empty answer", 16, "", "empty_output", '"finishReason"'),
]
FENCED_PAGE = 19  # answered with ```json fences: valid


class HostileAnswerer:
    """Echo answers, except the hostile answer cases (same text on every attempt)."""

    def __init__(self) -> None:
        self.echo = EchoAnswerer()
        self.by_page = {case.page: case.text for case in ANSWER_CASES}

    def __call__(self, request: AnswerRequest) -> Answer:
        answer = self.echo(request)
        identity = parse_page_identity(request.prompt)
        if identity is None or identity.school != ANSWER_SCHOOL:
            return answer
        if identity.page == FENCED_PAGE:
            answer.text = "```json\n" + answer.text + "\n```"
        elif identity.page in self.by_page:
            text = self.by_page[identity.page]
            answer = Answer(text=text, prompt_tokens=answer.prompt_tokens, output_tokens=estimate_output_tokens(text))
        return answer


# -- building and running the scenario -----------------------------------------------------------


def _build_corpus(root: Path, *, answers: bool) -> None:
    for case in IMAGE_CASES:
        write_book(root, _image_book(case), images=[1, 3, 5], allow=[1, 2, 3, 5])
        if not case.after_plan:
            state, school, year = _image_book(case).split(":")
            case.make(root / "images" / state / school / year / "2.jpg")
    for case in PLAN_CASES:
        if case.missing_page is not None:
            write_book(root, case.book, images=[1, 2, 3], allow=[1, 2, 3])
        case.make(root)
    write_book(root, UNICODE_BOOK, images=[1, 2], allow=[1, 2])
    if answers:
        pages = sorted({p for c in ANSWER_CASES for p in (c.page, c.page + 1)} | {FENCED_PAGE, FENCED_PAGE + 1})
        write_book(root, ANSWER_BOOK, images=pages, allow=pages)


@dataclass
class Scenario:
    pipeline: Pipeline
    plan: PlanResult
    records: dict[str, RecordRow]
    requested: set[str]  # keys that reached the model (emulator request log); empty for the local engine

    def record(self, key: str) -> RecordRow:
        return self.records[key]


def _plan(pipeline: Pipeline, root: Path) -> PlanResult:
    """Plan the corpus; the `after_plan` cases are planned with a good image that then changes."""
    after = [root / "images" / Path(*_image_book(c).split(":")) / "2.jpg" for c in IMAGE_CASES if c.after_plan]
    for image in after:
        image.write_bytes(tiny_jpeg())
    settings = pipeline.settings
    plan = build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root, settings.filters)
    for case, image in zip([c for c in IMAGE_CASES if c.after_plan], after, strict=True):
        case.make(image)
    return plan


@pytest.fixture(scope="module")
def gemini_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    from ocr_assets.engines.factory import make_batch_client
    from ocr_assets.engines.gemini.runner import run_batches

    root = tmp_path_factory.mktemp("hostile-gemini")
    _build_corpus(root, answers=True)
    server = EmulatorServer(EmulatorConfig(batch_latency_s=0.05, faults=FaultConfig()),
                            answerer=HostileAnswerer()).start()
    try:
        settings = settings_for(root, engine="gemini-batch", gemini__base_url=server.url, execution__max_attempts=2,
                                execution__batch_size_limit=200, gemini__retry_initial_wait_s=0.05)
        pipeline = Pipeline(settings)
        plan = _plan(pipeline, root)
        summary = run_batches(pipeline, make_batch_client(pipeline), poll_interval=0.05, timeout_s=90)
        assert summary.stopped == "done", summary
        yield Scenario(pipeline, plan, {r.key: r for r in pipeline.store.records()},
                       {e.key for e in server.state.request_log})
    finally:
        server.stop()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    from ocr_assets.engines.local import LocalInference

    root = tmp_path_factory.mktemp("hostile-local")
    _build_corpus(root, answers=False)
    settings = settings_for(root, engine="local")
    pipeline = Pipeline(settings)
    plan = _plan(pipeline, root)
    summary = pipeline.run_sync(LocalInference(device="cpu", batch_size=4))
    assert summary.attempted > 0
    return Scenario(pipeline, plan, {r.key: r for r in pipeline.store.records()}, set())


@pytest.fixture(params=["gemini", "local"])
def scenario(request: pytest.FixtureRequest) -> Scenario:
    return request.getfixturevalue(f"{request.param}_run")


# -- model answers, parsed directly --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("[" * 50_000 + "]" * 50_000, "malformed_json"),
        ('{"raw_ocr": ' * 20_000 + "{}" + "}" * 20_000, "malformed_json"),
        ('{"raw_ocr": {"text_blocks": []}, "page_info": {}}' + " " * 2_000_001, "oversized"),
        ("[1, 2, 3]", "schema"),
        ('"just a string"', "schema"),
        ('{"raw_ocr": {"text_blocks": "not a list"}, "page_info": {}}', "schema"),
        ('{"raw_ocr": {"text_blocks": [{"block_id": 1}]}, "page_info": {}}', "schema"),  # block without text
        ("```json\n```", "empty"),
        ("\ufeff\u200b", "malformed_json"),
        ('{"raw_ocr": {"text_blocks": []}, "page_info": {"page_number": NaN}}', "schema"),
    ],
    ids=["deep array", "deep object", "oversized", "array", "string", "blocks not a list", "block without text",
         "empty fence", "invisible characters", "NaN page number"],
)
def test_a_hostile_answer_raises_a_parse_error_of_a_known_kind(text: str, kind: str) -> None:
    with pytest.raises(OutputParseError) as info:
        parse_page_result(text)
    assert info.value.kind == kind
    assert len(str(info.value)) < 10_000  # the message never carries the whole answer


def test_a_hostile_answer_is_classified_retryable_with_a_bounded_raw_response() -> None:
    text = "[" * 50_000 + "]" * 50_000
    response = {"candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": "STOP"}]}
    outcome = classify_response("BA:x:1910:1", response)
    assert outcome.error_class == "retryable" and outcome.error_type == "malformed_json"
    assert outcome.raw_response.startswith('{"candidates"')
    assert len(outcome.raw_response) <= RAW_RESPONSE_LIMIT + len("…[truncated]")


# -- images through both engines -----------------------------------------------------------------


@pytest.mark.parametrize("case", IMAGE_CASES, ids=[c.id for c in IMAGE_CASES])
def test_a_hostile_image_is_reported_by_the_plan_or_fails_only_its_page_and_blocks_only_its_chain(scenario: Scenario, case: ImageCase,
                                                                       request: pytest.FixtureRequest) -> None:
    engine = request.node.callspec.params["scenario"]
    expected = case.gemini if engine == "gemini" else case.local
    book = _image_book(case)
    if expected == REPORTED:
        image = scenario.pipeline.settings.paths.images_root / "BI" / case.id / "1900" / "2.jpg"
        reasons = [e.reason for e in scenario.plan.report if e.path == str(image)]
        assert len(reasons) == 1 and "image" in reasons[0], scenario.plan.report
        assert f"{book}:2" not in scenario.records and f"{book}:2" not in scenario.requested
        page3 = scenario.record(f"{book}:3")
        assert page3.upstream_key is None and str(page3.status) == SUCCESS  # the gap starts a new chain
        assert str(scenario.record(f"{book}:1").status) == SUCCESS
        return
    page2, page3 = scenario.record(f"{book}:2"), scenario.record(f"{book}:3")
    assert str(page2.status) == expected, (page2.status, page2.error_type, page2.last_error)
    if expected == FATAL:
        assert page2.error_type == "image_unreadable" and page2.error_class == "fatal"
        assert page2.attempts == 1  # fatal: never retried
        assert "image" in (page2.last_error or "") and str(Path(page2.image_path).name) in page2.last_error
        assert str(page3.status) == "BLOCKED" and page3.blocked_by == page2.key
        assert page2.key not in scenario.requested  # never sent to the model
        assert not output_path(scenario.pipeline.settings.paths.output_root, page2.key).exists()
        failure = scenario.pipeline.store.failures(page2.key)
        assert [f["error_type"] for f in failure] == ["image_unreadable"]
    else:
        assert str(page3.status) == SUCCESS
    # the rest of the book is untouched by page 2's image
    assert str(scenario.record(f"{book}:1").status) == SUCCESS
    assert str(scenario.record(f"{book}:5").status) == SUCCESS


# -- entries the plan refuses --------------------------------------------------------------------


@pytest.mark.parametrize("case", PLAN_CASES, ids=[c.id for c in PLAN_CASES])
def test_a_hostile_corpus_entry_is_reported_and_the_rest_of_its_book_runs(scenario: Scenario,
                                                                          case: PlanCase) -> None:
    assert any(case.reason in e.reason for e in scenario.plan.report), scenario.plan.report
    if case.missing_page is None:
        assert not any(k.startswith(case.book) for k in scenario.records)
        return
    assert f"{case.book}:{case.missing_page}" not in scenario.records
    after = scenario.record(f"{case.book}:{case.missing_page + 1}")
    assert after.upstream_key is None  # the gap starts a new chain
    assert str(after.status) == SUCCESS
    assert str(scenario.record(f"{case.book}:1").status) == SUCCESS


def test_unicode_and_spaces_in_names_reach_the_output_path_and_back(scenario: Scenario) -> None:
    output_root = scenario.pipeline.settings.paths.output_root
    for page in (1, 2):
        record = scenario.record(f"{UNICODE_BOOK}:{page}")
        assert str(record.status) == SUCCESS, record.last_error
        expected = Path(output_root, "QC", "École Saint-Jean d'Arc", "1905", f"{page}.json")
        assert Path(record.output_path) == expected and expected.is_file()
    assert scenario.record(f"{UNICODE_BOOK}:2").upstream_key == f"{UNICODE_BOOK}:1"


def test_unicode_names_are_echoed_back_as_the_pages_own_identity(gemini_run: Scenario) -> None:
    result = read_output(Path(gemini_run.record(f"{UNICODE_BOOK}:2").output_path))
    assert result.school_name == "École Saint-Jean d'Arc" and result.page_info.page_number == 2


# -- model answers through the Gemini classification path ---------------------------------------


@pytest.mark.parametrize("case", ANSWER_CASES, ids=[c.id for c in ANSWER_CASES])
def test_a_hostile_answer_is_retried_then_fatal_with_its_raw_response_kept(gemini_run: Scenario,
                                                                           case: AnswerCase) -> None:
    key = f"{ANSWER_BOOK}:{case.page}"
    record = gemini_run.record(key)
    assert str(record.status) == FATAL and record.attempts == 2
    assert record.error_type == case.error_type
    assert record.last_error.startswith("retries exhausted after 2 attempts")
    failures = gemini_run.pipeline.store.failures(key)
    assert [(f["error_class"], f["error_type"]) for f in failures] == [("retryable", case.error_type)] * 2
    for failure in failures:
        raw = failure["raw_response"]
        assert case.raw_part in raw
        assert len(raw) <= RAW_RESPONSE_LIMIT + len("…[truncated]")
        assert failure["prompt_version"] and failure["model"]
    downstream = gemini_run.record(f"{ANSWER_BOOK}:{case.page + 1}")
    assert str(downstream.status) == "BLOCKED" and downstream.blocked_by == key
    assert not output_path(gemini_run.pipeline.settings.paths.output_root, key).exists()


def test_a_fenced_answer_is_accepted(gemini_run: Scenario) -> None:
    assert str(gemini_run.record(f"{ANSWER_BOOK}:{FENCED_PAGE}").status) == SUCCESS
    assert str(gemini_run.record(f"{ANSWER_BOOK}:{FENCED_PAGE + 1}").status) == SUCCESS


# -- nothing lost, nothing corrupted -------------------------------------------------------------


def test_after_the_run_every_record_is_terminal_and_outputs_match_the_store(scenario: Scenario) -> None:
    store, settings = scenario.pipeline.store, scenario.pipeline.settings
    records = {r.key: r for r in store.records()}
    assert records.keys() == scenario.records.keys()
    assert store.unfinished_count() == 0
    assert not [b.batch_id for b in store.batches(states=ACTIVE_BATCH_STATES)]
    output_root = Path(settings.paths.output_root)
    on_disk = {p for p in output_root.rglob("*") if p.is_file()}
    expected = set()
    for key, record in records.items():
        path = output_path(output_root, key)
        if str(record.status) == SUCCESS:
            assert Path(record.output_path) == path and file_sha256(path) == record.output_sha256
            read_output(path)
            expected.add(path)
        else:
            assert not path.exists(), key
    assert on_disk == expected  # no stray, temporary or half-written files


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("OCR_ASSETS_EXECUTION__MAX_ATTEMPTS", "abc", "execution.max_attempts"),
        ("OCR_ASSETS_EXECUTION__MAX_ATEMPTS", "3", "execution.max_atempts"),
        ("OCR_ASSETS_GEMINI__MAX_JSONL_BYTES", "3000000000", "gemini.max_jsonl_bytes"),
        ("OCR_ASSETS_GEMINI__MIN_RESULT_FRACTION", "1.5", "gemini.min_result_fraction"),
        ("OCR_ASSETS_LOCAL__ENGINE", "easyocr", "local.engine"),
        ("OCR_ASSETS_PATHS__IMAGES_ROOT", "[1, 2]", "paths.images_root"),
        ("OCR_ASSETS_FILTERS__YEAR_START", "1900-01-01", "filters.year_start"),
    ],
)
def test_an_invalid_environment_override_is_a_settings_error_naming_the_field(tmp_path: Path, variable: str,
                                                                              value: str, field: str) -> None:
    environ = {"OCR_ASSETS_CONFIG": str(tmp_path / "absent.yaml"), variable: value}
    with pytest.raises(SettingsError) as info:
        load_settings(None, environ=environ)
    assert field in str(info.value) and "Traceback" not in str(info.value)


def test_the_cli_refuses_an_invalid_config_in_one_line_and_touches_no_state(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ocr_assets.cli import app

    database = tmp_path / "state" / "store.duckdb"
    config = tmp_path / "bad.yaml"
    config.write_text(f"paths:\n  database: {database}\nexecution:\n  max_concurrent_batches: 0\n")
    result = CliRunner().invoke(app, ["status", "--config", str(config)])
    assert result.exit_code == 2
    assert "execution.max_concurrent_batches" in result.output and "Traceback" not in result.output
    assert not database.exists()


def test_an_impossible_fault_mix_for_the_emulator_is_refused_naming_the_problem() -> None:
    with pytest.raises(ValueError, match="sum to"):
        FaultConfig(malformed_json=0.6, truncated=0.6)
