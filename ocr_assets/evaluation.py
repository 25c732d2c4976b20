"""Prompt A/B evaluation against ground truth: CER, course precision/recall/F1, schema-valid rate, cost.

`run_eval` runs the same sample of pages once per prompt version, each version through the real
`Pipeline` on its own throw-away record store and output folder (under `eval/<run>/<version>/`
next to the main store), so page chains carry each version's own upstream context exactly as
production would — and the main store's records are never touched. Scores go to the `eval_runs`
and `eval_pages` tables of the main store, and to a Braintrust experiment per version when
`BRAINTRUST_API_KEY` is set.

Note: the local engine ignores the prompt, so versions differ only under the Gemini engines (or the
emulator); with the local engine the evaluation still checks that every version renders and runs.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ocr_assets.core import SyncEngine
from ocr_assets.keys import RecordKey
from ocr_assets.outputs import read_output
from ocr_assets.pipeline import Pipeline, open_store
from ocr_assets.plan import scan_corpus
from ocr_assets.prompts import PromptRegistry
from ocr_assets.schema import Course, OcrPageResult
from ocr_assets.settings import Settings
from ocr_assets.store import PlannedRecord, RecordRow, RecordStatus, RecordStore
from ocr_assets.tracking import NullTracker, Tracker, make_tracker


class EvalError(ValueError):
    """The evaluation cannot run as configured (no ground truth, no sample, unknown prompt)."""


# -- metrics (pure) ------------------------------------------------------------------------------

_TYPOGRAPHY = str.maketrans({"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"',
                             "–": "-", "—": "-", "‐": "-", "−": "-", "\u00ad": None})


def normalise_text(text: str) -> str:
    """Text as CER compares it: NFKC, typographic quotes/dashes made plain, whitespace runs → one space."""
    text = unicodedata.normalize("NFKC", text or "").translate(_TYPOGRAPHY)
    return " ".join(text.split())


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute; each costs 1).

    Myers' bit-parallel algorithm (Hyyrö's formulation) on Python integers: O(len(a) · len(b)/64),
    fast enough for whole pages (a 5,000 × 5,000 comparison takes milliseconds).
    """
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, ch in enumerate(b):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    full = (1 << m) - 1
    last = 1 << (m - 1)
    pv, mv, score = full, 0, m
    for ch in a:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & full
        mh = pv & xh
        if ph & last:
            score += 1
        elif mh & last:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv
    return score


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: edits / reference length, on normalised text.

    An empty reference scores 0.0 against an empty hypothesis and 1.0 against anything else.
    """
    ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return levenshtein(ref, hyp) / len(ref)


def _name(text: str | None) -> str:
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def course_key(course: Course | dict[str, Any]) -> tuple[str, str]:
    """(normalised course name, normalised department): how courses are matched."""
    if isinstance(course, dict):
        return _name(course.get("course_name")), _name(course.get("department"))
    return _name(course.course_name), _name(course.department)


class CourseMatch(BaseModel):
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: "CourseMatch") -> "CourseMatch":
        return CourseMatch(tp=self.tp + other.tp, fp=self.fp + other.fp, fn=self.fn + other.fn)

    @property
    def precision(self) -> float:
        return prf(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float:
        return prf(self.tp, self.fp, self.fn)[1]

    @property
    def f1(self) -> float:
        return prf(self.tp, self.fp, self.fn)[2]


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1. Nothing predicted and nothing expected is a perfect (1, 1, 1)."""
    if tp + fp + fn == 0:
        return 1.0, 1.0, 1.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def match_courses(predicted: Sequence[Course | dict], expected: Sequence[Course | dict]) -> CourseMatch:
    """Multiset match on (normalised name, department): duplicates count once per occurrence."""
    pred = Counter(course_key(c) for c in predicted)
    gold = Counter(course_key(c) for c in expected)
    tp = sum((pred & gold).values())
    return CourseMatch(tp=tp, fp=sum(pred.values()) - tp, fn=sum(gold.values()) - tp)


# -- results -------------------------------------------------------------------------------------


