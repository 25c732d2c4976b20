"""Store cost as the corpus grows: runnable(1000), claim(100), apply_outcomes(100) and a 500-record
ingest at 10k, 100k and 1M records, in one run.

Target (issue 17): claim and apply at 1M within 2x of their 10k cost (flat, not linear).
Each store is planned in bulk (books of 1,000 pages, a chain break every 50), then every figure is
the median of `--rounds` rounds (interleaved across the sizes), timed inside one `store.session()`
so the open/close (a checkpoint, timed on its own) is not mixed into the statement costs. Every round claims fresh runnable records
(longest chain first, as the submitter does) and applies realistic outcomes (the output logged by reference, as ingest does).

    python bench/store_scale.py [--sizes 10000,100000,1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._results import record  # noqa: E402
from ocr_assets.store import PLAN_COLUMNS, ClaimItem, RecordOutcome, RecordStore  # noqa: E402

PER_BOOK = 1000


def plan_nodes(records: int) -> list[tuple]:
    """Plan tuples in `PLAN_COLUMNS` order: books of PER_BOOK pages, chains broken every 50 pages."""
    nodes = []
    for i in range(records):
        book_no, page = divmod(i, PER_BOOK)
        page += 1
        state, school, year = f"S{book_no % 10}", f"school{book_no // 10}", 1900
        book = f"{state}:{school}:{year}"
        head = page % 50 == 1
        remaining = 49 - (page - 1) % 50
        nodes.append((f"{book}:{page}", book, state, school, year, page, f"/img/{page}.jpg", f"/allow/{page}.json",
                      None if head else f"{book}:{page - 1}", remaining))
    assert len(nodes[0]) == len(PLAN_COLUMNS)
    return nodes


def _items(keys: list[str]) -> list[ClaimItem]:
    return [ClaimItem(key=k, batch_index=i, prompt_name="page_ocr", prompt_version="v1.1", prompt_vars_hash="h")
            for i, k in enumerate(keys)]


def _outcomes(keys: list[str], *, fail_every: int = 10) -> list[RecordOutcome]:
    return [
        RecordOutcome(key=k, success=True, output_path=f"/out/{k}.json", output_sha256="x",
                      engine="gemini-batch", pricing_mode="batch", prompt_tokens=1500, output_tokens=900,
                      cost_usd=0.0004, realtime_cost_usd=0.0008, rendered_prompt="Transcribe the page. " * 40)
        if i % fail_every else
        RecordOutcome(key=k, success=False, error_class="retryable", error_type="http_503", message="overloaded",
                      engine="gemini-batch", pricing_mode="batch")
        for i, k in enumerate(keys)
    ]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build(workdir: Path, records: int) -> tuple[RecordStore, float]:
    db = workdir / f"store-{records}.duckdb"
    for leftover in workdir.glob(f"{db.name}*"):
        leftover.unlink()
    store = RecordStore(db, max_attempts=3)
    return store, _timed(lambda: store.add_planned(plan_nodes(records)))


def one_round(store: RecordStore, r: int) -> dict[str, float]:
    """One round's timings (s), inside one session."""
    with store.session():
        runnable_s = _timed(lambda: store.runnable(1000))
        keys = [row.key for row in store.runnable(100)]
        claim_s = _timed(lambda: store.claim(f"c{r}", _items(keys), engine="gemini-batch", model="m"))
        outcomes = _outcomes(keys)
        apply_s = _timed(lambda: store.apply_outcomes(f"c{r}", outcomes))
        keys = [row.key for row in store.runnable(500)]
        outcomes = _outcomes(keys)

        def ingest() -> None:
            store.claim(f"i{r}", _items(keys), engine="gemini-batch", model="m")
            store.apply_outcomes(f"i{r}", outcomes)

        ingest_s = _timed(ingest)
    open_close_s = _timed(lambda: store.kv_get("x"))
    return {"runnable_1000_ms": runnable_s, "claim_100_ms": claim_s, "apply_100_ms": apply_s,
            "ingest_500_ms": ingest_s, "open_call_close_ms": open_close_s}


def measure(workdir: Path, sizes: list[int], rounds: int) -> dict[int, dict[str, float]]:
    """Median figures per size. Rounds are interleaved across the sizes, so a shared host's load
    swings hit every size alike instead of whichever size ran at the wrong moment."""
    stores = {n: build(workdir, n) for n in sizes}
    samples: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    for r in range(rounds):
        for n in sizes:
            samples[n].append(one_round(stores[n][0], r))
    results = {}
    for n in sizes:
        results[n] = {"plan_s": stores[n][1]} | {
            name: 1000 * statistics.median(sample[name] for sample in samples[n]) for name in samples[n][0]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ocr_assets_store_scale"))
    parser.add_argument("--notes", default="")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = measure(args.workdir, sizes, args.rounds)
    shutil.rmtree(args.workdir, ignore_errors=True)
    figures: dict[str, object] = {}
    for n, found in results.items():
        figures[f"{n:,} records"] = ", ".join(f"{name} {value:.1f}" for name, value in found.items())
    small, large = results[sizes[0]], results[sizes[-1]]
    for name in ("claim_100_ms", "apply_100_ms", "runnable_1000_ms", "ingest_500_ms"):
        figures[f"{name} {sizes[-1]:,} / {sizes[0]:,}"] = f"{large[name] / small[name]:.2f}x"
    flat = all(large[n] <= 2 * small[n] for n in ("claim_100_ms", "apply_100_ms"))
    figures["target (claim and apply within 2x)"] = "met" if flat else "NOT met"
    record("Store scale (bench/store_scale.py)", figures,
           notes="medians inside one store session; open_call_close_ms is one store call outside a session "
                 "(lock, open, migrations check, call, close with checkpoint). " + args.notes)
    sys.exit(0 if flat else 1)


if __name__ == "__main__":
    main()
