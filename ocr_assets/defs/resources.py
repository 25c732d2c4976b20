"""Resources: thin typed handles on the domain (settings, record store, Gemini, local model, tracker)."""

import os
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from ocr_assets.core import EngineSpec, SyncEngine
from ocr_assets.pipeline import Pipeline, open_store
from ocr_assets.settings import Settings, load_settings
from ocr_assets.store import RecordStore
from ocr_assets.tracking import NullTracker, Tracker, make_tracker

if TYPE_CHECKING:
    from ocr_assets.engines.gemini.batch import GeminiBatchClient


class SettingsResource(dg.ConfigurableResource):
    """Project settings: a YAML file (default $OCR_ASSETS_CONFIG or ./ocr_assets.yaml) plus OCR_ASSETS_* overrides."""

    config_path: str | None = None

    def load(self) -> Settings:
        return load_settings(self.config_path)


class RecordStoreResource(dg.ConfigurableResource):
    """The DuckDB record store; every call opens, runs one short transaction and closes (never held)."""

    settings: SettingsResource

    def open(self) -> RecordStore:
        return open_store(self.settings.load())


class GeminiResource(dg.ConfigurableResource):
    """Gemini API access: the key comes from $GEMINI_API_KEY (never logged); base_url points at the emulator."""

    api_key: str | None = None
    base_url: str | None = None

    def configure(self, settings: Settings) -> Settings:
        """`settings` with this resource's endpoint (the SDK reads the key from the environment)."""
        if not self.base_url:
            return settings
        return settings.model_copy(update={"gemini": settings.gemini.model_copy(update={"base_url": self.base_url})})

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.api_key:
            env["GEMINI_API_KEY"] = self.api_key
        return env

    def batch_client(self, pipeline: Pipeline) -> "GeminiBatchClient":
        """A Batch API client for the pipeline's (already configured) settings and store, with this resource's key."""
        from ocr_assets.engines.factory import make_batch_client

        return make_batch_client(pipeline, environ=self.environ())


def gemini_resource(base_url: str | None = None) -> GeminiResource:
    """The key as `dg.EnvVar` when it is set; without it the resource still loads (local runs need no key).

    A dg.EnvVar naming an unset variable fails config validation of every run that needs the resource.
    """
    key = dg.EnvVar("GEMINI_API_KEY") if os.environ.get("GEMINI_API_KEY") else None
    return GeminiResource(api_key=key, base_url=base_url)


class LocalInferenceResource(dg.ConfigurableResource):
    """The local OCR model (CPU/GPU), loaded on first use and kept for the run; unset fields come from settings.local.

    Nothing loads at setup, and `get` loads only for a run whose resolved engine (`EngineSpec`, from the run
    config over settings.engine) is local: a Gemini run never pays for the model, whatever the file says.
    """

    settings: SettingsResource
    device: str | None = None
    batch_size: str | None = None
    engine: str | None = Field(None, description="The local OCR model (local.engine): rapidocr | tesseract | "
                                                 "transformers.")
    model_dir: str | None = None
    _inference: Any = PrivateAttr(default=None)

    def overrides(self) -> dict[str, str]:
        """The fields set on this resource, over settings.local, for `core.resolve_engine` (empty = unset)."""
        fields = {"device": self.device, "batch_size": self.batch_size, "engine": self.engine,
                  "model_dir": self.model_dir}
        return {name: value for name, value in fields.items() if value}

    def get(self, spec: EngineSpec) -> SyncEngine | None:
        """The loaded engine for a local `spec` (built and loaded on first use, then reused for the whole run);
        None for a Gemini spec."""
        if spec.local is None:
            return None
        if self._inference is None:
            from ocr_assets.engines.factory import load_engine, local_engine

            inference = local_engine(spec.local)
            load_engine(inference)
            self._inference = inference
        return self._inference

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._inference is not None:
            self._inference.close()


class TrackerResource(dg.ConfigurableResource):
    """Braintrust inference tracking when $BRAINTRUST_API_KEY is set; off otherwise (DuckDB log always on)."""

    project: str | None = None
    enabled: bool = True
    _tracker: Any = PrivateAttr(default=None)

    def get(self) -> Tracker:
        if self._tracker is None:
            self._tracker = make_tracker(self.project) if self.enabled else NullTracker()
        return self._tracker

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._tracker is not None:
            self._tracker.flush()


def make_pipeline(settings: Settings, store: RecordStoreResource, tracker: TrackerResource) -> Pipeline:
    return Pipeline(settings, store.open(), tracker=tracker.get())


def default_resources() -> dict[str, Any]:
    """Resource instances keyed by role; paths come from settings ($OCR_ASSETS_CONFIG)."""
    settings = SettingsResource()
    return {
        "settings": settings,
        "store": RecordStoreResource(settings=settings),
        "gemini": gemini_resource(),
        "local_inference": LocalInferenceResource(settings=settings),
        "tracker": TrackerResource(),
    }
