"""`ocr-assets` command line: one Typer app, with commands grouped by domain in sibling modules."""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
import threading

# A command's start imports tens of thousands of objects (typer, pydantic models, DuckDB, the Gemini
# SDK's types), and collecting young objects every 700 allocations re-walks them for nothing.
gc.set_threshold(20_000, 50, 50)

import typer  # noqa: E402

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


def main() -> None:
    """The `ocr-assets` console script: run the command, then end the process without teardown.

    After a command, Python would still tear the interpreter down, ending with a garbage collection
    over everything the command imported (pydantic models, DuckDB, the Gemini SDK): ~0.3 s on a small
    machine, a sixth of a `submit`. Everything an exit has to do is done first, in Python's own order
    (wait for non-daemon threads, run the atexit handlers: store lease hand-back, tracker flush; flush
    stdio), as `multiprocessing` does for its children. A Python without those hooks exits normally.
    """
    try:
        app()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    wait_for_threads = getattr(threading, "_shutdown", None)
    run_atexit = getattr(atexit, "_run_exitfuncs", None)
    if wait_for_threads is None or run_atexit is None:
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed, status 1, as Python does
        print(code, file=sys.stderr)
        status = 1
    wait_for_threads()
    run_atexit()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`ocr-assets records | head`): Python exits 120 there
            status = status or 120
    os._exit(status)
