"""Store ingest throughput: records/s for parse + validate + atomic write + state update.

Plans a corpus of N allow-listed pages (empty files), claims them into batches of `--batch-size`
(as the batch runner does), then feeds each batch's realistic model answer TEXT (JSON of an
`OcrPageResult` with ~20 text blocks and ~5 courses, a few percent malformed) through
`parse_page_result` + `Pipeline.ingest` (outputs written atomically, made durable by one sync per
batch, outcomes applied in one transaction) and marks the batch INGESTED. Only that part is timed; answer texts
and prompts are built beforehand. Target (issue 8): ≥ 2,000 records/s on 2 cores.

    python bench/ingest_throughput.py --records 20000 [--batch-size 500] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._results import record  # noqa: E402
from ocr_assets.core import PageFailure, PageOutcome, PageSuccess, TokenUsage  # noqa: E402
from ocr_assets.outputs import file_sha256  # noqa: E402
from ocr_assets import pipeline as pipeline_module  # noqa: E402
from ocr_assets.pipeline import Pipeline  # noqa: E402
from ocr_assets.plan import build_plan  # noqa: E402
from ocr_assets.schema import ErrorClass, OutputParseError, parse_page_result  # noqa: E402
from ocr_assets.settings import load_settings  # noqa: E402
from ocr_assets.store import BatchState, RecordStatus  # noqa: E402
from tests.fixtures.corpus import tiny_jpeg  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGET = 2000.0
ENGINE = "gemini-batch"

_WORDS = ("algebra geometry trigonometry analytic calculus rhetoric composition literature latin greek "
          "french german physics chemistry botany zoology geology astronomy history civics economics "
          "philosophy logic ethics psychology pedagogy drawing music hygiene surveying mechanics recitations "
          "lectures laboratory term hours credit prerequisite semester elective required freshman sophomore "
          "junior senior professor instructor department course text edition second revised").split()
_DEPTS = ("Mathematics", "English", "Ancient Languages", "Modern Languages", "Physics", "Chemistry",
          "Biology", "History", "Philosophy", "Education")


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def answer_text(key: str, page: int, rng: random.Random) -> str:
    """A realistic model answer: ~20 text blocks, ~5 courses with topics, textbooks and instructors."""
    state, school, year, _ = key.split(":")
    blocks = [{"block_id": 1, "position": [80, 60, 920, 110], "text": f"{school.upper()} — CATALOG {year}",
               "font_style": "bold"}]
    y = 130
    for i in range(2, 21):
        words = rng.randint(18, 45)
        blocks.append({"block_id": i, "position": [80, y, 920, y + 40], "text": _sentence(rng, words),
                       "font_style": rng.choice(("regular", "regular", "italic", "bold"))})
        y += 55
    courses = []
    for c in range(5):
        dept = rng.choice(_DEPTS)
        courses.append({
            "course_name": f"{dept[:4].upper()} {page}{c:02d}. {_sentence(rng, 3)[:-1]}",
            "department": dept, "level": rng.choice(("undergraduate", "graduate", None)),
            "topics": [rng.choice(_WORDS) for _ in range(rng.randint(2, 5))],
            "textbooks": [{"title": _sentence(rng, 4)[:-1], "author": f"{rng.choice(_WORDS).title()}, A. B."}],
            "term": rng.choice(("Fall", "Spring", "Both terms")),
            "instructors": [f"Professor {rng.choice(_WORDS).title()}"],
            "description": _sentence(rng, rng.randint(15, 35)),
        })
    return json.dumps({
        "raw_ocr": {"text_blocks": blocks, "layout_description": "two columns of course descriptions"},
        "page_info": {"page_number": page, "is_complete_page": True, "content_type": "course_listing"},
        "school_name": school, "catalog_year": int(year), "academic_year": f"{year}-{int(year) + 1}",
        "courses": courses,
    }, ensure_ascii=False)


def generate(root: Path, records: int, per_book: int) -> None:
    """Image + allow-list files, `per_book` contiguous pages a book (chains are irrelevant here).

    Every image is a hard link to one tiny valid JPEG: the plan checks each new image's header."""
    seed = root / "seed.jpg"
    seed.write_bytes(tiny_jpeg())
    for b in range((records + per_book - 1) // per_book):
        state, school, year = f"S{b % 10}", f"school{b // 10}", 1900 + b % 30
        img = root / "images" / state / school / str(year)
        allow = root / "allow_list" / state / school / str(year)
        img.mkdir(parents=True, exist_ok=True)
        allow.mkdir(parents=True, exist_ok=True)
        for page in range(1, min(per_book, records - b * per_book) + 1):
            os.link(seed, img / f"{page}.jpg")
            os.close(os.open(allow / f"{page}.json", os.O_CREAT | os.O_WRONLY, 0o644))


def outcome_for(key: str, text: str) -> PageOutcome:
    """What the batch path does with one answer line's text: parse + validate, or a classified failure."""
    usage = TokenUsage(prompt_tokens=1800, output_tokens=len(text) // 4)
    try:
        return PageSuccess(key=key, result=parse_page_result(text), usage=usage)
    except OutputParseError as exc:
        return PageFailure(key=key, error_class=ErrorClass.RETRYABLE, error_type="malformed_json",
                           message=str(exc), raw_response=text, usage=usage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--per-book", type=int, default=200)
    parser.add_argument("--malformed", type=float, default=0.02, help="share of answers that are broken JSON")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ocr_assets_ingest_throughput"))
    parser.add_argument("--profile", action="store_true", help="cProfile the timed part and print the top")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true",
                        help="leave the work folder in place (deleting many files slows creating files "
                             "on some disks for minutes: back-to-back runs keep theirs and clean up after)")
    args = parser.parse_args()

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    generate(args.workdir, args.records, args.per_book)
    env = {
        "OCR_ASSETS_PATHS__IMAGES_ROOT": str(args.workdir / "images"),
        "OCR_ASSETS_PATHS__ALLOW_LIST_ROOT": str(args.workdir / "allow_list"),
        "OCR_ASSETS_PATHS__OUTPUT_ROOT": str(args.workdir / "output"),
        "OCR_ASSETS_PATHS__DATABASE": str(args.workdir / "state" / "store.duckdb"),
        "OCR_ASSETS_PATHS__GROUND_TRUTH_ROOT": "",
        "OCR_ASSETS_PROMPT__REGISTRY_DIR": str(REPO / "prompts"),
        "OCR_ASSETS_ENGINE": ENGINE,
        "OCR_ASSETS_CONFIG": str(args.workdir / "absent.yaml"),
    }
    settings = load_settings(None, environ=env)
    pipeline = Pipeline(settings)
    plan = build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    assert plan.pages_found == args.records, plan

    # Everything but the timed part: records, prompts, claims and answer texts.
    rng = random.Random(args.seed)
    records = pipeline.store.records()
    batches = []
    prep_start = time.perf_counter()
    for start in range(0, len(records), args.batch_size):
        chunk = records[start:start + args.batch_size]
        requests, problems = pipeline.build_requests(chunk)
        assert not problems, problems[:3]
        batch_id = f"bench-{start // args.batch_size:05d}"
        claimed = pipeline.store.claim(batch_id, pipeline.claim_items(requests), engine=ENGINE,
                                       model=settings.model.name, require_upstream=False)
        assert len(claimed) == len(requests)
        texts = []
        for r in requests:
            text = answer_text(r.key, r.page, rng)
            if rng.random() < args.malformed:
                text = text[: len(text) // 2]  # cut short: not valid JSON
            texts.append((r.key, text))
        batches.append((batch_id, requests, texts))
    prep_s = time.perf_counter() - prep_start
    mean_bytes = sum(len(t) for _, _, texts in batches for _, t in texts) / args.records

    files_s = 0.0
    write_outputs = pipeline_module.write_outputs

    def timed_write_outputs(files):  # the output files' share of the write + apply time
        nonlocal files_s
        start = time.perf_counter()
        try:
            return write_outputs(files)
        finally:
            files_s += time.perf_counter() - start

    pipeline_module.write_outputs = timed_write_outputs
    profiler = cProfile.Profile() if args.profile else None
    per_batch: list[float] = []
    parse_s = 0.0
    total_start = time.perf_counter()
    if profiler:
        profiler.enable()
    for batch_id, requests, texts in batches:
        t0 = time.perf_counter()
        outcomes = [outcome_for(key, text) for key, text in texts]
        t1 = time.perf_counter()
        with pipeline.store.session():  # one ingest is one unit of work, as in `ingest_batch`
            pipeline.ingest(batch_id, requests, outcomes, engine=ENGINE, pricing_mode="batch")
            pipeline.store.set_batch_state(batch_id, BatchState.INGESTED)
        per_batch.append(time.perf_counter() - t0)
        parse_s += t1 - t0
    if profiler:
        profiler.disable()
    total_s = time.perf_counter() - total_start

    counts = pipeline.store.status_counts()
    succeeded = counts.get(str(RecordStatus.SUCCESS), 0)
    failed = counts.get(str(RecordStatus.RETRYABLE_FAILURE), 0)
    assert succeeded + failed == args.records, counts
    sample = pipeline.store.records(status=RecordStatus.SUCCESS, limit=50)
    assert all(file_sha256(Path(r.output_path)) == r.output_sha256 for r in sample)
    rate = args.records / total_s
    per_batch.sort()
    record(
        f"ingest throughput: {args.records:,} records in batches of {args.batch_size}",
        {
            "records/s (parse + validate + atomic write + state update)":
                f"{rate:,.0f} (target ≥ {TARGET:,.0f}) — {'met' if rate >= TARGET else 'NOT met'}",
            "wall time (s)": f"{total_s:.2f}",
            "parse + validate share (s)": f"{parse_s:.2f}",
            "write + apply share (s)": f"{total_s - parse_s:.2f}",
            "  of which output files (s)": f"{files_s:.2f} ({files_s / max(succeeded, 1) * 1e6:,.0f} µs a file)",
            "  of which the store (open, lookups, transaction, close) (s)": f"{total_s - parse_s - files_s:.2f}",
            "per batch median / max (s)": f"{per_batch[len(per_batch) // 2]:.3f} / {per_batch[-1]:.3f}",
            "answer size (bytes, mean)": f"{mean_bytes:,.0f}",
            "outcomes": f"{succeeded:,} SUCCESS, {failed:,} RETRYABLE_FAILURE (malformed answers)",
            "setup (plan, prompts, claims, answers) (s)": f"{prep_s:.1f}",
        },
        notes="one store session and one DuckDB transaction per batch (set-based inserts); outputs rendered once, "
              "written to temp files, one sync, renamed, one fsync per folder; the log names each output file "
              "(path + sha256) instead of holding a copy. The µs a file depend on the disk: on ext4 without a journal, "
              "creating files is several times slower for minutes after many were deleted (bench/RESULTS.md)",
    )
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
        print(out.getvalue())
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
