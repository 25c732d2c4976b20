"""Local engines side by side on real scans: CER, CPU per page and courses invented on non-catalog pages.

Reads a corpus folder in the project's layout (images/, allow_list/, ground_truth/; default
`../shared/realpages_dev`, real book pages printed 1823-1920 whose ground truth has no courses) and
runs every allow-listed page through each engine in one run, page by page with the engines
interleaved (so a busy shared host slows them alike). Each engine runs one page at a time on one
thread, so CPU-s per page is the cost of a page on one core (decode, detection, recognition,
layout and extraction; Tesseract's own process included); pages/s is per pipeline.

Scores use the project's metric (`ocr_assets.evaluation`: edits / reference characters on
normalised text): corpus CER (all edits over all reference characters), median and worst pages.
On a page whose ground truth lists no course, every extracted course is a false positive.

Engines: `rapidocr` (the default tuning), `rapidocr-1.4.4` (RapidOCR's own stages: full-resolution
detection and its 0/180 classifier, as before issue 18), `tesseract` (needs `apt-get install
tesseract-ocr`), `transformers` (only with a CUDA device and `--model-dir`; skipped otherwise), and
RapidOCR variants given as `--variant NAME=det:960,orientation:verify,rec:40,runtime:onnxruntime,precision:f32`.

    python bench/accuracy_real.py [--corpus ../shared/realpages_dev] [--engines rapidocr,tesseract] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._results import record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ENGINES = "rapidocr,rapidocr-1.4.4,tesseract,transformers"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (Tesseract runs as a child process)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class EngineScore:
    name: str
    edits: int = 0
    ref_chars: int = 0
    page_cer: dict[str, float] = field(default_factory=dict)
    cpu_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    false_courses: dict[str, int] = field(default_factory=dict)
    content_types: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        pages = len(self.cpu_s)
        if not pages:
            return "no pages"
        worst = sorted(self.page_cer.items(), key=lambda kv: -kv[1])[:3]
        non_catalog = len(self.false_courses)
        invented = sum(self.false_courses.values())
        types = ", ".join(f"{k} {v}" for k, v in sorted(self.content_types.items()))
        text = (
            f"CER {self.edits / max(1, self.ref_chars):.4f} (median page {statistics.median(self.page_cer.values()):.4f}; "
            f"worst {', '.join(f'{k} {v:.3f}' for k, v in worst)}); "
            f"CPU {statistics.median(self.cpu_s):.2f} s/page median, {sum(self.cpu_s) / pages:.2f} mean; "
            f"{pages / self.wall_s:.2f} pages/s on one pipeline; "
            f"courses on non-catalog pages {invented} over {non_catalog} pages "
            f"({invented / max(1, non_catalog):.2f}/page); content types: {types}"
        )
        if self.failures:
            text += f"; failed pages {len(self.failures)}: " + "; ".join(f"{k}: {v}" for k, v in self.failures.items())
        return text


def parse_variant(spec: str):
    """`fast=det:960,orientation:verify,rec:40` → ("fast", RapidOcrTuning(...))."""
    from ocr_assets.engines.local.rapidocr_engine import RapidOcrTuning

    name, _, options = spec.partition("=")
    fields = {"det": "det_side", "orientation": "orientation", "rec": "rec_height", "runtime": "runtime",
              "precision": "precision"}
    values: dict[str, object] = {}
    for option in filter(None, options.split(",")):
        key, _, value = option.partition(":")
        if key not in fields:
            raise SystemExit(f"unknown variant option {key!r} ({', '.join(fields)})")
        if key in ("orientation", "runtime", "precision"):
            values[fields[key]] = value
        else:
            values[fields[key]] = None if value == "full" else int(value)
    return name.strip(), RapidOcrTuning(**values)


def build_backends(names: list[str], variants: list[str], model_dir: Path | None) -> tuple[dict, dict[str, str]]:
    """Backends that can run here, one page at a time on one thread; and why the others are skipped."""
    from ocr_assets.engines.local.rapidocr_engine import BASELINE_TUNING, RapidOcrBackend, RapidOcrTuning

    backends: dict[str, object] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if name == "rapidocr":
            backends[name] = RapidOcrBackend(parallel_pages=1, threads_per_page=1, tuning=RapidOcrTuning())
        elif name == "rapidocr-1.4.4":
            backends[name] = RapidOcrBackend(parallel_pages=1, threads_per_page=1, tuning=BASELINE_TUNING)
        elif name == "tesseract":
            from ocr_assets.engines.local.tesseract_engine import TesseractBackend, TesseractMissing

            try:
                backends[name] = TesseractBackend(parallel_pages=1)
            except TesseractMissing as exc:
                skipped[name] = str(exc)
        elif name == "transformers":
            from ocr_assets.engines.local.devices import cuda_device_count

            if cuda_device_count() == 0:
                skipped[name] = "no CUDA device here"
            elif model_dir is None:
                skipped[name] = "no --model-dir (a local Qwen2-VL directory)"
            else:
                from ocr_assets.engines.local.vlm_engine import TransformersVlmBackend

                backends[name] = TransformersVlmBackend(model_dir, "cuda:0")
        else:
            raise SystemExit(f"unknown engine {name!r}")
    for spec in variants:
        name, tuning = parse_variant(spec)
        backends[name] = RapidOcrBackend(parallel_pages=1, threads_per_page=1, tuning=tuning)
    return backends, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "realpages_dev")
    parser.add_argument("--engines", default=DEFAULT_ENGINES)
    parser.add_argument("--variant", action="append", default=[], help="NAME=det:960,orientation:verify,rec:40")
    parser.add_argument("--model-dir", type=Path, default=None, help="a local Qwen2-VL directory for transformers")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pages")
    parser.add_argument("--max-side", type=int, default=2000, help="settings.local.max_side")
    parser.add_argument("--pages-json", type=Path, default=None, help="write every page's scores here")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    # One thread per engine: CPU-s per page is then the cost on one core.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")

    from ocr_assets.core import PageRequest, PageSuccess, PromptIdentity
    from ocr_assets.engines.local.prefetch import prepare_page
    from ocr_assets.evaluation import ground_truth_path, levenshtein, normalise_text
    from ocr_assets.plan import scan_corpus
    from ocr_assets.schema import OcrPageResult
    from ocr_assets.store import PLAN_COLUMNS, PlannedRecord

    corpus = args.corpus.resolve()
    if not (corpus / "images").is_dir():
        raise SystemExit(f"no corpus at {corpus} (images/, allow_list/, ground_truth/)")
    scanned = scan_corpus(corpus / "images", corpus / "allow_list").nodes
    nodes = sorted((PlannedRecord(**dict(zip(PLAN_COLUMNS, node, strict=True))) for node in scanned),
                   key=lambda node: node.key)[: args.limit]
    identity = PromptIdentity(name="bench", version="0", vars_hash="")
    backends, skipped = build_backends([n for n in args.engines.split(",") if n], args.variant, args.model_dir)
    scores = {name: EngineScore(name) for name in backends}
    per_page: list[dict] = []
    if nodes:  # warm up each engine on the first page (first-call allocations are not a page's cost)
        first = PageRequest(key=nodes[0].key, book=nodes[0].book, page=nodes[0].page,
                            image_path=Path(nodes[0].image_path), prompt="", prompt_identity=identity)
        for backend in backends.values():
            backend.run_batch([prepare_page(first, args.max_side)])
    for node in nodes:
        truth = OcrPageResult.model_validate_json(
            ground_truth_path(corpus / "ground_truth", node.key).read_text("utf-8"))
        reference = normalise_text(truth.raw_ocr.full_text())
        catalog_page = bool(truth.courses) or truth.page_info.content_type == "course_listing"
        request = PageRequest(key=node.key, book=node.book, page=node.page, image_path=Path(node.image_path),
                              prompt="", prompt_identity=identity)
        row: dict[str, object] = {"key": node.key}
        for name, backend in backends.items():
            score = scores[name]
            cpu, wall = cpu_seconds(), time.perf_counter()
            page = prepare_page(request, args.max_side)
            outcome = page.failure or backend.run_batch([page])[0]
            score.cpu_s.append(cpu_seconds() - cpu)
            score.wall_s += time.perf_counter() - wall
            if not isinstance(outcome, PageSuccess):
                score.failures[node.key] = outcome.message
                hypothesis, result = "", None
            else:
                result = outcome.result
                hypothesis = normalise_text(result.raw_ocr.full_text())
            edits = levenshtein(reference, hypothesis)
            score.edits += edits
            score.ref_chars += len(reference)
            score.page_cer[node.key] = edits / max(1, len(reference))
            content_type = result.page_info.content_type if result else "failed"
            score.content_types[content_type] = score.content_types.get(content_type, 0) + 1
            if not catalog_page:
                score.false_courses[node.key] = len(result.courses) if result else 0
            row[name] = {"cer": round(score.page_cer[node.key], 4), "cpu_s": round(score.cpu_s[-1], 2),
                         "content_type": content_type, "courses": len(result.courses) if result else None}
        per_page.append(row)
        print(json.dumps(row), flush=True)
    for backend in backends.values():
        close = getattr(backend, "close", None)
        if callable(close):
            close()
    if args.pages_json:
        args.pages_json.write_text(json.dumps(per_page, indent=1))

    figures: dict[str, object] = {"corpus": f"{corpus.name}: {len(nodes)} pages"}
    for name, score in scores.items():
        figures[name] = score.summary()
    for name, reason in skipped.items():
        figures[f"{name} (skipped)"] = reason
    notes = ("one page at a time per engine, one thread each (OMP_THREAD_LIMIT=1 for Tesseract), engines "
             "interleaved page by page; CPU-s = user+system of the process and its children per page")
    if args.no_record:
        print(json.dumps(figures, indent=1))
    else:
        record(f"accuracy on real scans: local engines side by side ({len(nodes)} pages)", figures, notes=notes)


if __name__ == "__main__":
    main()
