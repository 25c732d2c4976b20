"""CLI: `ocr-assets local run` — OCR the planned pages with the local engine, through the record store.

Resume comes from the store: SUCCESS pages are never run again, so re-running the same command
continues where an interrupted run stopped.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from ocr_assets import operations as ops
from ocr_assets.cli.common import (
    BookOption,
    ConfigOption,
    console,
    exit_for_records,
    friendly_errors,
    get_settings,
    plan_corpus,
    print_plan,
    selected_books,
    table,
)
from ocr_assets.core import EngineSpec, PageFailure, PageOutcome, resolve_engine
from ocr_assets.engines.factory import drive, local_engine
from ocr_assets.outputs import atomic_write_text, read_output
from ocr_assets.pipeline import Pipeline, RunSummary
from ocr_assets.prompts import PromptError
from ocr_assets.store import RecordStatus

if TYPE_CHECKING:
    from ocr_assets.engines.local.runner import LocalInference

local_app = typer.Typer(help="Run the local engine (RapidOCR on CPU, or a local VLM on GPU).", no_args_is_help=True,
                        rich_markup_mode=None)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    local_app.command("run")(run)
    app.add_typer(local_app, name="local", rich_help_panel="Run")


class PagesPerSecond(ProgressColumn):
    """Pages per second since the task started."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} pages/s" if speed else "… pages/s", style="progress.data.speed")


def run(
    config: ConfigOption = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda:N | cuda:0,cuda:1 (default: settings).")] = None,
    batch_size: Annotated[str | None, typer.Option(help="auto or a number of pages (default: settings).")] = None,
    engine: Annotated[str | None, typer.Option(
        help="The local OCR model: rapidocr | tesseract | transformers (default: settings' local.engine).")] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Local model directory for --engine transformers.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Time one page and estimate the run; change nothing.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Attempt at most this many pages.")] = None,
    book: BookOption = None,
    formats: Annotated[str, typer.Option(help="Outputs besides JSON: any of json,txt,csv,alto.")] = "json",
    failures_csv: Annotated[Path | None, typer.Option(help="Where to write this run's failures (default: output root).")] = None,
) -> None:
    """Plan new pages, then OCR every runnable page with the local engine (SUCCESS pages are skipped)."""
    from ocr_assets.engines.local.devices import DeviceError
    from ocr_assets.engines.local.exports import parse_formats
    from ocr_assets.engines.local.vlm_engine import ModelLoadError

    settings = get_settings(config)
    with friendly_errors(ValueError):
        wanted = parse_formats(formats)
        spec = resolve_engine(settings, "local", device=device, batch_size=batch_size, engine=engine,
                              model_dir=model_dir)  # the run's engine, decided once
        inference = local_engine(spec.local)
    pipeline = Pipeline(settings)
    print_plan(plan_corpus(pipeline.store, settings), console)
    books = selected_books(pipeline.store, book)
    todo = pipeline.store.unfinished_count(books)
    total = todo if limit is None else min(todo, limit)
    if total == 0:
        console.print("nothing to run: every selected page is finished")
        exit_for_records(pipeline.store, books)
        return
    with friendly_errors(DeviceError, ModelLoadError, PromptError, ValueError):
        if dry_run:
            _dry_run(pipeline, inference, books, total)
            return
        with console.status(f"loading {inference.engine}…"):
            devices = inference.load()
    console.print(f"running {total} pages on {', '.join(devices)} with {inference.model_name}")
    started = time.perf_counter()
    summary = _run_with_progress(pipeline, spec, inference, books, limit, total)
    elapsed = time.perf_counter() - started
    inference.close()
    _report(pipeline, summary, elapsed, wanted, failures_csv or settings.paths.output_root / "failures.csv")
    exit_for_records(pipeline.store, books, limited=limit is not None)


def _dry_run(pipeline: Pipeline, inference: LocalInference, books: list[str] | None, total: int) -> None:
    records = pipeline.store.runnable(1, books=books)
    requests, problems = pipeline.build_requests(records)
    if not requests:
        reason = problems[0][1] if problems else "no page is runnable now (upstream pages unfinished)"
        raise ValueError(f"cannot time a sample page: {reason}")
    with console.status(f"timing one page with {inference.engine}…"):
        estimate = inference.estimate(requests, pages=total)
    console.print(estimate.summary())
    if not estimate.sample_ok:
        console.print(f"[yellow]the sample page failed:[/yellow] {escape(estimate.sample_error or '')}")


def _run_with_progress(
    pipeline: Pipeline, spec: EngineSpec, inference: LocalInference, books: list[str] | None, limit: int | None,
    total: int,
) -> RunSummary:
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               PagesPerSecond(), TextColumn("{task.fields[failed]} failed"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("local OCR", total=total, failed=0)
        failed = 0

        def on_outcome(outcome: PageOutcome) -> None:
            nonlocal failed
            failed += isinstance(outcome, PageFailure)
            progress.update(task, advance=1, failed=failed)

        inference.set_progress(on_outcome)
        try:
            summary = drive(pipeline, spec, books=books, limit=limit, sync_engine=inference)
        finally:
            inference.set_progress(None)
        # Pages blocked behind a fatal upstream never run: the bar ends at what did.
        progress.update(task, total=progress.tasks[0].completed)
        return summary


def _report(pipeline: Pipeline, summary: RunSummary, elapsed: float, formats: list, failures_path: Path) -> None:
    from ocr_assets.engines.local.exports import write_exports

    store = pipeline.store
    rate = summary.attempted / elapsed if elapsed > 0 else 0.0
    console.print(table("local run", ["attempted", "succeeded", "retryable", "fatal", "blocked", "seconds", "pages/s"],
                        [(summary.attempted, summary.succeeded, summary.retryable, summary.fatal, summary.blocked,
                          f"{elapsed:.1f}", f"{rate:.2f}")]))
    batches = set(summary.batches)
    if len(formats) > 1:
        written = 0
        for batch in summary.batches:
            for record in store.records(batch_id=batch, status=RecordStatus.SUCCESS):
                if record.output_path:
                    written += len(write_exports(read_output(Path(record.output_path)), Path(record.output_path),
                                                 formats, key=record.key, image_path=Path(record.image_path)))
        console.print(f"wrote {written} {'/'.join(f for f in formats if f != 'json')} files beside the JSON outputs")
    rows = [row for row in ops.failure_rows(store) if row.get("batch_id") in batches]
    if not rows:
        console.print("no failures")
        return
    groups = ops.group_failures(rows)
    console.print(table(f"{len(rows)} failures", ["class", "type", "pattern", "pages", "example keys"],
                        [(g.error_class, g.error_type, escape(g.pattern), g.records, " ".join(g.example_keys))
                         for g in groups]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ops.EXPORT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in ops.EXPORT_COLUMNS})
    atomic_write_text(failures_path, buffer.getvalue())
    console.print(f"failures written to {escape(str(failures_path))}")
