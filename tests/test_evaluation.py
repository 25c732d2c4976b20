import json
import random
from pathlib import Path

import pytest

from ocr_assets.core import PageOutcome, PageRequest, PageSuccess, TokenUsage
from ocr_assets.evaluation import (
    CourseMatch,
    EvalError,
    PageScore,
    cer,
    eval_runs,
    ground_truth_path,
    levenshtein,
    match_courses,
    normalise_text,
    prf,
    run_eval,
    select_sample,
    summarise,
)
from ocr_assets.pipeline import open_store
from ocr_assets.plan import build_plan, scan_corpus
from ocr_assets.prompts import PromptError
from ocr_assets.schema import OcrPageResult, RawOcr, TextBlock
from ocr_assets.tracking import BraintrustTracker, NullTracker
from tests.fixtures.braintrust_capture import braintrust_capture
from tests.fixtures.corpus import settings_for, write_book

# -- character error rate -------------------------------------------------------------------------------


def _naive_levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("abc", "", 3),
        ("", "abc", 3),
        ("abc", "abc", 0),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("café", "cafe", 1),
        ("Greek I", "Greek II", 1),
        ("a" * 100, "a" * 99 + "b", 1),
        ("x" * 70 + "abc", "abc", 70),
    ],
)
def test_levenshtein_counts_insertions_deletions_and_substitutions(a: str, b: str, distance: int) -> None:
    assert levenshtein(a, b) == distance == levenshtein(b, a)


def test_levenshtein_agrees_with_the_textbook_dynamic_program_on_random_strings() -> None:
    rng = random.Random(7)
    for _ in range(120):
        a = "".join(rng.choice("ab c\n") for _ in range(rng.randint(0, 160)))
        b = "".join(rng.choice("ab cd") for _ in range(rng.randint(0, 160)))
        assert levenshtein(a, b) == _naive_levenshtein(a, b), (a, b)


@pytest.mark.parametrize(
    ("reference", "hypothesis", "rate"),
    [
        ("abcd", "abcd", 0.0),
        ("abcd", "abed", 0.25),
        ("abcd", "", 1.0),
        ("ab", "abcdef", 2.0),  # insertions can push CER past 1
        ("Hello  world\n\nagain", " Hello world again ", 0.0),  # whitespace is normalised
        ("“Greek” – Homer’s", '"Greek" - Homer\'s', 0.0),  # typographic quotes and dashes too
        ("ﬁne", "fine", 0.0),  # NFKC folds ligatures
        ("Greek", "greek", 0.2),  # case counts
        ("", "", 0.0),
        ("", "noise", 1.0),
    ],
)
def test_cer_is_edits_over_reference_length_on_normalised_text(reference: str, hypothesis: str, rate: float) -> None:
    assert cer(reference, hypothesis) == pytest.approx(rate)


def test_normalised_text_collapses_whitespace_and_plain_typography() -> None:
    assert normalise_text("  A\u00a0b\t“c”—d\u00ad e  ") == 'A b "c"-d e'


# -- course precision / recall / F1 ---------------------------------------------------------------------------


def _c(name: str, department: str | None = None) -> dict:
    return {"course_name": name, "department": department}


@pytest.mark.parametrize(
    ("predicted", "expected", "counts"),
    [
        ([_c("Greek I", "Classics")], [_c("Greek I", "Classics")], (1, 0, 0)),
        ([_c("greek i.", "CLASSICS")], [_c("Greek I", "Classics")], (1, 0, 0)),  # case and punctuation
        ([_c("Greek  I", None)], [_c("Greek I", "")], (1, 0, 0)),  # no department = empty department
        ([_c("Greek I", "Latin")], [_c("Greek I", "Classics")], (0, 1, 1)),  # department must match
        ([_c("Greek I"), _c("Greek I")], [_c("Greek I")], (1, 1, 0)),  # duplicates count per occurrence
        ([], [_c("Greek I"), _c("Latin")], (0, 0, 2)),
        ([_c("Algebra")], [], (0, 1, 0)),
        ([], [], (0, 0, 0)),
        ([_c("A"), _c("B"), _c("C")], [_c("B"), _c("C"), _c("D"), _c("E")], (2, 1, 2)),
    ],
)
def test_courses_match_on_normalised_name_and_department(predicted, expected, counts) -> None:
    match = match_courses(predicted, expected)
    assert (match.tp, match.fp, match.fn) == counts


