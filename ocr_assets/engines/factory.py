"""Pick the engine the settings name and drive records to terminal with it.

`drive` is what the CLI `run`, the Dagster assets and the benchmarks call: synchronous engines
(local, Gemini real-time) go through `Pipeline.run_sync`; Gemini batch goes through the batch loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ocr_assets.core import SyncEngine
from ocr_assets.pipeline import Pipeline, Progress, ProgressCallback, RunSummary
from ocr_assets.settings import LocalSettings, Settings

if TYPE_CHECKING:
    from ocr_assets.engines.gemini.batch import GeminiBatchClient
    from ocr_assets.engines.gemini.calls import BatchCalls
    from ocr_assets.engines.local.ray_cluster import RayInference
    from ocr_assets.engines.local.runner import LocalInference


class EngineUnavailable(RuntimeError):
    """The configured engine cannot be built here (missing dependency, credentials or model)."""


def local_engine(local: LocalSettings) -> LocalInference | RayInference:
    """The local engine `local` describes: this host's devices, or Ray actors with `cluster: ray`."""
    from ocr_assets.engines.local.runner import LocalInference  # torch / ONNX load only for local runs

    engine = LocalInference(engine=local.engine, device=local.device, batch_size=local.batch_size,
                            model_dir=local.model_dir)
    if local.cluster == "ray":
        from ocr_assets.engines.local.ray_cluster import RayInference  # ray loads only for cluster runs

        return RayInference(engine, address=local.ray_address)
    return engine


def make_sync_engine(settings: Settings) -> SyncEngine:
    """The synchronous engine for `settings.engine` (local or gemini-realtime)."""
    if settings.engine == "local":
        return local_engine(settings.local)
    if settings.engine in ("gemini-realtime", "gemini-flex"):
        from ocr_assets.engines.gemini.client import GeminiUnavailable, make_client
        from ocr_assets.engines.gemini.realtime import GeminiFlexEngine, GeminiRealtimeEngine, flex_supported

        if settings.engine == "gemini-flex" and not flex_supported():
            raise EngineUnavailable("the installed google-genai has no service_tier: the flex tier is unavailable")
        try:
            client = make_client(settings)
        except GeminiUnavailable as exc:
            raise EngineUnavailable(str(exc)) from None
        engine_cls = GeminiFlexEngine if settings.engine == "gemini-flex" else GeminiRealtimeEngine
        return engine_cls(settings, client)
    raise EngineUnavailable(f"engine {settings.engine!r} is not a synchronous engine in this build")


def make_batch_client(pipeline: Pipeline, *, calls: BatchCalls | None = None) -> GeminiBatchClient:
    """The Gemini Batch API client for the pipeline's settings and store.

    The credentials are checked now, before any record is claimed; the SDK client is built on first
    use (commands that only read the store never import the SDK), or `calls` answers instead (tests).
    """
    from ocr_assets.engines.gemini.batch import GeminiBatchClient
    from ocr_assets.engines.gemini.client import GeminiUnavailable, credentials

    try:
        credentials(pipeline.settings)
    except GeminiUnavailable as exc:
        raise EngineUnavailable(str(exc)) from None
    return GeminiBatchClient(pipeline.settings, store=pipeline.store, calls=calls)


def drive(
    pipeline: Pipeline,
    *,
    books: Sequence[str] | None = None,
    limit: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunSummary:
    """Run the selected books (or everything) until every record is terminal.

    `on_progress` gets a `Progress` after every wave (synchronous engines) or poll tick (Gemini batch).
    """
    if pipeline.settings.engine == "gemini-batch":
        from ocr_assets.engines.gemini.runner import RunProgress, run_batches

        on_tick = None
        if on_progress is not None:
            unfinished = pipeline.store.unfinished_count(books)  # the pages this run sets out to finish

            def on_tick(tick: RunProgress) -> None:
                left = tick.total - tick.terminal
                on_progress(Progress(done=max(0, unfinished - left), total=unfinished, failures=tick.failures,
                                     elapsed_s=tick.elapsed_s, alerts=tick.alerts))

        result = run_batches(pipeline, make_batch_client(pipeline), books=books, limit=limit, on_tick=on_tick)
        return RunSummary(
            waves=len(result.submitted), attempted=result.attempted, succeeded=result.succeeded,
            retryable=result.retryable, fatal=result.fatal, blocked=result.blocked, batches=result.submitted,
        )
    engine = make_sync_engine(pipeline.settings)
    load = getattr(engine, "load", None)
    if callable(load):
        try:
            load()  # a missing model, device or Ray cluster stops here, before any record is claimed
        except ValueError as exc:  # DeviceError, RayUnavailable: the engine cannot run on this host
            raise EngineUnavailable(str(exc)) from exc
    return pipeline.run_sync(engine, books=books, limit=limit, on_progress=on_progress)
