"""bench/accuracy_real.py on a corpus the test writes itself (the real pages need not be present)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.accuracy_real import parse_variant
from ocr_assets.engines.local.rapidocr_engine import RapidOcrTuning
from ocr_assets.sample_corpus.books import generate_books

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("spec", "name", "tuning"),
    [
        ("fast=det:736,rec:40", "fast", RapidOcrTuning(det_side=736, rec_height=40)),
        ("full=det:full,orientation:classifier", "full", RapidOcrTuning(det_side=None, orientation="classifier")),
        ("plain=", "plain", RapidOcrTuning()),
        ("ort=runtime:onnxruntime", "ort", RapidOcrTuning(runtime="onnxruntime")),
        ("exact=precision:f32", "exact", RapidOcrTuning(precision="f32")),
    ],
)
def test_variants_name_a_rapidocr_tuning(spec: str, name: str, tuning: RapidOcrTuning) -> None:
    assert parse_variant(spec) == (name, tuning)


def test_an_unknown_variant_option_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown variant option"):
        parse_variant("x=threads:4")


def test_the_bench_scores_each_engine_and_says_why_one_was_skipped(tmp_path: Path) -> None:
    keys = generate_books(tmp_path, books=1, pages=2, seed=5, kinds=("genealogy", "prose"))
    pages_json = tmp_path / "pages.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "accuracy_real.py"), "--corpus", str(tmp_path),
         "--engines", "rapidocr,transformers", "--pages-json", str(pages_json), "--no-record"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    pages = json.loads(pages_json.read_text())
    assert [page["key"] for page in pages] == keys
    for page in pages:
        assert page["rapidocr"]["courses"] == 0 and page["rapidocr"]["content_type"] == "other"
        assert page["rapidocr"]["cer"] < 0.1 and page["rapidocr"]["cpu_s"] > 0
    assert "courses on non-catalog pages 0 over 2 pages" in done.stdout
    assert '"transformers (skipped)"' in done.stdout
