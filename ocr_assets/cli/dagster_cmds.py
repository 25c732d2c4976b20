"""CLI: `ocr-assets demo` runs the whole platform on the sample corpus through a real Dagster instance.

It plans the corpus, materializes `page_ocr` + `book_courses` for every book and then `courses` as
Dagster runs recorded in `DAGSTER_HOME` (so `dagster dev` shows them afterwards), with the local
engine by default or Gemini batch against the in-process emulator. Dagster is imported inside the
command only (the CLI stays light).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from ocr_assets.cli.common import console, err_console, exit_for_records, get_settings, table
from ocr_assets.settings import DEFAULT_SETTINGS_FILE

UI_URL = "http://127.0.0.1:3000"
# Dagster's console logger prints every event at DEBUG; the UI keeps the full event log anyway.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DEMO_SETTINGS = Path("data/state/demo_settings.yaml")
ENGINES = ("local", "gemini-batch", "gemini-realtime")
# The instance the demo creates when DAGSTER_HOME has none (the repo ships dagster_home/dagster.yaml).
MINIMAL_INSTANCE = """# Created by `ocr-assets demo` (the repo's dagster_home/dagster.yaml explains each line).
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
concurrency:
  runs:
    max_concurrent_runs: 2
    tag_concurrency_limits:
      - key: ocr_assets/engine
        value: local
        limit: 1
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.command("demo", rich_help_panel="Tools")(demo)


def _package_prompts() -> Path:
    local = Path("prompts").resolve()
    return local if local.is_dir() else Path(__file__).resolve().parents[2] / "prompts"


def ensure_corpus(corpus: Path, books: int, pages: int) -> None:
    """Use the corpus at `corpus` (the shipped sample) or generate one there."""
    if (corpus / "allow_list").is_dir() and any((corpus / "allow_list").iterdir()):
        return
    from ocr_assets.sample_corpus import generate_corpus

    with console.status(f"generating a sample corpus of {books} books × {pages} pages in {corpus}…"):
        summary = generate_corpus(corpus, books=books, pages=pages, workers=min(4, os.cpu_count() or 1))
    console.print(f"generated {summary.pages} pages ({summary.allow_listed} allow-listed) in {len(summary.books)} books")


def write_demo_settings(path: Path, corpus: Path, data_root: Path) -> Path:
    """A settings file over the sample corpus with absolute paths (so any working folder reads it alike)."""
    data = {
        "engine": "local",
        "paths": {
            "images_root": str((corpus / "images").resolve()),
            "allow_list_root": str((corpus / "allow_list").resolve()),
            "ground_truth_root": str((corpus / "ground_truth").resolve()),
            "output_root": str((data_root / "output").resolve()),
            "database": str((data_root / "state" / "ocr_assets.duckdb").resolve()),
        },
        "prompt": {"registry_dir": str(_package_prompts())},
        "execution": {"poll_interval_seconds": 1.0},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Written by `ocr-assets demo`; pass --config to use your own.\n" + yaml.safe_dump(data))
    return path


def ensure_dagster_home(home: Path) -> Path:
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(MINIMAL_INSTANCE)
    return home


def contiguous_ranges(order: Sequence[str], wanted: Sequence[str]) -> list[tuple[str, str]]:
    """Partition ranges (in the instance's order) covering exactly the wanted books."""
    wanted_set = set(wanted)
    ranges: list[tuple[str, str]] = []
    start = prev = None
    for key in order:
        if key in wanted_set:
            start = start or key
            prev = key
        elif start is not None:
            ranges.append((start, prev))
            start = None
    if start is not None:
        ranges.append((start, prev))
    return ranges


@contextmanager
def _emulator(engine: str) -> Iterator[str | None]:
    if not engine.startswith("gemini"):
        yield None
        return
    from ocr_assets.engines.emulator import EmulatorConfig, EmulatorServer, make_answerer

    server = EmulatorServer(EmulatorConfig(batch_latency_s=1.0), answerer=make_answerer("local")).start()
    console.print(f"Gemini emulator (answering with the local OCR engine) on {server.url}")
    try:
        yield server.url
    finally:
        server.stop()


def demo(
    engine: Annotated[str, typer.Option("--engine", help=f"One of {', '.join(ENGINES)} (Gemini ones use the "
                                        "in-process emulator: no key, no network).")] = "local",
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Your settings file instead of the "
                                                 "generated demo one.")] = None,
    corpus: Annotated[Path, typer.Option(help="Sample corpus folder (generated when absent).")] = Path("data/sample"),
    dagster_home: Annotated[Path | None, typer.Option("--dagster-home", help="Dagster instance folder "
                                                       "(default $DAGSTER_HOME or ./dagster_home).")] = None,
    books: Annotated[int, typer.Option(min=1, help="Books to generate when there is no corpus.")] = 4,
    pages: Annotated[int, typer.Option(min=1, help="Pages per generated book.")] = 4,
) -> None:
    """Plan the sample corpus and OCR every book through Dagster (local engine), then show where to look."""
    if engine not in ENGINES:
        err_console.print(f"[red]error:[/red] --engine must be one of {', '.join(ENGINES)}")
        raise typer.Exit(2)
    if config is None and Path(DEFAULT_SETTINGS_FILE).exists():
        config = Path(DEFAULT_SETTINGS_FILE)  # the project's settings (the shipped one reads data/sample)
    if config is None:
        ensure_corpus(corpus, books, pages)
        config = write_demo_settings(DEMO_SETTINGS, corpus, Path("data"))
    else:
        paths = get_settings(config).paths
        if paths.images_root.parent == paths.allow_list_root.parent:
            ensure_corpus(paths.allow_list_root.parent, books, pages)
    home = ensure_dagster_home(dagster_home or Path(os.environ.get("DAGSTER_HOME") or "dagster_home"))
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["OCR_ASSETS_CONFIG"] = str(config.resolve())
    os.environ["OCR_ASSETS_ENGINE"] = engine
    with _emulator(engine) as url:
        if url:
            os.environ["OCR_ASSETS_GEMINI__BASE_URL"] = url
        failures = _run_through_dagster()
    _summary(config.resolve(), home, failures)
    if failures:
        raise typer.Exit(1)
    from ocr_assets.pipeline import open_store

    exit_for_records(open_store(get_settings(config)), None)  # FATAL / BLOCKED pages: exit 1


