"""Plan a freshly generated corpus of N allow-listed pages and time runnable(limit=1000) and claim(100).

Each allow-list file holds a real first-pass label (`{"page": N, "label": ..., "confidence": ...}`,
as the sample corpus and the real pages have), so the plan parses every one.
`--reuse` replans a corpus kept from an earlier run (its figures are marked so).
Targets (issue 3): 1,000,000 pages planned in ≤ 60 s and ≤ 2 GiB peak RSS on 2 cores;
runnable(limit=1000) on that store in ≤ 0.5 s.

    python bench/plan_scale.py --pages 1000000 [--workdir /tmp/plan_scale]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._results import record  # noqa: E402


def generate(root: Path, pages: int, per_book: int) -> float:
    """Linked JPEGs + JSON allow-list labels: 10 states × schools × years, `per_book` pages a book, gaps every 50.

    Every image is a hard link to one tiny JPEG: the plan checks each new image's header, so empty
    files would all be reported, and a million real files would cost disk for nothing.
    """
    start = time.perf_counter()
    books = max(1, pages // per_book)
    buf = io.BytesIO()
    Image.new("L", (8, 8), 255).save(buf, format="JPEG")
    seeds = root / "seeds"
    seeds.mkdir(parents=True, exist_ok=True)
    written = 0
    for b in range(books):
        state, school, year = f"S{b % 10}", f"school{(b // 10) % 100}", 1850 + b // 1000
        img = root / "images" / state / school / str(year)
        allow = root / "allow_list" / state / school / str(year)
        img.mkdir(parents=True, exist_ok=True)
        allow.mkdir(parents=True, exist_ok=True)
        page = 0
        while written < pages and page < per_book + per_book // 50:
            page += 1
            if page % 50 == 0:
                continue  # a gap: chains break
            seed = seeds / f"{written // 50_000}.jpg"  # a file system allows ~65k links to one inode
            if written % 50_000 == 0:
                seed.write_bytes(buf.getvalue())
            os.link(seed, img / f"{page}.jpg")
            fd = os.open(allow / f"{page}.json", os.O_CREAT | os.O_WRONLY, 0o644)
            os.write(fd, b'{"page": %d, "label": "%s", "confidence": 0.9%d}\n'
                     % (page, b"course_listing" if page % 7 else b"front_matter", page % 10))
            os.close(fd)
            written += 1
            if page - page // 50 >= per_book:
                break
    return time.perf_counter() - start


CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from ocr_assets.plan import build_plan
from ocr_assets.store import RecordStore
root = Path(sys.argv[1])
store = RecordStore(root / "store.duckdb")
t = time.perf_counter()
result = build_plan(store, root / "images", root / "allow_list")
plan_s = time.perf_counter() - t
from ocr_assets.store import ClaimItem
timings, claims = [], []
with store.session():  # the statements, not the open/close
    for _ in range(5):
        t = time.perf_counter(); rows = store.runnable(1000); timings.append(time.perf_counter() - t)
    for i in range(5):
        items = [ClaimItem(key=r.key, batch_index=n, prompt_name="page_ocr", prompt_version="v1",
                           prompt_vars_hash="h") for n, r in enumerate(store.runnable(100))]
        t = time.perf_counter(); store.claim(f"bench-{i}", items, engine="local", model="m")
        claims.append(time.perf_counter() - t)
print(json.dumps({"plan_s": plan_s, "pages": result.pages_found, "books": result.books_found,
                  "report": len(result.report), "runnable_s": sorted(timings)[2], "runnable_rows": len(rows),
                  "claim_s": sorted(claims)[2],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--per-book", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ocr_assets_plan_scale"))
    parser.add_argument("--keep", action="store_true", help="keep the generated corpus")
    parser.add_argument("--reuse", action="store_true", help="reuse a corpus kept in --workdir")
    args = parser.parse_args()
    if args.reuse and (args.workdir / "allow_list").is_dir():
        gen_s = 0.0
        for leftover in args.workdir.glob("store.duckdb*"):
            leftover.unlink()
    else:
        shutil.rmtree(args.workdir, ignore_errors=True)
        args.workdir.mkdir(parents=True)
        gen_s = generate(args.workdir, args.pages, args.per_book)
    out = subprocess.run([sys.executable, "-c", CHILD, str(args.workdir)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    record(
        f"plan scale: {figures['pages']:,} pages ({'reused corpus' if args.reuse else 'fresh corpus, JSON labels'})",
        {
            "corpus generation (s)": f"{gen_s:.1f}" if gen_s else "reused",
            "plan wall time (s)": f"{figures['plan_s']:.1f} (target ≤ 60)",
            "pages/s": f"{figures['pages'] / figures['plan_s']:,.0f}",
            "peak RSS (MiB)": f"{figures['peak_rss_mib']:,.0f} (target ≤ 2048)",
            "books": figures["books"],
            "report entries": figures["report"],
            "runnable(limit=1000) median of 5 (s)": f"{figures['runnable_s']:.3f} (target ≤ 0.5)",
            "claim(100) median of 5 (s)": f"{figures['claim_s']:.3f}",
        },
    )
    if not (args.keep or args.reuse):
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
