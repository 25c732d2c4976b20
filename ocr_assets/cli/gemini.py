"""CLI: run records to terminal with any engine, and operate Gemini batches.

`run` drives the configured engine (`--batch` = Gemini Batch API, `--engine` overrides the settings);
`submit` sends one wave and returns at once; `batch-status`, `batch-fetch`, `batch-cancel` and
`batches` work on single batches by our batch id (the remote name is accepted too).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from ocr_assets.cli.common import (
    BookOption,
    ConfigOption,
    LimitOption,
    console,
    err_console,
    exit_for_records,
    friendly_errors,
    get_settings,
    plan_corpus,
    print_plan,
    selected_books,
    table,
)
from ocr_assets.cli.progress import progress_bar
from ocr_assets.core import EngineMisconfigured, EngineUnavailable, EngineUnreachable, resolve_engine
from ocr_assets.engines.factory import drive, make_batch_client
from ocr_assets.pipeline import Pipeline
from ocr_assets.prompts import PromptError
from ocr_assets.redaction import scrub
from ocr_assets.reports import batch_integrity
from ocr_assets.settings import EngineKind, Settings
from ocr_assets.store import BatchRow, BatchState
from ocr_assets.tracking import make_tracker

if TYPE_CHECKING:
    from ocr_assets.engines.gemini.batch import GeminiBatchClient, IntegrityReport


PANEL = "Gemini batches"  # the help's group for these commands


def register(app: typer.Typer) -> None:
    app.command("run", rich_help_panel="Run")(run)
    app.command("submit", rich_help_panel="Run")(submit)
    app.command("batch-status", rich_help_panel=PANEL)(batch_status)
    app.command("batch-fetch", rich_help_panel=PANEL)(batch_fetch)
    app.command("batch-cancel", rich_help_panel=PANEL)(batch_cancel)
    app.command("batches", rich_help_panel=PANEL)(batches)


def _pipeline(settings: Settings) -> Pipeline:
    return Pipeline(settings, tracker=make_tracker())


def _batch_pipeline(config) -> tuple[Pipeline, GeminiBatchClient]:
    pipeline = _pipeline(get_settings(config))
    with friendly_errors(EngineUnavailable):
        client = make_batch_client(pipeline)
    return pipeline, client


def _resolve_batch(pipeline: Pipeline, batch_id: str) -> BatchRow:
    batch = pipeline.store.get_batch(batch_id)  # matches our id or the remote name
    if batch is None:
        err_console.print(f"[red]error:[/red] no batch {escape(scrub(batch_id))} in the record store "
                          "(see `ocr-assets batches`)")
        raise typer.Exit(1)
    return batch


def run(
    config: ConfigOption = None,
    engine: Annotated[EngineKind | None, typer.Option(help="Engine for this run (default: settings.engine).")] = None,
    batch: Annotated[bool, typer.Option("--batch", help="Use the Gemini Batch API (50% price).")] = False,
    limit: LimitOption = None,
    book: BookOption = None,
    plan: Annotated[bool, typer.Option(help="Scan the corpus for new pages first.")] = True,
    poll_interval: Annotated[float | None, typer.Option(
        min=0.01, help="Seconds between batch polls (default: execution.poll_interval_seconds, 30; "
                       "the emulator's batches take seconds, so e.g. 0.5 there).")] = None,
) -> None:
    """Drive every selected record to terminal (SUCCESS, FATAL or BLOCKED) with one engine.

    Batch mode keeps up to `max_concurrent_batches` in flight, polls them all each tick and submits
    cross-book waves as pages unlock; Ctrl-C stops it safely (re-running resumes from the store).
    """
    settings = get_settings(config)
    spec = resolve_engine(settings, "gemini-batch" if batch else engine)  # the run's engine, decided once
    if poll_interval is not None:
        settings = settings.model_copy(update={"execution": settings.execution.model_copy(
            update={"poll_interval_seconds": poll_interval})})
    pipeline = _pipeline(settings)
    if plan:
        print_plan(plan_corpus(pipeline.store, settings), console)
    books = selected_books(pipeline.store, book)
    todo = pipeline.store.unfinished_count(books)
    if todo == 0:
        console.print("nothing to run: every selected record is terminal")
        exit_for_records(pipeline.store, books)
        return
    console.print(f"running {todo if limit is None else min(todo, limit)} records with "
                  f"[bold]{escape(spec.describe())}[/bold]")

    unchanged = "the wave's records are back as they were"
    with friendly_errors(EngineMisconfigured, code=2, after=unchanged), \
            friendly_errors(EngineUnavailable, EngineUnreachable, PromptError, after=unchanged), \
            progress_bar(console, spec.kind) as on_progress:
        try:
            summary = drive(pipeline, spec, books=books, limit=limit, on_progress=on_progress)
        except KeyboardInterrupt:
            err_console.print("interrupted: in-flight batches keep running remotely; re-run to resume")
            raise typer.Exit(130) from None
    console.print(table("run", ["attempted", "succeeded", "retryable", "fatal", "blocked", "batches"],
                        [(summary.attempted, summary.succeeded, summary.retryable, summary.fatal,
                          summary.blocked, len(summary.batches))]))
    exit_for_records(pipeline.store, books, limited=limit is not None)


def submit(
    config: ConfigOption = None,
    batch: Annotated[bool, typer.Option("--batch", help="Submit through the Gemini Batch API (the only mode).")] = True,
    limit: Annotated[int | None, typer.Option(min=1, help="Submit at most this many records.")] = None,
    book: BookOption = None,
    plan: Annotated[bool, typer.Option(help="Scan the corpus for new pages first.")] = True,
) -> None:
    """Submit one wave of runnable records as Gemini batch job(s) and print the batch ids at once."""
    if not batch:
        err_console.print("[red]error:[/red] submit only queues batches; use `ocr-assets run` for real-time")
        raise typer.Exit(2)
    from ocr_assets.engines.gemini.submit import submit_wave

    pipeline, client = _batch_pipeline(config)
    if plan:
        print_plan(plan_corpus(pipeline.store, pipeline.settings), err_console)  # stdout: only batch ids
    books = selected_books(pipeline.store, book)
    with friendly_errors(PromptError, EngineUnavailable):
        report = submit_wave(pipeline, client, limit=limit, books=books)
    for batch_id in report.batches + report.resubmitted:
        console.print(batch_id)
    err_console.print(f"{report.records} records in {len(report.batches)} new batch(es), "
                      f"~{report.estimated_tokens} input tokens"
                      + (f"; {len(report.held)} held (429 on create, retried later)" if report.held else "")
                      + (f"; {report.failed_before_submit} failed before submit" if report.failed_before_submit else "")
                      + (f"; nothing submitted: {report.skipped}" if report.skipped and not report.batches else ""))
    if report.errors and not (report.batches or report.resubmitted):
        # A script's `id=$(ocr-assets submit …)` must see the failure, not an empty id and status 0.
        for error in report.errors:
            err_console.print(f"[red]error:[/red] not submitted: {escape(error)}")
        if report.uncertain:
            err_console.print("the remote job may exist: `ocr-assets run --batch` (or the poll sensor) adopts it "
                              "by its display name, or puts its records back")
        raise typer.Exit(1)
    if report.failed_before_submit:
        err_console.print(f"[red]{report.failed_before_submit} records failed before submit[/red]: "
                          "see `ocr-assets failures`")
        raise typer.Exit(1)


def batch_status(
    batch_id: Annotated[str, typer.Argument(help="Our batch id (or the remote batches/... name).")],
    config: ConfigOption = None,
    refresh: Annotated[bool, typer.Option(help="Ask the API for the current state first.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print a batch's state, its records' outcomes and its integrity report."""
    from ocr_assets.engines.gemini.runner import batch_status as status_of

    pipeline, client = _batch_pipeline(config)
    batch = _resolve_batch(pipeline, batch_id)
    if refresh and batch.remote_name and batch.state in (BatchState.PENDING, BatchState.RUNNING):
        with friendly_errors(Exception):
            remote = client.poll(batch.remote_name)
        pipeline.store.set_batch_state(batch.batch_id, remote.state)
    info = status_of(pipeline, batch.batch_id)
    if as_json:
        console.print_json(json.dumps(info, default=str))
        return
    row = info["batch"]
    console.print(f"[bold]{row['batch_id']}[/bold] ({row.get('remote_name') or 'not created remotely'}): "
                  f"[bold]{row['state']}[/bold], {row['record_count']} records, created {row['created_at']}")
    console.print(table("record outcomes", ["outcome", "records"], sorted(info["outcomes"].items())))
    integrity = batch_integrity(pipeline.store, batch.batch_id)
    if integrity is not None:
        console.print(_integrity_line(integrity))
        if integrity.alert:
            console.print(f"[yellow]alert:[/yellow] {escape(integrity.alert)}")


