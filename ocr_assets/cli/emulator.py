"""CLI: `ocr-assets emulator` serves the local Gemini API emulator until interrupted."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from ocr_assets.cli.common import console, err_console


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.command("emulator", rich_help_panel="Tools")(emulator)


def emulator(
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0 picks a free one).")] = 8765,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    latency: Annotated[float, typer.Option("--latency", help="Seconds a batch stays RUNNING.")] = 2.0,
    pending: Annotated[float, typer.Option("--pending", help="Seconds a batch stays PENDING.")] = 0.0,
    fault_rate: Annotated[
        float, typer.Option("--fault-rate", help="Share of records given a fault (spread over every kind).")
    ] = 0.0,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of faults and model-like answers: the same seed, the same answers.")
    ] = 0,
    answerer: Annotated[
        str, typer.Option("--answerer", help="local (the local OCR engine) or echo (instant, deterministic).")
    ] = "local",
    max_enqueued_tokens: Annotated[
        int | None, typer.Option("--max-enqueued-tokens", help="Enqueued-token cap across active batches.")
    ] = None,
    model_like: Annotated[
        bool, typer.Option("--model-like", help="Vary answers like real model output (nulls, fences, roman labels…).")
    ] = False,
) -> None:
    """Serve a local Gemini API (files, batches, generateContent, caches) for the unmodified SDK."""
    from ocr_assets.engines.emulator import (
        AnswerError,
        EmulatorConfig,
        EmulatorServer,
        FaultConfig,
        make_answerer,
    )
    from ocr_assets.engines.emulator.config import ModelLikeConfig

    try:
        chosen = make_answerer(answerer)
        faults = FaultConfig.mixed(fault_rate, seed=seed)
        config = EmulatorConfig(host=host, port=port, batch_latency_s=latency, pending_s=pending,
                                max_enqueued_tokens=max_enqueued_tokens, faults=faults,
                                model_like=ModelLikeConfig(enabled=model_like))
    except (AnswerError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    server = EmulatorServer(config, answerer=chosen)
    stop = threading.Event()
    # Before the URL is printed: whoever reads it may stop the emulator at once.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a process manager's stop is a clean stop too
    try:
        server.start()
    except OSError as exc:
        err_console.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc}")
        raise typer.Exit(1) from None
    console.print(f"Gemini emulator on [bold]{server.url}[/bold] (answerer {answerer}, latency {latency}s, "
                  f"fault rate {fault_rate}, seed {seed}{', model-like answers' if model_like else ''})")
    console.print(f"  export GOOGLE_GEMINI_BASE_URL={server.url}   # or gemini.base_url in the settings")
    console.print(f"  request log: {server.url}/_emulator/log   Ctrl-C to stop")
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        console.print("emulator stopped")
