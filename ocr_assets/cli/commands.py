"""The `ocr-assets` Typer app: commands grouped by domain in sibling modules, each adding its own."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="ocr-assets",
    help="OCR scanned course catalogs into validated JSON (plan, run, inspect, operate).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold secrets
    # Plain help text: rich/markdown modes turn "state:school:year" into an emoji.
    rich_markup_mode=None,
)

# Each module adds its commands with `register(app)`; heavy imports stay inside the commands.
COMMAND_MODULES = ("corpus", "gemini", "local", "ops", "sample", "emulator", "dagster_cmds")

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"ocr_assets.cli.{_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"ocr_assets.cli.{_name}":
            raise
        continue
    _module.register(app)
