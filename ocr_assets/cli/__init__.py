"""`ocr-assets` command line: one Typer app (the console script), commands grouped by domain in the help.

Each sibling module adds its commands with `register(app)`; heavy imports (the Gemini SDK, Dagster,
the local models) stay inside the commands, so `ocr-assets status` loads none of them.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from ocr_assets.redaction import scrub


class _RootGroup(TyperGroup):
    """The root command: commands listed by their help panel, and usage errors scrubbed."""

    def format_commands(self, ctx: typer.Context, formatter: Any) -> None:
        # Plain help (no rich markup: it turns "state:school:year" into an emoji), grouped by panel.
        panels: dict[str, list[tuple[str, str]]] = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            panel = getattr(command, "rich_help_panel", None) or "Commands"
            panels.setdefault(panel, []).append((name, command.get_short_help_str(formatter.width - 24)))
        for panel, rows in panels.items():
            with formatter.section(panel):
                formatter.write_dl(rows)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:
            # A usage error repeats the value given ("Invalid value for '--engine': '…'"), which
            # may be a key pasted in the wrong place.
            exc.message = scrub(exc.message)
            raise
        except (typer.Exit, typer.Abort, TyperException, KeyboardInterrupt):
            raise
        except Exception as exc:
            # A bug's traceback is still shown in full, but through the scrubber: an exception's
            # message can quote a request, a URL or a setting.
            from ocr_assets.engines.gemini.client import scrub_traceback

            print(scrub_traceback(exc), file=sys.stderr, end="")
            raise typer.Exit(1) from None


app = typer.Typer(
    name="ocr-assets",
    cls=_RootGroup,
    help="OCR scanned course catalogs into validated JSON (plan, run, inspect, operate).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold secrets
    # Plain help text: rich/markdown modes turn "state:school:year" into an emoji.
    rich_markup_mode=None,
)

from ocr_assets.cli import corpus, dagster_cmds, emulator, gemini, local, ops, sample  # noqa: E402

for _module in (corpus, gemini, local, ops, sample, emulator, dagster_cmds):
    _module.register(app)
