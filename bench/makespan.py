"""Makespan of a chained corpus through Gemini Batch (emulator), per context source, and cost per page.

Plans `--pages` pages over `--books` books whose page chains vary in length up to `--longest` (tiny
blank JPEGs), then runs `run_batches` against a local emulator whose batches take `--latency` s, with
`--batches` concurrent batch slots and the instant echo answerer. With `upstream_output` context a
page waits for its upstream's answer, so the makespan is bounded below by one batch latency per chain
step; the target (issue 9) is makespan ≤ 1.3 × (longest chain × latency) + 10 s. With `local_ocr`
context (a local OCR pass over the upstream image) every page is runnable at once, so the makespan is
about one latency per wave of `batches × batch_size_limit` records, whatever the chain length, plus
the context pass itself: those runs use distinct rendered catalog pages (one blank image repeated
was recognised once and cached), and report the pass's pages/s beside the waves. The pass costs
seconds of CPU per page: size `--pages` and `--timeout` to match (2,000 pages ≈ an hour on 2 cores).

The cost section (issue 4) runs `--cost-pages` single-page books through gemini-batch,
gemini-realtime and gemini-batch with a context cache, and reads cost per page from the cost ledger:
batch should be 50% of real-time for the same token counts, and less again with caching.

    python bench/makespan.py [--context both|upstream_output|local_ocr] [--pages 2000 --books 100 --longest 40]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._results import record  # noqa: E402
from tests.fixtures.corpus import tiny_jpeg  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONTEXTS = ("upstream_output", "local_ocr")
SLACK = 1.3  # the bound: SLACK × (longest chain × latency) + FIXED_S
FIXED_S = 10.0


def chain_lengths(books: int, pages: int, longest: int) -> list[int]:
    """`books` chain lengths in [1, longest] summing to `pages`, spread evenly (one chain of `longest`)."""
    if not books <= pages <= books * longest:
        raise ValueError(f"{pages} pages do not fit {books} books of 1..{longest} pages")
    # An even ramp from 1 to `longest`, then trimmed or padded (never touching the longest chain)
    # until the total is right: deterministic, and every length from short to long is present.
    lengths = [1 + round((longest - 1) * i / max(1, books - 1)) for i in range(books)]
    i = 0
    while (excess := sum(lengths) - pages) != 0:
        j = i % (books - 1)  # the last book keeps the longest chain
        step = 1 if excess < 0 else -1
        if 1 <= lengths[j] + step <= longest:
            lengths[j] += step
        i += 1
    return lengths


def rendered_pages(count: int, workdir: Path) -> list[bytes]:
    """`count` distinct rendered catalog pages (JPEG bytes), so a local OCR pass recognises each one."""
    from ocr_assets.sample_corpus import generate_corpus

    out = workdir / "rendered"
    shutil.rmtree(out, ignore_errors=True)
    generate_corpus(out, books=-(-count // 6), pages=6, seed=11, workers=os.cpu_count() or 1)
    pages = [path.read_bytes() for path in sorted((out / "images").rglob("*.jpg"))][:count]
    shutil.rmtree(out, ignore_errors=True)
    return pages


def write_corpus(root: Path, lengths: list[int], images: list[bytes] | None = None) -> None:
    """One book per chain: pages 1..n, all allow-listed, so each book is one chain of n pages.

    Every page is the same blank JPEG unless `images` gives one distinct image per page.
    """
    data = tiny_jpeg()
    index = 0
    for number, length in enumerate(lengths):
        rel = Path(f"S{number % 10}") / f"school{number // 10}" / str(1900 + number)
        for kind in ("images", "allow_list"):
            (root / kind / rel).mkdir(parents=True, exist_ok=True)
        for page in range(1, length + 1):
            (root / "images" / rel / f"{page}.jpg").write_bytes(images[index] if images else data)
            (root / "allow_list" / rel / f"{page}.json").write_text('{"label": "curricular"}')
            index += 1


def time_context_pass(provider) -> list[float]:
    """Wrap `provider.contexts` so the seconds it spends (a local OCR pass: model load included) add up
    in the returned one-item list; a None provider (upstream_output context) costs nothing."""
    spent = [0.0]
    if provider is not None:
        contexts = provider.contexts

        def timed(records):
            start = time.perf_counter()
            try:
                return contexts(records)
            finally:
                spent[0] += time.perf_counter() - start

        provider.contexts = timed
    return spent


def write_settings(root: Path, base_url: str, *, engine: str = "gemini-batch", max_batches: int = 10,
                   context: str = "upstream_output", cached_content: str | None = None) -> Path:
    data = {
        "engine": engine,
        "paths": {"images_root": str(root / "images"), "allow_list_root": str(root / "allow_list"),
                  "output_root": str(root / "output"), "database": str(root / "state" / "store.duckdb"),
                  "ground_truth_root": None},
        "prompt": {"registry_dir": str(REPO / "prompts")},
        "execution": {"max_concurrent_batches": max_batches, "realtime_concurrency": 4},
        "gemini": {"base_url": base_url, "context_source": context, "cached_content": cached_content,
                   "retry_initial_wait_s": 0.1, "retry_max_wait_s": 1.0, "hold_backoff_s": 0.5},
    }
    path = root / "ocr_assets.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _serve_emulator(latency: float, urls, stop) -> None:
    from ocr_assets.engines.emulator import EmulatorConfig, EmulatorServer, make_answerer

    server = EmulatorServer(EmulatorConfig(batch_latency_s=latency, inline_wait_s=0.5),
                            answerer=make_answerer("echo")).start()
    urls.put(server.url)
    stop.wait()
    server.stop()


@contextmanager
def emulator_at(latency: float, *, separate: bool) -> Iterator[str]:
    """The emulator's URL: in its own process by default, as the real API is remote (in this process
    its answering would compete with the runner for the interpreter lock and skew the figures)."""
    if not separate:
        from ocr_assets.engines.emulator import EmulatorConfig, EmulatorServer, make_answerer

        with EmulatorServer(EmulatorConfig(batch_latency_s=latency, inline_wait_s=0.5),
                            answerer=make_answerer("echo")) as server:
            yield server.url
        return
    ctx = multiprocessing.get_context("spawn")
    urls, stop = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=_serve_emulator, args=(latency, urls, stop), daemon=True)
    process.start()
    try:
        yield urls.get(timeout=60)
    finally:
        stop.set()
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


def run_makespan(root: Path, lengths: list[int], context: str, args: argparse.Namespace,
                 images: list[bytes] | None = None) -> dict[str, object]:
    """Plan the corpus, run every record to terminal against a fresh emulator; the figures of the run."""
    from ocr_assets.engines.factory import make_batch_client
    from ocr_assets.engines.gemini.context import provider_for
    from ocr_assets.engines.gemini.lifecycle import ENGINE
    from ocr_assets.engines.gemini.runner import run_batches
    from ocr_assets.pipeline import Pipeline, Progress
    from ocr_assets.plan import build_plan
    from ocr_assets.settings import load_settings

    shutil.rmtree(root, ignore_errors=True)
    write_corpus(root, lengths, images)
    with emulator_at(args.latency, separate=not args.in_process_emulator) as url:
        settings = load_settings(write_settings(root, url, max_batches=args.batches, context=context))
        pipeline = Pipeline(settings)
        build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
        client = make_batch_client(pipeline)
        provider = provider_for(settings, pipeline.store)
        context_s = time_context_pass(provider)
        waves: list[float] = []  # elapsed time of each tick that created at least one batch
        seen = [0]

        def on_tick(progress: Progress) -> None:
            if progress.submitted_batches > seen[0]:
                waves.append(progress.elapsed_s)
                seen[0] = progress.submitted_batches

        summary = run_batches(pipeline, client, poll_interval=args.poll, on_progress=on_tick, provider=provider,
                              timeout_s=args.timeout)
        counts = pipeline.store.status_counts()
        sizes = [b.record_count for b in pipeline.store.batches() if b.engine == ENGINE]
    return {
        "makespan_s": summary.elapsed_s, "stopped": summary.stopped, "waves": len(waves),
        "batches": len(sizes), "records_per_batch": sum(sizes) / max(1, len(sizes)),
        "statuses": ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())),
        "context_s": context_s[0],
        "recognised": len(list(provider.cache_dir.glob("*.json"))) if provider is not None else 0,
    }


# Shared instructions put in a context cache for the cached run (~1,000 tokens by the chars / 4 estimate).
CACHED_INSTRUCTIONS = "Transcribe every course exactly as printed; keep department headings. " * 57


def ledger_run(root: Path, pages: int, mode: str) -> dict[str, float]:
    """`pages` single-page books through one engine against a fresh emulator; per-page ledger sums."""
    from ocr_assets.core import TokenUsage
    from ocr_assets.engines.emulator import EmulatorConfig, EmulatorServer, make_answerer
    from ocr_assets.engines.factory import drive, make_batch_client
    from ocr_assets.engines.gemini.client import make_client
    from ocr_assets.engines.gemini.runner import run_batches
    from ocr_assets.pipeline import Pipeline
    from ocr_assets.plan import build_plan
    from ocr_assets.pricing import cost
    from ocr_assets.settings import load_settings

    shutil.rmtree(root, ignore_errors=True)
    write_corpus(root, [1] * pages)  # chain heads only: every mode sends exactly the same prompts
    emulator = EmulatorServer(EmulatorConfig(batch_latency_s=0.1, inline_wait_s=0.5),
                              answerer=make_answerer("echo")).start()
    try:
        engine = "gemini-realtime" if mode == "realtime" else "gemini-batch"
        config = write_settings(root, emulator.url, engine=engine)
        if mode == "batch+cache":
            from google.genai import types

            # Made with the pipeline's own client: a cache belongs to the API key that created it.
            settings = load_settings(config)
            client = make_client(settings)  # held: a dropped genai.Client closes its HTTP client mid-call
            cache = client.caches.create(model=settings.model.name, config=types.CreateCachedContentConfig(
                contents=[types.Content(role="user", parts=[types.Part.from_text(text=CACHED_INSTRUCTIONS)])],
                ttl="3600s", display_name="bench-instructions"))
            config = write_settings(root, emulator.url, engine=engine, cached_content=cache.name)
        settings = load_settings(config)
        pipeline = Pipeline(settings)
        build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
        if mode == "realtime":
            drive(pipeline)
        else:
            run_batches(pipeline, make_batch_client(pipeline), poll_interval=0.1, timeout_s=120)
        row = pipeline.store.query(
            """SELECT count(*) AS n, sum(prompt_tokens) AS prompt, sum(cached_tokens) AS cached,
                      sum(output_tokens) AS output, sum(cost_usd) AS cost, sum(realtime_cost_usd) AS realtime
               FROM cost_ledger""")[0]
    finally:
        emulator.stop()
    n = max(1, int(row["n"] or 0))
    # What the same tokens would cost in batch with nothing cached (a cached prefix sent inline instead).
    uncached = cost(TokenUsage(prompt_tokens=int(row["prompt"] or 0), output_tokens=int(row["output"] or 0)),
                    settings.model, "batch")
    return {"pages": int(row["n"] or 0), "uncached_batch": uncached / n,
            **{k: float(row[k] or 0) / n for k in ("prompt", "cached", "output", "cost", "realtime")}}


def cost_per_page(root: Path, pages: int) -> dict[str, object]:
    """Cost per page from the cost ledger: batch vs real-time (same pages, same token counts) and with a cache."""
    runs = {mode: ledger_run(root / mode.replace("+", "_"), pages, mode)
            for mode in ("batch", "realtime", "batch+cache")}
    batch, realtime, cached = runs["batch"], runs["realtime"], runs["batch+cache"]

    def usd(value: float) -> str:
        return f"${value:.7f}"

    def tokens(run: dict[str, float]) -> str:
        return (f"{run['prompt']:.0f} prompt ({run['cached']:.0f} cached) + {run['output']:.0f} output tokens/page, "
                f"{run['pages']:.0f} pages")

    same_tokens = batch["prompt"] == realtime["prompt"] and batch["output"] == realtime["output"]
    return {
        "cost per page, gemini-batch": f"{usd(batch['cost'])} ({tokens(batch)})",
        "cost per page, gemini-realtime": f"{usd(realtime['cost'])} ({tokens(realtime)})",
        "cost ratio batch / realtime": f"{batch['cost'] / realtime['cost']:.3f} (expected 0.5; token counts "
                                       f"{'match' if same_tokens else 'DIFFER'})",
        "cost per page, gemini-batch + context cache": (
            f"{usd(cached['cost'])} ({tokens(cached)}); the same tokens uncached in batch: "
            f"{usd(cached['uncached_batch'])} → ratio {cached['cost'] / cached['uncached_batch']:.3f}"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--books", type=int, default=100)
    parser.add_argument("--longest", type=int, default=40, help="longest chain (pages)")
    parser.add_argument("--latency", type=float, default=1.0, help="emulator batch latency (s)")
    parser.add_argument("--batches", type=int, default=10, help="max concurrent batches")
    parser.add_argument("--poll", type=float, default=0.2, help="run_batches poll interval (s)")
    parser.add_argument("--context", choices=("both", *CONTEXTS), default="both")
    parser.add_argument("--cost-pages", type=int, default=20, help="pages of the cost section (0 skips it)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--in-process-emulator", action="store_true",
                        help="serve the emulator from this process (default: its own process, like the remote API)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ocr_assets_makespan"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.pop("GEMINI_API_KEY", None)  # the loopback emulator needs none; never send a real one

    lengths = chain_lengths(args.books, args.pages, args.longest)
    longest = max(lengths)
    ideal = longest * args.latency
    bound = SLACK * ideal + FIXED_S
    figures: dict[str, object] = {
        "corpus": f"{args.pages:,} pages over {args.books} books, chains {min(lengths)}–{longest} "
                  f"(mean {args.pages / args.books:.1f})",
        "emulator": f"batch latency {args.latency:g} s, {args.batches} concurrent batches, echo answerer, "
                    f"poll every {args.poll:g} s, "
                    f"{'in this process' if args.in_process_emulator else 'in its own process'}",
        "bound (upstream_output)": f"{SLACK:g} × ({longest} × {args.latency:g} s) + {FIXED_S:g} s = {bound:.1f} s",
    }
    contexts = CONTEXTS if args.context == "both" else (args.context,)
    runs: list[tuple[str, str, list[int]]] = [(f"makespan, {c} context", c, lengths) for c in contexts]
    if "local_ocr" in contexts:  # the same pages in chains ≤ 5: with local_ocr, chain length must not matter
        short = chain_lengths(max(args.books, -(-args.pages // 5)), args.pages, 5)
        runs.append((f"makespan, local_ocr context, same pages in chains ≤ 5 ({len(short)} books)", "local_ocr", short))
    # The local OCR context pass is measured on distinct rendered pages: on one blank image repeated,
    # its cache (keyed by image content) made the pass cost nothing.
    rendered = rendered_pages(args.pages, args.workdir) if "local_ocr" in contexts else None
    load_before = os.getloadavg()[0]  # the 2-core hosts are shared: timings move with the load
    failed = []
    local_runs: list[dict[str, object]] = []
    for label, context, chains in runs:
        run = run_makespan(args.workdir / context, chains, context, args,
                           images=rendered if context == "local_ocr" else None)
        per_wave = run["makespan_s"] / max(1, run["waves"])
        line = (f"{run['makespan_s']:.1f} s in {run['waves']} waves ({per_wave:.2f} s/wave); "
                f"{run['batches']} batches, {run['records_per_batch']:.1f} records/batch; {run['statuses']}")
        if run["stopped"] != "done":
            line += f"; STOPPED: {run['stopped']}"
            failed.append(label)
        if context == "local_ocr":
            # What a wave costs beyond the batch latency: our prompt building, upload, fetch and ingest.
            # (≤ 0 when the client's work overlapped the batches' latency entirely)
            client_s = max(0.0, (run["makespan_s"] - run["context_s"] - run["waves"] * args.latency)
                           / max(1, run["waves"]))
            line += (f"; local OCR context pass {run['context_s']:.1f} s in all (model load included), "
                     f"{run['recognised']} distinct upstream image(s) recognised = "
                     f"{run['recognised'] / max(1e-9, run['context_s']):.2f} pages/s; per wave: {args.latency:g} s batch "
                     f"latency + {client_s:.2f} s of client work (prompts, upload, fetch, ingest of "
                     f"{args.pages / max(1, run['waves']):.0f} records)")
            local_runs.append(run)
        if context == "upstream_output":
            verdict = "met" if run["makespan_s"] <= bound and run["stopped"] == "done" else "NOT met"
            line += f" — {verdict} (≤ {bound:.1f} s)"
        figures[label] = line
        print(f"- {label}: {line}", flush=True)
    if len(local_runs) == 2:
        long_run, short_run = local_runs
        ratio = float(long_run["makespan_s"]) / max(1e-9, float(short_run["makespan_s"]))
        figures["local_ocr: chains ≤ 40 vs chains ≤ 5"] = (
            f"{long_run['waves']} vs {short_run['waves']} waves, makespan ratio {ratio:.2f} "
            f"({'independent of chain length' if long_run['waves'] == short_run['waves'] and 0.8 <= ratio <= 1.25 else 'DEPENDS on chain length'})")
    figures["load average (1 min) before / after the makespan runs"] = f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"
    if args.cost_pages > 0:
        figures.update(cost_per_page(args.workdir / "cost", args.cost_pages))
    shutil.rmtree(args.workdir, ignore_errors=True)
    record(f"makespan: {args.pages:,} pages, chains ≤ {longest}, batch latency {args.latency:g} s",
           figures, notes="makespan = run_batches wall time from its first tick to every record terminal; a wave = "
                          "a tick that created at least one batch; upstream_output pages are one blank 8×8 JPEG, "
                          "local_ocr pages distinct rendered catalog pages (the sample corpus), so the "
                          "context pass recognises each upstream image once; cost per page "
                          "from the cost ledger, single-page books, echo answerer")
    if failed:
        raise SystemExit(f"runs did not finish: {', '.join(failed)}")


if __name__ == "__main__":
    main()
