"""The CLI's progress bar over a run's `Progress` (pages done / total, rate, failures, ETA).

`run` feeds it from the engine's progress callback; `demo` from `ocr_assets.pipeline.progress_log`, where a
Dagster run in the same process publishes its page_ocr progress.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
from rich.progress import Progress as RichProgress

from ocr_assets.pipeline import Progress, ProgressCallback, progress_log


@contextmanager
def progress_bar(console: Console, description: str) -> Iterator[ProgressCallback]:
    """A rich bar for one run; yields the callback that moves it. New batch alerts print above it."""
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[failures]} failed"),
               TextColumn("ETA {task.fields[eta]}"))
    with RichProgress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=None, rate="… pages/s", failures=0, eta="…")
        alerts_shown = 0

        def update(progress: Progress) -> None:
            nonlocal alerts_shown
            for alert in progress.alerts[alerts_shown:]:
                bar.console.print(f"[yellow]alert:[/yellow] {escape(alert)}")
            alerts_shown = len(progress.alerts)
            bar.update(task, completed=progress.done, total=progress.total, failures=progress.failures,
                       rate=f"{progress.rate:.2f} pages/s", eta=progress.eta_text)

        yield update


class _Forward(logging.Handler):
    def __init__(self, callback: ProgressCallback):
        super().__init__(logging.INFO)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        progress = getattr(record, "progress", None)
        if isinstance(progress, Progress):
            self.callback(progress)


@contextmanager
def published_progress(callback: ProgressCallback) -> Iterator[None]:
    """Feed `callback` with every `Progress` published to `progress_log` in this process meanwhile."""
    handler = _Forward(callback)
    level = progress_log.level
    progress_log.addHandler(handler)
    progress_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        progress_log.removeHandler(handler)
        progress_log.setLevel(level)