def _integrity_line(integrity: IntegrityReport) -> str:
    i = integrity
    return (f"integrity: {i.parsed}/{i.submitted} parsed, {i.missing_count} missing, {i.duplicate_count} duplicate, "
            f"{i.unknown_count} unknown keys")


def batch_fetch(
    batch_id: Annotated[str, typer.Argument(help="Our batch id (or the remote batches/... name).")],
    config: ConfigOption = None,
    from_archive: Annotated[bool, typer.Option("--from-archive", help="Replay the saved result file; no API call.")] = False,
) -> None:
    """Ingest a finished batch (idempotent: fetching twice changes nothing)."""
    from ocr_assets.engines.gemini.ingest import BatchNotFinished, ingest_batch

    pipeline, client = _batch_pipeline(config)
    batch = _resolve_batch(pipeline, batch_id)
    with friendly_errors(BatchNotFinished, FileNotFoundError, ValueError, PromptError):
        report = ingest_batch(pipeline, client, batch, from_archive=from_archive)
    console.print(table(f"batch {batch.batch_id} ({report.remote_state})",
                        ["succeeded", "retryable", "fatal", "blocked", "unchanged", "released"],
                        [(report.succeeded, report.retryable, report.fatal, report.blocked, report.ignored,
                          report.released)]))
    if not (report.succeeded or report.retryable or report.fatal or report.released):
        console.print("nothing changed: every record of this batch was already settled")
    if report.integrity is not None:
        console.print(_integrity_line(report.integrity))
    if report.alert:
        console.print(f"[yellow]alert:[/yellow] {escape(report.alert)}")
    if report.fatal or report.blocked:
        err_console.print(f"[red]{report.fatal} fatal, {report.blocked} blocked[/red] in this batch: "
                          "see `ocr-assets failures`")
        raise typer.Exit(1)