class PageScore(BaseModel):
    version: str
    key: str
    valid: bool  # the engine returned a schema-valid OcrPageResult
    status: str
    error_type: str | None = None
    cer: float
    ref_chars: int
    edits: int
    tp: int
    fp: int
    fn: int
    attempts: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def course_f1(self) -> float:
        return prf(self.tp, self.fp, self.fn)[2]


class VersionSummary(BaseModel):
    version: str
    pages: int
    valid_pages: int
    schema_valid_rate: float
    cer: float  # corpus CER: total edits / total reference characters
    mean_page_cer: float
    course_precision: float
    course_recall: float
    course_f1: float
    attempts: int
    prompt_tokens_per_page: float
    output_tokens_per_page: float
    tokens_per_page: float
    cost_per_page: float
    total_cost_usd: float
    failures: dict[str, int] = Field(default_factory=dict)
    experiment: str | None = None


class EvalReport(BaseModel):
    run_id: str
    created_at: datetime
    engine: str
    model: str
    sample: list[str]
    work_dir: Path
    versions: list[VersionSummary]
    pages: list[PageScore]


def summarise(version: str, pages: Sequence[PageScore]) -> VersionSummary:
    n = len(pages)
    ref = sum(p.ref_chars for p in pages)
    edits = sum(p.edits for p in pages)
    courses = sum((CourseMatch(tp=p.tp, fp=p.fp, fn=p.fn) for p in pages), CourseMatch())
    prompt_tokens = sum(p.prompt_tokens for p in pages)
    output_tokens = sum(p.output_tokens for p in pages)
    cost_total = sum(p.cost_usd for p in pages)
    return VersionSummary(
        version=version, pages=n, valid_pages=sum(p.valid for p in pages),
        schema_valid_rate=sum(p.valid for p in pages) / n if n else 0.0,
        cer=edits / ref if ref else (0.0 if edits == 0 else 1.0),
        mean_page_cer=sum(p.cer for p in pages) / n if n else 0.0,
        course_precision=courses.precision, course_recall=courses.recall, course_f1=courses.f1,
        attempts=sum(p.attempts for p in pages),
        prompt_tokens_per_page=prompt_tokens / n if n else 0.0,
        output_tokens_per_page=output_tokens / n if n else 0.0,
        tokens_per_page=(prompt_tokens + output_tokens) / n if n else 0.0,
        cost_per_page=cost_total / n if n else 0.0, total_cost_usd=cost_total,
        failures=dict(Counter(p.error_type or "unknown" for p in pages if not p.valid)),
    )


# -- sample --------------------------------------------------------------------------------------


def ground_truth_path(root: Path, key: str) -> Path:
    record = RecordKey.parse(key)
    return Path(root, record.book.state, record.book.school, str(record.book.year), f"{record.page}.json")


def select_sample(nodes: Sequence[PlannedRecord], ground_truth_root: Path, size: int | None) -> list[PlannedRecord]:
    """Pages with ground truth, closed under dependencies (a page's upstream is always in), taken
    round-robin across books in page order so a small sample spans books; deterministic."""
    by_book: dict[str, list[PlannedRecord]] = {}
    for node in sorted(nodes, key=lambda n: (n.book, n.page)):
        by_book.setdefault(node.book, []).append(node)
    queues = {book: list(pages) for book, pages in sorted(by_book.items())}
    chosen: list[PlannedRecord] = []
    keys: set[str] = set()
    while queues and (size is None or len(chosen) < size):
        for book in list(queues):
            if size is not None and len(chosen) >= size:
                break
            queue = queues[book]
            while queue:
                node = queue.pop(0)
                if (node.upstream_key is None or node.upstream_key in keys) and ground_truth_path(
                    ground_truth_root, node.key
                ).is_file():
                    chosen.append(node)
                    keys.add(node.key)
                    break
            if not queue:
                del queues[book]
    return chosen


# -- run -----------------------------------------------------------------------------------------