@pytest.mark.parametrize(
    ("tp", "fp", "fn", "expected"),
    [
        (0, 0, 0, (1.0, 1.0, 1.0)),  # nothing to find and nothing found
        (3, 1, 1, (0.75, 0.75, 0.75)),
        (2, 0, 2, (1.0, 0.5, 2 / 3)),
        (0, 2, 0, (0.0, 0.0, 0.0)),
        (0, 0, 3, (0.0, 0.0, 0.0)),
        (2, 1, 2, (2 / 3, 0.5, 4 / 7)),
    ],
)
def test_precision_recall_and_f1(tp: int, fp: int, fn: int, expected: tuple[float, float, float]) -> None:
    assert prf(tp, fp, fn) == pytest.approx(expected)
    match = CourseMatch(tp=tp, fp=fp, fn=fn)
    assert (match.precision, match.recall, match.f1) == pytest.approx(expected)


def test_version_summary_uses_corpus_cer_and_micro_averaged_courses() -> None:
    def page(key, valid, edits, ref, tp, fp, fn, cost=0.0, tokens=(0, 0)):
        return PageScore(version="v", key=key, valid=valid, status="SUCCESS" if valid else "FATAL_FAILURE",
                         error_type=None if valid else "schema", cer=edits / ref, ref_chars=ref, edits=edits,
                         tp=tp, fp=fp, fn=fn, attempts=1, prompt_tokens=tokens[0], output_tokens=tokens[1],
                         cost_usd=cost)

    summary = summarise("v", [page("a:b:1900:1", True, 10, 100, 3, 1, 0, 0.01, (1000, 200)),
                              page("a:b:1900:2", False, 300, 300, 0, 0, 4, 0.03, (1000, 0))])
    assert summary.pages == 2 and summary.valid_pages == 1 and summary.schema_valid_rate == 0.5
    assert summary.cer == pytest.approx(310 / 400) and summary.mean_page_cer == pytest.approx((0.1 + 1.0) / 2)
    assert (summary.course_precision, summary.course_recall) == pytest.approx((0.75, 3 / 7))
    assert summary.cost_per_page == pytest.approx(0.02) and summary.tokens_per_page == 1100
    assert summary.failures == {"schema": 1}


# -- sample and end-to-end run -----------------------------------------------------------------------------------

BOOKS = {"CA:alpha:1900": [1, 2, 3, 5], "NY:beta:1910": [1, 2]}


def _truth(key: str) -> OcrPageResult:
    page = int(key.rpartition(":")[2])
    return OcrPageResult.model_validate({
        "raw_ocr": {"text_blocks": [{"block_id": 1, "text": f"{key} page text. " + "Rhetoric and logic. " * 20}]},
        "page_info": {"page_number": page},
        "courses": [{"course_name": f"Course {page}.{i}", "department": "Classics"} for i in range(3)],
    })


def _corpus(root: Path, *, missing_truth: tuple[str, ...] = ()) -> None:
    for book, pages in BOOKS.items():
        write_book(root, book, images=range(1, 7), allow=pages)
        for page in pages:
            key = f"{book}:{page}"
            if key not in missing_truth:
                path = ground_truth_path(root / "ground_truth", key)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(_truth(key).to_json())


class ContextSensitiveEngine:
    """Answers with the page's truth, but loses the first course of a continued page unless the
    prompt carries the previous page's context — how a prompt version can matter (the only fake)."""

    name = "context-sensitive"
    pricing_mode = "realtime"
    model_name = "fake-gemini"

    def __init__(self) -> None:
        self.seen: list[PageRequest] = []

    def infer(self, requests: list[PageRequest]) -> list[PageOutcome]:
        out: list[PageOutcome] = []
        for r in requests:
            self.seen.append(r)
            truth = _truth(r.key)
            if r.upstream_key and "Context from the previous page" not in r.prompt:
                truth = truth.model_copy(update={"courses": truth.courses[1:]})
            out.append(PageSuccess(key=r.key, result=truth, usage=TokenUsage(prompt_tokens=len(r.prompt),
                                                                             output_tokens=500)))
        return out