def batch_cancel(
    batch_id: Annotated[str, typer.Argument(help="Our batch id (or the remote batches/... name).")],
    config: ConfigOption = None,
) -> None:
    """Cancel a batch remotely and return its records to retryable."""
    from ocr_assets.engines.gemini.runner import cancel_batch

    pipeline, client = _batch_pipeline(config)
    batch = _resolve_batch(pipeline, batch_id)
    if batch.state not in (BatchState.SUBMITTING, BatchState.HELD, BatchState.PENDING, BatchState.RUNNING):
        err_console.print(f"[red]error:[/red] batch {batch.batch_id} is {batch.state}; only active batches can be cancelled")
        raise typer.Exit(1)
    with friendly_errors(after=f"batch {batch.batch_id} and its records are unchanged"):
        keys = cancel_batch(pipeline, client, batch.batch_id)
    console.print(f"cancelled {batch.batch_id}: {len(keys)} records back to retryable")


def batches(
    config: ConfigOption = None,
    active: Annotated[bool, typer.Option("--active", help="Only batches still in flight.")] = False,
    stuck: Annotated[bool, typer.Option("--stuck", help="Only batches pending/running past gemini.stuck_batch_hours.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows (newest first).")] = 50,
) -> None:
    """List batches with their state, record count and age."""
    from ocr_assets.engines.gemini.poll import stuck_batches

    settings = get_settings(config)
    pipeline = Pipeline(settings)
    if stuck:
        rows = stuck_batches(pipeline)
    elif active:
        rows = pipeline.store.active_batches()
    else:
        rows = pipeline.store.batches()
    rows = sorted(rows, key=lambda b: b.created_at, reverse=True)[:limit]
    console.print(table(f"{len(rows)} batches", ["batch", "remote", "engine", "state", "records", "created", "updated"],
                        [(b.batch_id, b.remote_name, b.engine, b.state, b.record_count, b.created_at, b.updated_at)
                         for b in rows]))
    if stuck and rows:
        console.print("cancel a stuck batch with `ocr-assets batch-cancel <batch>` (its records return to retryable)")
