"""CLI: plan the corpus and inspect record state (`plan`, `status`, `records`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ocr_assets.cli.common import ConfigOption, console, get_settings, plan_corpus, print_plan, selected_books, table
from ocr_assets.pipeline import open_store
from ocr_assets.plan import export_plan
from ocr_assets.store import RecordStatus

STATUS_ORDER = [s.value for s in RecordStatus]


PANEL = "Corpus and records"  # the help's group for these commands


def register(app: typer.Typer) -> None:
    app.command("plan", rich_help_panel=PANEL)(plan)
    app.command("status", rich_help_panel=PANEL)(status)
    app.command("records", rich_help_panel=PANEL)(records)


def plan(
    config: ConfigOption = None,
    export: Annotated[Path | None, typer.Option(help="Also write the plan as {nodes, deps} JSON here.")] = None,
    show_report: Annotated[int, typer.Option(min=0, help="How many report lines to print.")] = 20,
) -> None:
    """Scan images + allow-list once and add new books/pages to the record store."""
    settings = get_settings(config)
    store = open_store(settings)
    with console.status("scanning the corpus…"):
        result = plan_corpus(store, settings)
    console.print(
        f"planned [bold]{result.pages_found}[/bold] pages in [bold]{result.books_found}[/bold] books: "
        f"{len(result.books_added)} books added, {len(result.books_replanned)} re-planned (unstarted), "
        f"{result.books_unchanged} unchanged; {result.pages_added} pages written to {settings.paths.database}"
    )
    print_plan(result, console, show_report=show_report, counts=False)
    if export is not None:
        count = export_plan(store, export)
        console.print(f"exported {count} nodes to {export}")


def status(config: ConfigOption = None) -> None:
    """Counts by status per book, and active batches."""
    settings = get_settings(config)
    store = open_store(settings)
    counts = store.counts_by_book()
    rows = [[book] + [by_status.get(s, 0) for s in STATUS_ORDER] for book, by_status in counts.items()]
    totals = [sum(r[i + 1] for r in rows) for i in range(len(STATUS_ORDER))]
    rows.append(["[bold]total[/bold]"] + totals)
    console.print(table("records by book", ["book"] + STATUS_ORDER, rows))
    active = store.active_batches()
    if active:
        console.print(table("active batches", ["batch", "remote", "engine", "state", "records", "since"],
                            [(b.batch_id, b.remote_name, b.engine, b.state, b.record_count, b.created_at)
                             for b in active]))
    else:
        console.print("no active batches")


def records(
    config: ConfigOption = None,
    status: Annotated[RecordStatus | None, typer.Option("--status", help="Only this status.")] = None,
    book: Annotated[str | None, typer.Option("--book", help="Only this book (state:school:year).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 200,
) -> None:
    """List records with their status, attempts and last error."""
    store = open_store(get_settings(config))
    selected_books(store, [book] if book else None)
    rows = store.records(status=status, book=book, limit=limit)
    console.print(table(f"{len(rows)} records", ["key", "status", "attempts", "upstream", "error", "output"],
                        [(r.key, r.status, r.attempts, r.upstream_key, r.last_error, r.output_path) for r in rows]))