class ReflowingEngine:
    """Answers with the page's truth, its text re-broken into short blocks with ragged whitespace."""

    name = "reflowing"
    pricing_mode = "local"

    def infer(self, requests: list[PageRequest]) -> list[PageOutcome]:
        out: list[PageOutcome] = []
        for r in requests:
            truth = _truth(r.key)
            words = truth.raw_ocr.full_text().split()
            blocks = [TextBlock(block_id=i, text="\t" + "  ".join(words[start : start + 7]) + " \n")
                      for i, start in enumerate(range(0, len(words), 7))]
            result = truth.model_copy(update={"raw_ocr": RawOcr(text_blocks=blocks)})
            out.append(PageSuccess(key=r.key, result=result))
        return out


def test_cer_ignores_how_the_page_text_is_broken_into_blocks_and_spaced(tmp_path: Path) -> None:
    _corpus(tmp_path)
    report = run_eval(settings_for(tmp_path), ["v1"], ReflowingEngine(), None, tracker=NullTracker())
    (summary,) = report.versions
    assert summary.cer == 0.0 and summary.course_f1 == 1.0
    for page in report.pages:
        # Reference characters are counted after normalising too: no run of spaces inflates them.
        assert page.edits == 0 and page.ref_chars == len(normalise_text(_truth(page.key).raw_ocr.full_text()))


def test_the_sample_is_closed_under_dependencies_spread_over_books_and_has_ground_truth(tmp_path: Path) -> None:
    _corpus(tmp_path, missing_truth=("CA:alpha:1900:2",))
    nodes = scan_corpus(tmp_path / "images", tmp_path / "allow_list").records()
    every = select_sample(nodes, tmp_path / "ground_truth", None)
    # page 2 has no truth, so page 3 (which depends on it) cannot be evaluated either
    assert [n.key for n in every] == ["CA:alpha:1900:1", "NY:beta:1910:1", "CA:alpha:1900:5", "NY:beta:1910:2"]
    assert [n.key for n in select_sample(nodes, tmp_path / "ground_truth", 3)] == [
        "CA:alpha:1900:1", "NY:beta:1910:1", "CA:alpha:1900:5"]
    keys = {n.key for n in every}
    assert all(n.upstream_key is None or n.upstream_key in keys for n in every)


def test_run_eval_scores_each_version_without_touching_the_main_store(tmp_path: Path) -> None:
    _corpus(tmp_path)
    settings = settings_for(tmp_path)
    store = open_store(settings)
    build_plan(store, settings.paths.images_root, settings.paths.allow_list_root)
    before = [r.model_dump() for r in store.records()]
    engine = ContextSensitiveEngine()

    report = run_eval(settings, ["v1", "v1.1"], engine, None, store=store, tracker=NullTracker())

    assert [r.model_dump() for r in store.records()] == before  # the main records are untouched
    assert not list((tmp_path / "output").glob("**/*.json"))
    assert len(report.sample) == 6 and len(engine.seen) == 12
    v1, v11 = report.versions
    assert (v1.version, v11.version) == ("v1", "v1.1")
    assert v1.cer == 0.0 and v11.cer == 0.0 and v1.schema_valid_rate == v11.schema_valid_rate == 1.0
    # 3 continued pages (alpha 2, 3; beta 2) each lose one of 3 courses under v1
    assert v1.course_recall == pytest.approx(15 / 18) and v1.course_precision == 1.0
    assert v11.course_f1 == 1.0
    assert v11.prompt_tokens_per_page > v1.prompt_tokens_per_page  # the context costs tokens
    assert v1.cost_per_page > 0 and v1.total_cost_usd == pytest.approx(v1.cost_per_page * 6)
    # each version ran on its own store, with its own outputs
    for version in ("v1", "v1.1"):
        assert (report.work_dir / version / "store.duckdb").is_file()
        assert len(list((report.work_dir / version / "output").glob("**/*.json"))) == 6
    stored = eval_runs(store, report.run_id)
    assert [(r["version"], r["pages"], r["course_f1"]) for r in stored] == [
        ("v1", 6, pytest.approx(v1.course_f1)), ("v1.1", 6, 1.0)]
    pages = store.query("SELECT version, key, tp, fn FROM eval_pages WHERE run_id = ? AND key = ?",
                        [report.run_id, "CA:alpha:1900:2"])
    assert sorted((p["version"], p["tp"], p["fn"]) for p in pages) == [("v1", 2, 1), ("v1.1", 3, 0)]


