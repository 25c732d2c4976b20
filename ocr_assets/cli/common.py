"""Shared CLI plumbing: settings loading with friendly errors, the console, small tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ocr_assets.settings import Settings, SettingsError, load_settings

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
def friendly_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn expected domain errors into one red line and exit code 1 (no traceback)."""
    try:
        yield
    except kinds as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    out = Table(title=title, show_lines=False)
    for column in columns:
        # Wrap, never cut: an id cut to "gb-2026…" on a narrow terminal cannot be copied.
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*["" if v is None else str(v) for v in row])
    return out
