"""`ocr-assets` command line: one Typer app, with commands grouped by domain in sibling modules."""

from __future__ import annotations

import typer

from ocr_assets.cli import corpus, gemini, local, ops, sample

app = typer.Typer(
    name="ocr-assets",
    help="OCR scanned course catalogs into validated JSON (plan, run, inspect, operate).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold secrets
)

for module in (corpus, gemini, local, ops, sample):
    module.register(app)