def _run_through_dagster() -> list[str]:
    """corpus_plan → page_ocr + book_courses (every book, cross-book waves) → courses; returns failures."""
    import dagster as dg

    from ocr_assets.definitions import defs
    from ocr_assets.pipeline import open_store
    from ocr_assets.settings import load_settings

    instance = dg.DagsterInstance.get()
    failures: list[str] = []

    def materialize(selection: list[str], tags: dict[str, str] | None = None) -> None:
        with _watching(selection):
            result = dg.materialize([*defs.assets, *defs.asset_checks], selection=selection, instance=instance,
                                    resources=defs.resources, tags=tags or {}, raise_on_error=False,
                                    run_config=QUIET)
        state = "[green]ok[/green]" if result.success else "[red]failed[/red]"
        console.print(f"run {result.run_id[:8]} {', '.join(selection)} {state}")
        if not result.success:
            failures.extend(_failure_messages(result))

    materialize(["corpus_plan"])
    wanted = open_store(load_settings()).books()
    for start, end in contiguous_ranges(instance.get_dynamic_partitions("books"), wanted):
        materialize(["page_ocr", "book_courses"], {"dagster/asset_partition_range_start": start,
                                                   "dagster/asset_partition_range_end": end,
                                                   "ocr_assets/engine": load_settings().engine})
    materialize(["courses"])
    return failures


@contextmanager
def _watching(selection: list[str]) -> Iterator[None]:
    """A progress bar while page_ocr drives pages (its run publishes progress in this process), else a spinner."""
    if "page_ocr" not in selection:
        with console.status(f"materializing {', '.join(selection)}…"):
            yield
        return
    from ocr_assets.cli.progress import progress_bar, published_progress

    with progress_bar(console, "page_ocr") as on_progress, published_progress(on_progress):
        yield


def _failure_messages(result: Any) -> list[str]:
    out = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            cause = error.cause.message if error.cause else error.message
            out.append(f"{event.step_key}: {(error.message if 'Failure' in error.cls_name else cause).strip()}")
    return out or [f"run {result.run_id} failed"]


def _summary(config: Path, home: Path, failures: list[str]) -> None:
    from ocr_assets.pipeline import open_store
    from ocr_assets.course_tables import corpus_table_paths
    from ocr_assets.settings import load_settings

    settings = load_settings(config)
    store = open_store(settings)
    counts = store.status_counts()
    console.print("\n[bold]pages[/bold]: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
    _, parquet = corpus_table_paths(settings.paths.output_root)
    if parquet.exists():
        import pyarrow.parquet as pq

        courses = pq.read_table(parquet).to_pylist()
        console.print(f"[bold]{len(courses)} courses[/bold] extracted from {len({c['book'] for c in courses})} "
                      f"book(s) → {parquet} and {parquet.parents[1] / 'courses.duckdb'} (table courses)")
        console.print(table("a few of them", ["book", "page", "course", "department"],
                            [(c["book"], c["page"], c["course_name"], c["department"]) for c in courses[:8]]))
    for failure in failures:
        err_console.print(f"[red]failed:[/red] {failure}")
    uses_default = config == Path(DEFAULT_SETTINGS_FILE).resolve()
    env = ("" if uses_default else f"OCR_ASSETS_CONFIG={config} ") + f"DAGSTER_HOME={home}"
    shortcut = "  (from the repo root: make dev)\n" if uses_default and home == Path("dagster_home").resolve() else ""
    # The workspace file names the code location `ocr_assets`, as the README's sensor commands expect;
    # `-m` would name it `ocr_assets.definitions`.
    target = "-w workspace.yaml" if Path("workspace.yaml").is_file() else "-m ocr_assets.definitions"
    console.print(
        "\n[bold]Look at it in the Dagster UI[/bold]:\n"
        f"  {env} dagster dev {target}\n{shortcut}"
        f"  then open {UI_URL}/assets/page_ocr (one partition per book; each materialization has the\n"
        "  per-page table), and book_courses, courses, corpus_plan; checks are on each asset's Checks tab.\n"
        "  Sensors (book discovery, batch submit/poll) are off by default: turn them on under Automation."
    )
