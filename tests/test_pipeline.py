import json
from pathlib import Path

from ocr_assets.core import PageFailure, PageOutcome, PageRequest, PageSuccess, TokenUsage
from ocr_assets.outputs import file_sha256, read_output
import pytest

from ocr_assets.pipeline import Pipeline, Progress
from ocr_assets.plan import build_plan
from ocr_assets.schema import ErrorClass, OcrPageResult
from ocr_assets.store import RecordStatus
from tests.fixtures.corpus import settings_for, write_book


def _result(request: PageRequest) -> OcrPageResult:
    return OcrPageResult.model_validate(
        {
            "raw_ocr": {"text_blocks": [{"block_id": 1, "text": f"text of page {request.page} " + "x" * 600}]},
            "page_info": {"page_number": request.page},
            "courses": [{"course_name": f"Course {request.page}.{i}", "department": "Math"} for i in range(4)],
        }
    )


class ScriptedEngine:
    """A synchronous engine whose answers the test chooses (the only fake in these tests)."""

    name = "scripted"
    pricing_mode = "realtime"

    def __init__(self, fail: dict[str, list[str]] | None = None):
        self.fail = fail or {}
        self.seen: list[PageRequest] = []

    def infer(self, requests: list[PageRequest]) -> list[PageOutcome]:
        out: list[PageOutcome] = []
        for r in requests:
            self.seen.append(r)
            plan = self.fail.get(r.key, [])
            kind = plan.pop(0) if plan else None
            usage = TokenUsage(prompt_tokens=1000, output_tokens=200)
            if kind is None:
                out.append(PageSuccess(key=r.key, result=_result(r), usage=usage, raw_response="{}"))
            else:
                cls = ErrorClass.FATAL if kind == "fatal" else ErrorClass.RETRYABLE
                out.append(PageFailure(key=r.key, error_class=cls, error_type=kind, message=f"{kind}!",
                                       raw_response="garbage", usage=usage))
        return out


def _pipeline(tmp_path: Path) -> Pipeline:
    write_book(tmp_path, "CA:ucla:1900", images=range(1, 8), allow=[1, 2, 3, 5, 6])
    write_book(tmp_path, "NY:nyu:1910", images=range(1, 3), allow=[1, 2])
    settings = settings_for(tmp_path)
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    return pipeline


