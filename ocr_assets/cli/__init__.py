"""`ocr-assets` command line: the console script's `main`, and the Typer `app` (in `cli.commands`).

This module stays light: `main` may fork the Gemini SDK helper before the app's imports, while the
process has no threads or open files (see `engines.gemini.helper`).
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from typing import Any


def __getattr__(name: str) -> Any:  # `from ocr_assets.cli import app`
    if name == "app":
        from ocr_assets.cli.commands import app

        return app
    raise AttributeError(name)


def main() -> None:
    """The `ocr-assets` console script: run the command, then end the process without teardown.

    After a command, Python would still tear the interpreter down, ending with a garbage collection
    over everything the command imported (pydantic models, DuckDB, the Gemini SDK): ~0.3 s on a small
    machine, a sixth of a `submit`. Everything an exit has to do is done first, in Python's own order
    (wait for non-daemon threads, run the atexit handlers: store lease hand-back, tracker flush; flush
    stdio), as `multiprocessing` does for its children. A Python without those hooks exits normally.

    The short Gemini batch commands first fork the SDK helper, which imports google-genai on another
    core while the app's imports and the command's local work run here.
    """
    # A command's start imports tens of thousands of objects (typer, pydantic models, DuckDB, the
    # Gemini SDK's types), and collecting young objects every 700 allocations re-walks them for
    # nothing. Set here, not at import, so only the console script's process is tuned (not pytest's).
    gc.set_threshold(20_000, 50, 50)
    from ocr_assets.engines.gemini import helper

    sdk_helper = helper.start_for(sys.argv[1:])
    from ocr_assets.cli.commands import app

    try:
        app()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        if sdk_helper is not None:
            sdk_helper.close()
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