def _version_settings(settings: Settings, version: str, folder: Path, generation: dict[str, Any] | None = None) -> Settings:
    paths = settings.paths.model_copy(update={"database": folder / "store.duckdb", "output_root": folder / "output"})
    prompt = settings.prompt.model_copy(update={"version": version})
    model = settings.model
    if generation:  # re-validated; a budget given here replaces a configured level (and vice versa)
        merged = {**model.generation.model_dump(), **generation}
        for given, other in (("thinking_budget", "thinking_level"), ("thinking_level", "thinking_budget")):
            if given in generation and other not in generation:
                merged[other] = None
        model = type(model).model_validate({**model.model_dump(), "generation": merged})
    return settings.model_copy(update={"paths": paths, "prompt": prompt, "model": model})


def variant_label(version: str, generation: dict[str, Any]) -> str:
    """`v1.1` or `v1.1 thinking_budget=0 media_resolution=low`: one evaluated setting."""
    return " ".join([version, *(f"{k}={v}" for k, v in generation.items())])


def _model_name(settings: Settings, engine: SyncEngine) -> str:
    return getattr(engine, "model_name", None) or (
        settings.model.name if engine.pricing_mode != "local" else engine.name
    )


def _score(version: str, record: RecordRow, truth: OcrPageResult) -> tuple[PageScore, OcrPageResult | None]:
    output = None
    if record.status == RecordStatus.SUCCESS and record.output_path:
        output = read_output(Path(record.output_path))
    reference = normalise_text(truth.raw_ocr.full_text())
    hypothesis = normalise_text(output.raw_ocr.full_text()) if output else ""
    edits = levenshtein(reference, hypothesis)
    courses = match_courses(output.courses if output else [], truth.courses)
    return PageScore(
        version=version, key=record.key, valid=output is not None, status=str(record.status),
        error_type=None if output else (record.error_type or str(record.status).lower()),
        cer=cer(reference, hypothesis), ref_chars=len(reference), edits=edits,
        tp=courses.tp, fp=courses.fp, fn=courses.fn, attempts=record.attempts,
        prompt_tokens=record.prompt_tokens, output_tokens=record.output_tokens,
        cached_tokens=record.cached_tokens, cost_usd=record.cost_usd,
    ), output


def run_eval(
    settings: Settings,
    prompt_versions: Sequence[str],
    engine: SyncEngine,
    sample: int | None = None,
    *,
    store: RecordStore | None = None,
    tracker: Tracker | None = None,
    work_dir: Path | None = None,
    generations: Sequence[dict[str, Any]] = ({},),
    engine_for: Callable[[Settings], SyncEngine] | None = None,
) -> EvalReport:
    """Run `sample` ground-truth pages (all when None) under each prompt version × generation setting
    (e.g. `{"thinking_budget": 0}`; `engine_for` builds the engine for each setting) and score them.

    Results are saved to the main store's `eval_runs` / `eval_pages` tables (its records untouched)
    and, when the tracker is Braintrust, as one experiment per version and setting.
    """
    from ocr_assets.engines.gemini.context import provider_for  # the local OCR context loads lazily

    if not prompt_versions:
        raise EvalError("name at least one prompt version")
    truth_root = settings.paths.ground_truth_root
    if truth_root is None or not Path(truth_root).is_dir():
        raise EvalError(f"ground truth folder {truth_root} does not exist (paths.ground_truth_root)")
    registry = PromptRegistry(settings.prompt.registry_dir)
    for version in prompt_versions:
        registry.check(settings.prompt.name, version)  # PromptError before any inference
    scan = scan_corpus(settings.paths.images_root, settings.paths.allow_list_root, settings.filters)
    nodes = select_sample(scan.records(), Path(truth_root), sample)
    if not nodes:
        raise EvalError(
            f"no allow-listed page under {settings.paths.images_root} has ground truth under {truth_root}"
        )
    truths = {n.key: OcrPageResult.model_validate_json(ground_truth_path(truth_root, n.key).read_text("utf-8"))
              for n in nodes}
    store = store or open_store(settings)
    tracker = tracker if tracker is not None else make_tracker()
    created = datetime.now(UTC)
    run_id = created.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    root = Path(work_dir or Path(settings.paths.database).parent / "eval") / run_id
    model = _model_name(settings, engine)
    summaries: list[VersionSummary] = []
    pages: list[PageScore] = []
    for version, generation in [(v, g) for v in prompt_versions for g in generations]:
        label = variant_label(version, generation)
        folder = root / _safe(label)
        version_settings = _version_settings(settings, version, folder, generation)
        variant_engine = engine_for(version_settings) if engine_for and generation else engine
        version_store = RecordStore(version_settings.paths.database, max_attempts=settings.execution.max_attempts)
        version_store.add_planned(nodes)
        pipeline = Pipeline(version_settings, version_store, tracker=NullTracker(), registry=registry)
        provider = provider_for(version_settings, version_store,  # as in a run (`factory.drive`)
                                local_engine=variant_engine.pricing_mode == "local")
        pipeline.run_sync(variant_engine, prompt_version=version, provider=provider)
        scored: list[PageScore] = []
        outputs: dict[str, OcrPageResult | None] = {}
        records = version_store.get_many([n.key for n in nodes])
        for node in nodes:
            score, outputs[node.key] = _score(label, records[node.key], truths[node.key])
            scored.append(score)
        summary = summarise(label, scored)
        if hasattr(tracker, "log_experiment"):
            summary.experiment = tracker.log_experiment(  # type: ignore[attr-defined]
                f"{settings.prompt.name} {label} {run_id}",
                [_experiment_row(s, outputs[s.key], truths[s.key], engine.name, model) for s in scored],
                metadata={"run_id": run_id, "prompt_version": version, "engine": engine.name, "model": model,
                          "pages": len(scored), "generation": version_settings.model.generation.model_dump()},
            )
        summaries.append(summary)
        pages.extend(scored)
    report = EvalReport(run_id=run_id, created_at=created, engine=engine.name, model=model,
                        sample=[n.key for n in nodes], work_dir=root, versions=summaries, pages=pages)
    save_report(store, report)
    return report


