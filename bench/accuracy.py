"""Accuracy of the local engine on the synthetic catalog corpus: CER and course precision/recall/F1.

Generates the sample corpus (`ocr_assets.sample_corpus.generate_corpus`: rendered, degraded catalog
pages with exact ground truth) into a temp folder — or reads an existing one (`--corpus data/sample`)
— runs every allow-listed page through the local engine with the real `Pipeline` (page chains and
all, via `ocr_assets.evaluation.run_eval`), and scores each page against its ground truth with the
evaluation module (`cer` on normalised text, multiset course match on name + department). Figures are
printed per ground-truth content type and overall, and appended to bench/RESULTS.md.

`--non-catalog-books N` adds N books of worn non-catalog pages (`ocr_assets.sample_corpus.books`: prose,
verse, genealogy, title page, index; 1-bit, speckled, skewed) and counts the courses found on pages
whose ground truth has none.

    python bench/accuracy.py --books 8 --pages 6 [--seed 0] [--corpus data/sample] [--non-catalog-books 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._results import record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--books", type=int, default=8)
    parser.add_argument("--pages", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=None,
                        help="an existing corpus (images/, allow_list/, ground_truth/) instead of generating one")
    parser.add_argument("--non-catalog-books", type=int, default=0, help="books of non-catalog pages to add")
    parser.add_argument("--local-engine", default="rapidocr",
                        help="settings.local.engine (rapidocr | tesseract | transformers)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ocr_assets_accuracy"))
    args = parser.parse_args()
    if args.corpus is not None and args.non_catalog_books:
        parser.error("--non-catalog-books adds pages to the generated corpus, never to an existing --corpus")

    from ocr_assets.engines.factory import make_sync_engine
    from ocr_assets.evaluation import ground_truth_path, run_eval, summarise
    from ocr_assets.sample_corpus import generate_corpus
    from ocr_assets.schema import OcrPageResult
    from ocr_assets.settings import load_settings
    from ocr_assets.store import RecordStore
    from ocr_assets.tracking import NullTracker

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    if args.corpus is None:
        corpus = args.workdir / "corpus"
        start = time.perf_counter()
        summary = generate_corpus(corpus, books=args.books, pages=args.pages, seed=args.seed)
        described = (f"generated {summary.pages} pages in {len(summary.books)} books (seed {args.seed}), "
                     f"{summary.allow_listed} allow-listed, in {time.perf_counter() - start:.1f} s")
    else:
        corpus = args.corpus.resolve()
        described = f"existing corpus {args.corpus}"
    if args.non_catalog_books:
        from ocr_assets.sample_corpus.books import generate_books

        added = generate_books(corpus, books=args.non_catalog_books, pages=5, seed=args.seed)
        described += f", plus {len(added)} non-catalog pages in {args.non_catalog_books} book(s) (sample_corpus.books)"
    env = {
        "OCR_ASSETS_ENGINE": "local",
        "OCR_ASSETS_PATHS__IMAGES_ROOT": str(corpus / "images"),
        "OCR_ASSETS_PATHS__ALLOW_LIST_ROOT": str(corpus / "allow_list"),
        "OCR_ASSETS_PATHS__GROUND_TRUTH_ROOT": str(corpus / "ground_truth"),
        "OCR_ASSETS_PATHS__OUTPUT_ROOT": str(args.workdir / "output"),
        "OCR_ASSETS_PATHS__DATABASE": str(args.workdir / "state" / "store.duckdb"),
        "OCR_ASSETS_PROMPT__REGISTRY_DIR": str(REPO / "prompts"),
        "OCR_ASSETS_LOCAL__ENGINE": args.local_engine,
        "OCR_ASSETS_LOCAL__DEVICE": args.device,
        "OCR_ASSETS_CONFIG": str(args.workdir / "absent.yaml"),
    }
    settings = load_settings(None, environ=env)
    engine = make_sync_engine(settings)
    start = time.perf_counter()
    report = run_eval(settings, [settings.prompt.version], engine, None,
                      store=RecordStore(settings.paths.database), tracker=NullTracker(),
                      work_dir=args.workdir / "eval")
    run_s = time.perf_counter() - start

    truth_root = Path(settings.paths.ground_truth_root)
    by_type: dict[str, list] = defaultdict(list)
    for page in report.pages:
        truth = OcrPageResult.model_validate_json(ground_truth_path(truth_root, page.key).read_text("utf-8"))
        by_type[truth.page_info.content_type].append(page)

    def line(summary) -> str:
        return (f"pages {summary.pages}, valid {summary.schema_valid_rate:.0%}, CER {summary.cer:.3f} "
                f"(mean page {summary.mean_page_cer:.3f}), courses P {summary.course_precision:.3f} "
                f"R {summary.course_recall:.3f} F1 {summary.course_f1:.3f}")

    overall = summarise("overall", report.pages)
    courses_expected = sum(p.tp + p.fn for p in report.pages)
    figures: dict[str, object] = {
        "corpus": described,
        "engine": f"{engine.name} (local.engine={args.local_engine}, device={args.device})",
        "overall": line(overall),
        "ground-truth courses on the scored pages": courses_expected,
    }
    for content_type in sorted(by_type):
        figures[f"content type {content_type}"] = line(summarise(content_type, by_type[content_type]))
    non_catalog = [page for content_type, pages in by_type.items() if content_type != "course_listing"
                   for page in pages if page.tp + page.fn == 0]
    figures["courses found on pages whose ground truth has none"] = (
        f"{sum(page.fp for page in non_catalog)} over {len(non_catalog)} pages")
    if overall.failures:
        figures["pages without a valid output"] = ", ".join(f"{k}: {v}" for k, v in sorted(overall.failures.items()))
    figures["run time (s)"] = f"{run_s:.1f} ({len(report.pages) / run_s:.2f} pages/s, model load included)"
    record(f"accuracy: local engine on the synthetic corpus ({len(report.pages)} pages)", figures,
           notes="CER = edits / reference chars over normalised text (corpus-level); courses matched on "
                 "(normalised name, department); the local engine ignores the prompt")
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
