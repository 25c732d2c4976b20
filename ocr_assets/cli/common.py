"""Shared CLI plumbing: settings loading with friendly errors, the console, small tables, exit statuses.

Exit statuses, for every command that runs records (`run`, `submit`, `local run`, `batch-fetch`, `demo`):
0 = every selected record SUCCESS (or, with `--limit`, none failed); 1 = some record ended in a terminal
failure (FATAL, BLOCKED, retries exhausted) or an API call failed; 2 = bad usage or configuration.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ocr_assets.redaction import scrub
from ocr_assets.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from ocr_assets.plan import PlanResult
    from ocr_assets.store import RecordStore

PIPE_WIDTH = 400


def _console(*, stderr: bool = False) -> Console:
    terminal = Console(stderr=stderr)
    # Piped or redirected (scripts, CI logs): not rich's 80-column default, so tables keep ids whole.
    return terminal if terminal.is_terminal else Console(stderr=stderr, width=PIPE_WIDTH)


console = _console()
err_console = _console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Settings YAML (default: ./ocr_assets.yaml or $OCR_ASSETS_CONFIG)."),
]


def get_settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except SettingsError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@contextmanager
def friendly_errors(*kinds: type[BaseException], after: str = "", code: int = 1) -> Iterator[None]:
    """Turn expected domain errors (and failed API calls) into one red line and exit `code` (no traceback).

    `after` is said after the error (e.g. that the records are unchanged).
    """
    from ocr_assets.engines.gemini.client import GeminiCallError  # our scrubbed error; no SDK import

    try:
        yield
    except (*kinds, GeminiCallError) as exc:
        err_console.print(f"[red]error:[/red] {escape(scrub(exc))}" + (f"; {after}" if after else ""))
        raise typer.Exit(code) from None


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    out = Table(title=title, show_lines=False)
    for column in columns:
        # Wrap, never cut: an id cut to "gb-2026…" on a narrow terminal cannot be copied.
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*["" if v is None else str(v) for v in row])
    return out


BookOption = Annotated[list[str] | None, typer.Option("--book", help="Only this book (state:school:year); repeatable.")]
LimitOption = Annotated[int | None, typer.Option(min=1, help="Attempt at most this many records.")]


def selected_books(store: RecordStore, books: Sequence[str] | None) -> list[str] | None:
    """The `--book` values, each checked against the plan (exit 2 naming the unknown ones)."""
    if not books:
        return None
    planned = set(store.books())
    unknown = [b for b in books if b not in planned]
    if unknown:
        err_console.print(f"[red]error:[/red] not in the plan: {escape(scrub(', '.join(unknown)))} "
                          "(`ocr-assets status` lists the planned books; `ocr-assets plan` adds new ones)")
        raise typer.Exit(2)
    return list(books)


def plan_corpus(store: RecordStore, settings: Settings) -> PlanResult:
    """Scan the corpus into the store; a missing root is a configuration error (exit 2 naming it)."""
    from ocr_assets.plan import CorpusRootMissing, build_plan

    paths = settings.paths
    try:
        return build_plan(store, paths.images_root, paths.allow_list_root, settings.filters)
    except CorpusRootMissing as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))} (fix it in the settings file or its "
                          "OCR_ASSETS_PATHS__* override)")
        raise typer.Exit(2) from None


def print_plan(result: PlanResult, out: Console, *, show_report: int = 20, counts: bool = True) -> None:
    """The plan's counts, then its first report lines (the rest are counted, and kept in the store)."""
    if counts:
        out.print(f"plan: {result.pages_found} pages in {result.books_found} books "
                  f"({result.pages_added} pages added, {len(result.report)} report entries)")
    if result.report:
        rows = [(e.reason, e.path) for e in result.report[:show_report]]
        out.print(table(f"plan report: {len(result.report)} entries (run {result.plan_run})", ["reason", "path"], rows))
        if len(result.report) > show_report:
            out.print(f"… {len(result.report) - show_report} more (stored in the plan_report table)")


def exit_for_records(store: RecordStore, books: Sequence[str] | None, *, limited: bool = False) -> None:
    """Exit 1 when a selected record ended in a terminal failure, or (without a limit) is not done yet."""
    counts: dict[str, int] = {}
    for by_status in store.counts_by_book(books).values():
        for status, n in by_status.items():
            counts[status] = counts.get(status, 0) + n
    unfinished = store.unfinished_count(books)
    failed = sum(counts.values()) - counts.get("SUCCESS", 0) - unfinished
    if failed:
        fatal, blocked = counts.get("FATAL_FAILURE", 0), counts.get("BLOCKED", 0)
        err_console.print(f"[red]{failed} selected records failed[/red] ({fatal} fatal, {blocked} blocked, "
                          f"{failed - fatal - blocked} out of retries): see `ocr-assets failures`")
        raise typer.Exit(1)
    if unfinished and not limited:
        err_console.print(f"[yellow]{unfinished} selected records are not finished[/yellow] (see `ocr-assets status`)")
        raise typer.Exit(1)