def _safe(version: str) -> str:
    return re.sub(r"[^\w.\-]", "_", version)


def _experiment_row(
    score: PageScore, output: OcrPageResult | None, truth: OcrPageResult, engine: str, model: str
) -> dict[str, Any]:
    record = RecordKey.parse(score.key)
    return {
        "input": {"key": score.key, "prompt_version": score.version},
        "output": output.model_dump(mode="json") if output else {"error_type": score.error_type},
        "expected": truth.model_dump(mode="json"),
        "scores": {"char_accuracy": max(0.0, 1.0 - score.cer), "course_f1": score.course_f1,
                   "schema_valid": 1.0 if score.valid else 0.0},
        "metrics": {"prompt_tokens": score.prompt_tokens, "completion_tokens": score.output_tokens,
                    "prompt_cached_tokens": score.cached_tokens, "cost_usd": score.cost_usd,
                    "attempts": score.attempts},
        "metadata": {"engine": engine, "model": model, "book": str(record.book), "page": record.page,
                     "prompt_version": score.version, "status": score.status},
    }


# -- storage -------------------------------------------------------------------------------------

def save_report(store: RecordStore, report: EvalReport) -> None:
    """Write one evaluation into the store's eval tables, in one transaction."""
    import json

    created = report.created_at.replace(tzinfo=None)
    store.save_evaluation(
        runs=[
            (report.run_id, v.version, report.engine, report.model, created, v.pages, v.valid_pages,
             v.schema_valid_rate, v.cer, v.mean_page_cer, v.course_precision, v.course_recall, v.course_f1,
             v.attempts, v.prompt_tokens_per_page, v.output_tokens_per_page, v.cost_per_page,
             v.total_cost_usd, json.dumps(v.failures, sort_keys=True), v.experiment,
             str(report.work_dir / _safe(v.version)))
            for v in report.versions
        ],
        pages=[
            (report.run_id, p.version, p.key, p.valid, p.status, p.error_type, p.cer, p.ref_chars, p.edits,
             p.tp, p.fp, p.fn, p.attempts, p.prompt_tokens, p.output_tokens, p.cached_tokens, p.cost_usd)
            for p in report.pages
        ],
    )


def eval_runs(store: RecordStore, run_id: str | None = None) -> list[dict[str, Any]]:
    """Stored evaluation summaries (one row per run and version), newest run first."""
    return store.evaluations(run_id)

