"""Build the engine an `EngineSpec` names and drive records to terminal with it.

`drive` is the one driver: the CLI `run` / `local run`, the Dagster assets and the benchmarks call it with
the spec they resolved (`core.resolve_engine`). Synchronous engines go through `Pipeline.run_sync`, the
Gemini batch engine through the batch loop; both report the same `Progress`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ocr_assets.core import EngineSpec, EngineUnavailable, SyncEngine, resolve_engine
from ocr_assets.page_requests import ContextProvider
from ocr_assets.pipeline import Pipeline, ProgressCallback, RunSummary
from ocr_assets.settings import LocalSettings, Settings

if TYPE_CHECKING:
    from ocr_assets.engines.gemini.batch import GeminiBatchClient
    from ocr_assets.engines.gemini.calls import BatchCalls
    from ocr_assets.engines.local.ray_cluster import RayInference
    from ocr_assets.engines.local.runner import LocalInference


def local_engine(local: LocalSettings) -> LocalInference | RayInference:
    """The local engine `local` describes: this host's devices, or Ray actors with `cluster: ray`."""
    from ocr_assets.engines.local.runner import LocalInference  # torch / ONNX load only for local runs

    engine = LocalInference(engine=local.engine, device=local.device, batch_size=local.batch_size,
                            model_dir=local.model_dir)
    if local.cluster == "ray":
        from ocr_assets.engines.local.ray_cluster import RayInference  # ray loads only for cluster runs

        return RayInference(engine, address=local.ray_address)
    return engine


def make_sync_engine(settings: Settings, spec: EngineSpec | None = None) -> SyncEngine:
    """The synchronous engine `spec` names (default: the settings' engine), built but not loaded."""
    spec = spec or resolve_engine(settings)
    if spec.local is not None:
        return local_engine(spec.local)
    if spec.kind in ("gemini-realtime", "gemini-flex"):
        from ocr_assets.engines.gemini.client import GeminiUnavailable, make_client
        from ocr_assets.engines.gemini.realtime import GeminiFlexEngine, GeminiRealtimeEngine, flex_supported

        if spec.kind == "gemini-flex" and not flex_supported():
            raise EngineUnavailable("the installed google-genai has no service_tier: the flex tier is unavailable")
        try:
            client = make_client(settings)
        except GeminiUnavailable as exc:
            raise EngineUnavailable(str(exc)) from None
        engine_cls = GeminiFlexEngine if spec.kind == "gemini-flex" else GeminiRealtimeEngine
        return engine_cls(settings, client)
    raise EngineUnavailable(f"engine {spec.kind!r} is not a synchronous engine in this build")


def make_batch_client(pipeline: Pipeline, *, calls: BatchCalls | None = None,
                      environ: Mapping[str, str] | None = None) -> GeminiBatchClient:
    """The Gemini Batch API client (a `BatchEngine`) for the pipeline's settings and store.

    The credentials are checked now, before any record is claimed; the SDK client is built on first
    use (commands that only read the store never import the SDK), or `calls` answers instead (tests).
    `environ` (a Dagster resource's, holding its key) is read instead of the process environment.
    """
    from ocr_assets.engines.gemini.batch import GeminiBatchClient
    from ocr_assets.engines.gemini.client import GeminiUnavailable, credentials, make_client

    try:
        credentials(pipeline.settings, environ)
        client = make_client(pipeline.settings, environ=environ) if environ is not None else None
    except GeminiUnavailable as exc:
        raise EngineUnavailable(str(exc)) from None
    return GeminiBatchClient(pipeline.settings, client, store=pipeline.store, calls=calls)


def load_engine(engine: SyncEngine) -> None:
    """Load the model / devices / Ray actors now, so a missing one stops the run before any record is claimed."""
    from ocr_assets.engines.local.vlm_engine import ModelLoadError  # no torch import: the module loads it lazily

    load = getattr(engine, "load", None)
    if callable(load):
        try:
            load()
        except (ValueError, ModelLoadError) as exc:  # DeviceError, RayUnavailable, a missing model or tesseract
            raise EngineUnavailable(str(exc)) from exc


def drive(
    pipeline: Pipeline,
    spec: EngineSpec | None = None,
    *,
    books: Sequence[str] | None = None,
    limit: int | None = None,
    on_progress: ProgressCallback | None = None,
    sync_engine: SyncEngine | None = None,
    provider: ContextProvider | None = None,
) -> RunSummary:
    """Run the selected books (or everything) with the engine `spec` names until every record is terminal.

    `spec` defaults to the pipeline settings' engine. `sync_engine`: an already-loaded engine for a
    synchronous spec (a Dagster resource's, or one the CLI watches page by page); else one is built
    and loaded here. `on_progress` gets a `Progress` after every wave or batch-loop tick. `provider`:
    where each page's context comes from; by default, for every Gemini engine (batch, real-time,
    flex) the provider `gemini.context_source` names, for a local engine the upstream page's output.
    """
    spec = spec or resolve_engine(pipeline.settings)
    if provider is None:
        from ocr_assets.engines.gemini.context import provider_for

        provider = provider_for(pipeline.settings, pipeline.store, local_engine=spec.local is not None)
    if spec.is_batch:
        from ocr_assets.engines.gemini.runner import run_batches

        result = run_batches(pipeline, make_batch_client(pipeline), books=books, limit=limit,
                             provider=provider, on_progress=on_progress)
        return RunSummary(
            waves=len(result.submitted), attempted=result.attempted, succeeded=result.succeeded,
            retryable=result.retryable, fatal=result.fatal, blocked=result.blocked, batches=result.submitted,
        )
    if sync_engine is None:
        sync_engine = make_sync_engine(pipeline.settings, spec)
        load_engine(sync_engine)
    elif sync_engine.name != spec.label:  # the records would be claimed under another engine than the run's
        raise ValueError(f"the engine given is {sync_engine.name!r} but the run's engine is {spec.label!r}")
    return pipeline.run_sync(sync_engine, books=books, limit=limit, on_progress=on_progress, provider=provider)
