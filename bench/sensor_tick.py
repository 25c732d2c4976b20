"""Sensor tick latency with 10,000 records in flight (target: ≤ 2 s per tick on 2 cores).

Plans a corpus of tiny valid JPEG pages, then submits `--in-flight` records through the real batch
submitter (`submit_wave`) to a Gemini emulator whose batches stay PENDING for an hour, so the record
store holds that many records RUNNING across `--in-flight / --batch-size` active batches that exist
remotely. `--extra-pages` more pages stay PENDING (runnable), so the submit sensor walks its whole
path when a slot is free. Then it times evaluations of `batch_poll_sensor` (one GET per active
batch) and `batch_submit_sensor`, called directly with `dg.build_sensor_context(instance=...,
resources=...)` as the daemon would. Optionally (`--finish`) the emulator's clock is advanced so every
batch completes, and the poll sensor's tick that turns them into ingest run requests is timed too.

    python bench/sensor_tick.py --in-flight 10000 --batch-size 100 [--ticks 7] [--finish]

`--discovery-pages N` times `book_discovery_sensor` instead, on a planned corpus of N pages (empty files,
1,000 pages a book): a tick that finds nothing new and a tick after a new book folder appeared, beside a
full re-plan of the corpus (what the tick did before it only listed folders). Dagster's tick timeout is 60 s.

    python bench/sensor_tick.py --discovery-pages 1000000 [--ticks 5]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._results import record  # noqa: E402
from tests.fixtures.corpus import tiny_jpeg  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 2.0


def generate(root: Path, pages: int, per_book: int) -> None:
    """`pages` allow-listed pages with a tiny valid JPEG each; only odd pages are allow-listed, so every page
    heads its own chain and all of them are runnable at once (in flight together)."""
    data = tiny_jpeg()
    written, book = 0, 0
    while written < pages:
        state, school, year = f"S{book % 10}", f"school{book // 10}", 1900 + book % 30
        img = root / "images" / state / school / str(year)
        allow = root / "allow_list" / state / school / str(year)
        img.mkdir(parents=True, exist_ok=True)
        allow.mkdir(parents=True, exist_ok=True)
        page = 0
        while written < pages and page < per_book:
            page += 1
            if page % 2 == 0:
                continue
            (img / f"{page}.jpg").write_bytes(data)
            (allow / f"{page}.json").write_text('{"label": "curricular"}')
            written += 1
        book += 1


def write_settings(root: Path, base_url: str, *, batch_size: int, max_batches: int) -> Path:
    data = {
        "engine": "gemini-batch",
        "paths": {"images_root": str(root / "images"), "allow_list_root": str(root / "allow_list"),
                  "output_root": str(root / "output"), "database": str(root / "state" / "store.duckdb"),
                  "ground_truth_root": None},
        "prompt": {"registry_dir": str(REPO / "prompts")},
        "execution": {"batch_size_limit": batch_size, "max_concurrent_batches": max_batches},
        "gemini": {"base_url": base_url, "max_enqueued_tokens": 1_000_000_000, "retry_initial_wait_s": 0.1,
                   "retry_max_wait_s": 1.0},
    }
    path = root / "ocr_assets.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def time_ticks(sensor, context_factory, ticks: int) -> tuple[list[float], object]:
    timings, result = [], None
    for _ in range(ticks):
        start = time.perf_counter()
        with context_factory() as context:  # resources are set up per evaluation, as the daemon does
            result = sensor(context)
        timings.append(time.perf_counter() - start)
    return timings, result


def describe(result: object) -> str:
    import dagster as dg

    if isinstance(result, dg.SkipReason):
        return f"skip: {result.skip_message}"
    if isinstance(result, dg.SensorResult):
        return f"{len(result.run_requests or [])} run request(s)"
    if isinstance(result, dg.RunRequest):
        return "1 run request"
    return type(result).__name__


def fmt(timings: list[float], target: float = TARGET_S) -> str:
    verdict = "met" if max(timings) <= target else "NOT met"
    return (f"median {statistics.median(timings):.3f} / max {max(timings):.3f} over {len(timings)} ticks "
            f"(target ≤ {target:.0f}) — {verdict}")


def discovery(args: argparse.Namespace) -> None:
    """Time book_discovery_sensor ticks on a planned corpus of `--discovery-pages` pages."""
    import dagster as dg

    from bench.plan_scale import generate as generate_empty
    from ocr_assets.defs.resources import RecordStoreResource, SettingsResource
    from ocr_assets.defs.sensors import book_discovery_sensor
    from ocr_assets.pipeline import open_store
    from ocr_assets.plan import build_plan
    from ocr_assets.settings import load_settings

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    generated_s = generate_empty(args.workdir, args.discovery_pages, per_book=1000)
    config = write_settings(args.workdir, "http://127.0.0.1:9", batch_size=100, max_batches=10)
    settings = load_settings(config)
    store = open_store(settings)
    start = time.perf_counter()
    plan = build_plan(store, settings.paths.images_root, settings.paths.allow_list_root)
    plan_s = time.perf_counter() - start
    start = time.perf_counter()
    build_plan(store, settings.paths.images_root, settings.paths.allow_list_root)  # the old tick: a full re-plan
    replan_s = time.perf_counter() - start
    settings_resource = SettingsResource(config_path=str(config))
    resources = {"settings": settings_resource, "store": RecordStoreResource(settings=settings_resource)}
    figures: dict[str, object] = {"corpus": f"{plan.pages_found:,} pages in {plan.books_found:,} books "
                                            f"(generated in {generated_s:.0f} s, planned in {plan_s:.1f} s)",
                                  "full re-plan of the planned corpus, the old tick's work (s)": f"{replan_s:.1f}"}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("books", store.books())

        def context():
            return dg.build_sensor_context(instance=instance, resources=resources)

        timings, result = time_ticks(book_discovery_sensor, context, args.ticks)
        figures["tick, nothing new (s)"] = fmt(timings, target=60.0)
        figures["tick, nothing new: result"] = describe(result)
        new_book = args.workdir / "allow_list" / "S0" / "new_school" / "1900"
        new_book.mkdir(parents=True)
        (new_book / "1.json").write_text('{"label": "curricular"}')
        timings, result = time_ticks(book_discovery_sensor, context, args.ticks)
        figures["tick, one new book folder (s)"] = fmt(timings, target=60.0)
        figures["tick, one new book folder: result"] = describe(result)
    record(f"book discovery tick: {plan.pages_found:,} planned pages", figures,
           notes="the tick lists state/school/year folders (no page file read) and reads the store's book list; "
                 "a new folder becomes a plan_corpus_job run request, the plan itself runs in that run")
    shutil.rmtree(args.workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in-flight", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--extra-pages", type=int, default=1_000, help="pages left PENDING (runnable)")
    parser.add_argument("--ticks", type=int, default=7)
    parser.add_argument("--finish", action="store_true", help="also time the tick that sees every batch finished")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ocr_assets_sensor_tick"))
    parser.add_argument("--discovery-pages", type=int, default=0,
                        help="time book_discovery_sensor on a planned corpus of this many pages instead")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.discovery_pages:
        discovery(args)
        return

    import dagster as dg

    from ocr_assets.defs.resources import GeminiResource, RecordStoreResource, SettingsResource, TrackerResource
    from ocr_assets.defs.sensors import batch_poll_sensor, batch_submit_sensor
    from ocr_assets.engines.emulator import EchoAnswerer, EmulatorConfig, EmulatorServer
    from ocr_assets.engines.factory import make_batch_client
    from ocr_assets.engines.gemini.submit import submit_wave
    from ocr_assets.pipeline import Pipeline
    from ocr_assets.plan import build_plan
    from ocr_assets.settings import load_settings
    from ocr_assets.store import ACTIVE_BATCH_STATES, RecordStatus

    batches = -(-args.in_flight // args.batch_size)
    if batches > 100:
        parser.error(f"{batches} batches: the API (and settings) allow at most 100 concurrent batch jobs")
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    setup_start = time.perf_counter()
    generate(args.workdir, args.in_flight + args.extra_pages, per_book=400)
    # Batches stay PENDING for an hour: nothing finishes while the ticks are timed.
    emulator = EmulatorServer(EmulatorConfig(pending_s=3600, batch_latency_s=0.0, inline_wait_s=0.0),
                              answerer=EchoAnswerer()).start()
    # 100 slots (the API's cap): with fewer in-flight batches the submit sensor sees a free slot and runnable
    # records and walks its whole path; with 100 it stops at the busy-slot check.
    config = write_settings(args.workdir, emulator.url, batch_size=args.batch_size, max_batches=100)
    settings = load_settings(config)
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    client = make_batch_client(pipeline)
    submitted = 0
    while submitted < args.in_flight:
        report = submit_wave(pipeline, client, limit=args.in_flight - submitted)
        if not report.batches:
            raise SystemExit(f"submitter stopped after {submitted} records: {report}")
        submitted += report.records
    counts = pipeline.store.status_counts()
    active = [b for b in pipeline.store.active_batches() if b.state in ACTIVE_BATCH_STATES]
    in_flight = counts.get(str(RecordStatus.RUNNING), 0)
    setup_s = time.perf_counter() - setup_start
    print(f"setup: {in_flight} records RUNNING in {len(active)} active batches, "
          f"{counts.get(str(RecordStatus.PENDING), 0)} PENDING ({setup_s:.0f} s)")

    settings_resource = SettingsResource(config_path=str(config))
    resources = {
        "settings": settings_resource,
        "store": RecordStoreResource(settings=settings_resource),
        "gemini": GeminiResource(base_url=emulator.url),
        "tracker": TrackerResource(enabled=False),
    }
    figures: dict[str, object] = {
        "records in flight": f"{in_flight:,} in {len(active)} active batches (+{args.extra_pages:,} PENDING)",
    }
    with dg.instance_for_test() as instance:
        def context():
            return dg.build_sensor_context(instance=instance, resources=resources)

        errors = []
        for name, sensor in (("batch_poll_sensor", batch_poll_sensor), ("batch_submit_sensor", batch_submit_sensor)):
            try:
                timings, result = time_ticks(sensor, context, args.ticks)
            except Exception as exc:  # report a broken sensor instead of hiding the other figures
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                figures[f"{name} tick (s)"] = f"FAILED: {type(exc).__name__}: {exc}"
                continue
            figures[f"{name} tick (s)"] = fmt(timings)
            figures[f"{name} result"] = describe(result)
        if args.finish and not errors:
            emulator.advance_clock(3600)  # every batch starts RUNNING and answers
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                summaries = emulator.batches.summaries()
                if all(s["state"] == "BATCH_STATE_SUCCEEDED" for s in summaries):
                    break
                emulator.batches.refresh_all()
                time.sleep(1)
            timings, result = time_ticks(batch_poll_sensor, context, 1)
            figures["batch_poll_sensor tick, every batch just finished (s)"] = (
                f"{timings[0]:.3f} (target ≤ {TARGET_S:.0f}) → {describe(result)}")
            timings, result = time_ticks(batch_poll_sensor, context, max(1, args.ticks - 1))
            figures["batch_poll_sensor tick, finished batches awaiting ingest (s)"] = fmt(timings)
    figures["setup (plan + submit) (s)"] = f"{setup_s:.0f}"
    if errors:  # a broken sensor is reported, not recorded as a benchmark result
        for name, value in figures.items():
            print(f"- {name}: {value}")
        emulator.stop()
        raise SystemExit("sensor evaluation failed: " + "; ".join(errors))
    record(f"sensor tick latency: {in_flight:,} records in flight", figures,
           notes="each tick makes a handful of store calls, each in its own short store session (lock, open, "
                 "transaction, close; the sensors hold no session for the whole tick) and one batches.get per "
                 "active batch (gemini.poll_concurrency at a time) against the local emulator")
    emulator.stop()
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