def test_run_sync_drives_every_chain_to_success_in_dependency_order(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    engine = ScriptedEngine()
    summary = pipeline.run_sync(engine)
    assert summary.succeeded == 7 and summary.fatal == 0
    order = [r.key for r in engine.seen]
    assert order.index("CA:ucla:1900:1") < order.index("CA:ucla:1900:2") < order.index("CA:ucla:1900:3")
    assert order.index("CA:ucla:1900:5") < order.index("CA:ucla:1900:6")
    assert summary.waves == 3  # the longest chain (1→2→3) needs three waves; other chains ride along
    for record in pipeline.store.records():
        assert record.status == RecordStatus.SUCCESS
        assert read_output(Path(record.output_path)).page_info.page_number == record.page
        assert file_sha256(Path(record.output_path)) == record.output_sha256


def test_prompts_carry_the_upstream_page_context_only_across_contiguous_pages(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    engine = ScriptedEngine()
    pipeline.run_sync(engine)
    by_key = {r.key: r for r in engine.seen}
    second = by_key["CA:ucla:1900:2"]
    assert second.previous_context is not None
    assert second.previous_context["text_tail"].endswith("x" * 100)
    assert len(second.previous_context["text_tail"]) == 500
    assert [c["course_name"] for c in second.previous_context["last_courses"]] == [
        "Course 1.1", "Course 1.2", "Course 1.3"]
    assert "Course 1.3 (Math)" in second.prompt
    assert by_key["CA:ucla:1900:5"].previous_context is None  # page 4 is not allow-listed
    assert "no previous-page context" in by_key["CA:ucla:1900:5"].prompt


def test_retryable_failures_are_retried_per_record_and_fatal_ones_block_their_chain(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    engine = ScriptedEngine(fail={"CA:ucla:1900:1": ["http_503"], "CA:ucla:1900:5": ["fatal"]})
    summary = pipeline.run_sync(engine)
    records = {r.key: r for r in pipeline.store.records()}
    assert records["CA:ucla:1900:1"].status == RecordStatus.SUCCESS
    assert records["CA:ucla:1900:1"].attempts == 2
    assert records["CA:ucla:1900:5"].status == RecordStatus.FATAL_FAILURE
    assert records["CA:ucla:1900:6"].status == RecordStatus.BLOCKED
    assert records["CA:ucla:1900:6"].blocked_by == "CA:ucla:1900:5"
    assert summary.fatal == 1 and summary.blocked == 1
    sent = [r.key for r in engine.seen]
    successes = [k for k, r in records.items() if r.status == RecordStatus.SUCCESS]
    assert all(sent.count(k) == records[k].attempts for k in successes)  # no success resent
    failure = pipeline.store.failures("CA:ucla:1900:1")[0]
    assert failure["raw_response"] == "garbage" and failure["prompt_version"] == "v1.1"
    assert json.loads(failure["generation_config"])["response_mime_type"] == "application/json"


def test_costs_are_priced_per_record_into_the_ledger(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.run_sync(ScriptedEngine())
    ledger = pipeline.store.query("SELECT sum(cost_usd) c, sum(realtime_cost_usd) r, count(*) n FROM cost_ledger")[0]
    model = pipeline.settings.model
    expected = 7 * (1000 * model.input_price_per_mtok + 200 * model.output_price_per_mtok) / 1e6
    assert ledger["n"] == 7
    assert abs(ledger["c"] - expected) < 1e-12 and abs(ledger["r"] - expected) < 1e-12


def test_a_dead_runs_claimed_records_are_recovered(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    record = pipeline.store.runnable(1)[0]
    requests, _ = pipeline.build_requests([record])
    pipeline.store.claim("local-dead", pipeline.claim_items(requests), engine="local", model="m",
                         owner="%s:999999" % __import__("socket").gethostname())
    assert pipeline.recover_orphans() == [record.key]
    row = pipeline.store.get(record.key)
    assert row.status == RecordStatus.RETRYABLE_FAILURE and row.attempts == 1


@pytest.mark.parametrize("progress, line", [
    (Progress(done=0, total=48), "0/48 pages done (0%), 0.00 pages/s, ETA unknown, 0 failures so far"),
    (Progress(done=12, total=48, failures=1, elapsed_s=15),
     "12/48 pages done (25%), 0.80 pages/s, ETA 45s, 1 failure so far"),
    (Progress(done=10, total=1010, failures=3, elapsed_s=10),
     "10/1010 pages done (0%), 1.00 pages/s, ETA 16m40s, 3 failures so far"),
    (Progress(done=5, total=5, elapsed_s=2), "5/5 pages done (100%), 2.50 pages/s, ETA 0s, 0 failures so far"),
    (Progress(done=0, total=0), "0/0 pages done (100%), 0.00 pages/s, ETA 0s, 0 failures so far"),
])
def test_progress_reads_as_pages_done_rate_eta_and_failures(progress: Progress, line: str) -> None:
    assert progress.line() == line


def test_run_sync_reports_progress_after_every_wave_until_every_page_is_done(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    seen: list[Progress] = []
    engine = ScriptedEngine(fail={"CA:ucla:1900:1": ["http_503"], "CA:ucla:1900:5": ["fatal"]})
    summary = pipeline.run_sync(engine, on_progress=seen.append)
    assert len(seen) == summary.waves and {p.total for p in seen} == {7}
    assert [p.done for p in seen] == sorted(p.done for p in seen)  # never goes backwards
    assert seen[-1].done == 7  # 5 SUCCESS + 1 FATAL + 1 BLOCKED: every page terminal
    assert seen[0].failures == 2 and seen[-1].failures == 2  # the retry and the fatal page, counted once each


class StreamingEngine(ScriptedEngine):
    """Answers one page at a time through `infer_stream`, noting what the store held before each answer."""

    def __init__(self, store, *, drop: frozenset[str] = frozenset()):
        super().__init__()
        self.store = store
        self.drop = drop
        self.succeeded_before: list[int] = []

    def infer_stream(self, requests: list[PageRequest]):
        for request in requests:
            self.succeeded_before.append(self.store.status_counts().get("SUCCESS", 0))
            if request.key not in self.drop:
                yield self.infer([request])


def test_a_streaming_engines_outcomes_are_ingested_while_it_still_works(tmp_path: Path, monkeypatch) -> None:
    from ocr_assets import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "INGEST_EVERY_PAGES", 1)
    pipeline = _pipeline(tmp_path)
    lost = "NY:nyu:1910:1"
    engine = StreamingEngine(pipeline.store, drop=frozenset({lost}))
    first_wave = pipeline.store.runnable(100)
    _batch, summary = pipeline.run_wave(engine, first_wave)
    # Each page was sent only after every answered page before it had landed in the store.
    keys = [r.key for r in first_wave]
    assert len(keys) == 3 and lost in keys
    assert engine.succeeded_before == [sum(k != lost for k in keys[:i]) for i in range(len(keys))]
    assert set(summary.applied) == {r.key for r in first_wave}
    row = pipeline.store.get(lost)  # a page the stream never answered comes back retryable, not lost
    assert row.status == RecordStatus.RETRYABLE_FAILURE and row.error_type == "missing_result"