def test_run_eval_logs_one_braintrust_experiment_per_version(tmp_path: Path, monkeypatch) -> None:
    _corpus(tmp_path)
    settings = settings_for(tmp_path)
    with braintrust_capture() as capture:
        monkeypatch.setenv("BRAINTRUST_APP_URL", capture.url)
        monkeypatch.delenv("BRAINTRUST_API_URL", raising=False)
        tracker = BraintrustTracker("ocr-eval", api_key="sk-eval-test")
        report = run_eval(settings, ["v1", "v1.1"], ContextSensitiveEngine(), 2, tracker=tracker)
    names = [json.loads(b)["name"] for m, p, b, _ in capture.requests if p == "/v1/experiment"]
    assert names == [f"page_ocr v1 {report.run_id}", f"page_ocr v1.1 {report.run_id}"]
    assert [v.experiment for v in report.versions] == names
    rows = capture.rows()
    assert len(rows) == 4
    assert {r["scores"]["course_f1"] for r in rows} == {1.0} and {r["scores"]["schema_valid"] for r in rows} == {1}
    assert rows[0]["expected"]["page_info"]["page_number"] == rows[0]["metadata"]["page"]


def test_run_eval_refuses_unknown_versions_and_missing_ground_truth_before_any_inference(tmp_path: Path) -> None:
    _corpus(tmp_path)
    engine = ContextSensitiveEngine()
    with pytest.raises(PromptError, match="v9.jinja not found"):
        run_eval(settings_for(tmp_path), ["v1", "v9"], engine, tracker=NullTracker())
    with pytest.raises(EvalError, match="ground truth folder"):
        run_eval(settings_for(tmp_path, paths__ground_truth_root=tmp_path / "none"), ["v1"], engine,
                 tracker=NullTracker())
    empty = tmp_path / "empty_truth"
    empty.mkdir()
    with pytest.raises(EvalError, match="has ground truth"):
        run_eval(settings_for(tmp_path, paths__ground_truth_root=empty), ["v1"], engine, tracker=NullTracker())
    assert engine.seen == []


def test_run_eval_reports_tokens_and_cost_per_page_for_each_thinking_budget(tmp_path: Path, monkeypatch,
                                                                           gemini_emulator) -> None:
    from ocr_assets.engines.gemini.realtime import GeminiRealtimeEngine

    server = gemini_emulator(model_like={"enabled": True})
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    _corpus(tmp_path)
    settings = settings_for(tmp_path, gemini__base_url=server.url, gemini__retry_initial_wait_s=0)
    built: list[int | None] = []

    def engine_for(variant):
        built.append(variant.model.generation.thinking_budget)
        return GeminiRealtimeEngine(variant)

    report = run_eval(settings, ["v1.2"], GeminiRealtimeEngine(settings), None, tracker=NullTracker(),
                      generations=[{"thinking_budget": 0}, {"thinking_budget": 1024}], engine_for=engine_for)
    assert built == [0, 1024]
    off, on = report.versions
    assert (off.version, on.version) == ("v1.2 thinking_budget=0", "v1.2 thinking_budget=1024")
    assert off.schema_valid_rate == on.schema_valid_rate == 1.0  # model-like answers all accepted
    assert off.prompt_tokens_per_page == on.prompt_tokens_per_page
    # Thinking is billed as output: the budget shows in output tokens and cost per page.
    assert on.output_tokens_per_page > off.output_tokens_per_page and on.cost_per_page > off.cost_per_page
    budgets = {e.thinking.get("thinkingBudget") for e in server.state.request_log}
    assert budgets == {0, 1024}


def test_run_eval_with_a_gemini_engine_takes_the_context_from_the_configured_source(tmp_path: Path, monkeypatch,
                                                                                  gemini_emulator) -> None:
    from ocr_assets.engines.gemini.realtime import GeminiRealtimeEngine

    server = gemini_emulator(model_like={"enabled": True})
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    _corpus(tmp_path)
    settings = settings_for(tmp_path, gemini__base_url=server.url, gemini__context_source="upstream_image")
    report = run_eval(settings, ["v1.2"], GeminiRealtimeEngine(settings), None, tracker=NullTracker())
    assert report.versions[0].pages == 6
    images = {e.key: e.images for e in server.state.request_log}
    # Pages with an upstream page go with its image, as in `ocr-assets run`; the heads with theirs alone.
    nodes = scan_corpus(tmp_path / "images", tmp_path / "allow_list").records()
    assert images == {n.key: 2 if n.upstream_key else 1 for n in nodes if n.key in report.sample}
    assert sorted(images.values()) == [1, 1, 1, 2, 2, 2]  # alpha 2, 3 and beta 2 continue a page
