"""Project settings: one YAML file plus `OCR_ASSETS_...` environment overrides, validated by pydantic.

`pydantic-settings` reads and merges the sources; the priority is explicit values (CLI options) >
`OCR_ASSETS_SECTION__FIELD` environment variables (values parsed as YAML, as in the file) > the YAML
file > defaults. Secrets (`GEMINI_API_KEY`, `BRAINTRUST_API_KEY`) are never settings: they are read
from the environment at the point of use, and no error here ever repeats a secret's value.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from ocr_assets.redaction import SECRET_ENV, is_secret_value, looks_secret, scrub

DEFAULT_SETTINGS_FILE = "ocr_assets.yaml"
ENV_PREFIX = "OCR_ASSETS_"
# A variable under the prefix that steers the process rather than overriding a setting.
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"


class SettingsError(ValueError):
    """Bad configuration; the message names the offending field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathsSettings(_Section):
    images_root: Path = Path("data/sample/images")
    allow_list_root: Path = Path("data/sample/allow_list")
    output_root: Path = Path("data/output")
    database: Path = Path("data/state/ocr_assets.duckdb")
    # Ground truth for accuracy reports (synthetic corpora ship it); optional.
    ground_truth_root: Path | None = Path("data/sample/ground_truth")


class FilterSettings(_Section):
    states: list[str] = Field(default_factory=list)
    schools: list[str] = Field(default_factory=list)
    year_start: int | None = None
    year_end: int | None = None

    @model_validator(mode="after")
    def _year_range(self) -> "FilterSettings":
        if self.year_start is not None and self.year_end is not None and self.year_start > self.year_end:
            raise ValueError(f"year_start ({self.year_start}) is after year_end ({self.year_end})")
        return self

    def admits(self, state: str, school: str, year: int) -> bool:
        if self.states and state not in self.states:
            return False
        if self.schools and school not in self.schools:
            return False
        if self.year_start is not None and year < self.year_start:
            return False
        if self.year_end is not None and year > self.year_end:
            return False
        return True


class ExecutionSettings(_Section):
    max_attempts: int = Field(3, ge=1, le=100)
    batch_size_limit: int = Field(100, ge=1, le=100_000)
    max_concurrent_batches: int = Field(10, ge=1, le=100)
    poll_interval_seconds: float = Field(30.0, gt=0)
    realtime_concurrency: int = Field(8, ge=1, le=256)
    # Cost guard for the asset check, in USD; None disables it.
    cost_budget_usd: float | None = Field(None, ge=0)


class GenerationSettings(_Section):
    temperature: float = Field(0.1, ge=0, le=2)
    max_output_tokens: int = Field(8192, ge=1, le=65536)
    response_mime_type: Literal["application/json", "text/plain"] = "application/json"
    # Thinking tokens are billed as output and transcription needs almost none. Gemini 2.5 takes a
    # token budget (0 = off on Flash; -1 = the model decides), Gemini 3 a level. A request may carry
    # only one of them (the API answers 400): setting `thinking_level` drops the default budget.
    thinking_budget: int | None = Field(0, ge=-1, le=32768)
    thinking_level: Literal["minimal", "low", "medium", "high"] | None = None
    # Image tokens per page image; None = the model's default (the most tokens).
    media_resolution: Literal["low", "medium", "high"] | None = None

    @model_validator(mode="after")
    def _one_thinking_setting(self) -> "GenerationSettings":
        if self.thinking_level is not None and self.thinking_budget is not None:
            if "thinking_budget" in self.model_fields_set:
                raise ValueError("set thinking_budget or thinking_level, not both (a request with both is a 400)")
            self.thinking_budget = None
        return self


class ModelSettings(_Section):
    name: str = "gemini-2.5-flash"
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    # USD per million tokens at real-time prices; batch is billed at `batch_discount` of these.
    input_price_per_mtok: float = Field(0.30, ge=0)
    output_price_per_mtok: float = Field(2.50, ge=0)
    cached_input_price_per_mtok: float = Field(0.03, ge=0)
    batch_discount: float = Field(0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _thinking_fits_the_model(self) -> "ModelSettings":
        if self.generation.thinking_budget == 0 and "-pro" in self.name:
            raise ValueError(f"generation.thinking_budget 0 turns thinking off, which {self.name} does not "
                             "allow (its minimum is 128; -1 lets the model decide)")
        return self


class PromptSettings(_Section):
    registry_dir: Path = Path("prompts")
    name: str = "page_ocr"
    version: str = "v1.1"


class GeminiSettings(_Section):
    # Empty = Google's endpoint (or $GOOGLE_GEMINI_BASE_URL); the emulator sets e.g. http://127.0.0.1:8765.
    base_url: str | None = None
    api_version: str = "v1beta"
    # An explicit context cache (`cachedContents/...`) every request names; priced as the API bills it.
    cached_content: str | None = None
    upload_concurrency: int = Field(8, ge=1, le=64)
    # Batch status GETs in flight at once per poll tick (100 active jobs polled one by one at ~0.2 s
    # each would take a sensor tick 20 s).
    poll_concurrency: int = Field(8, ge=1, le=64)
    # The binding batch limit is enqueued input tokens per model across active jobs (tier 1: 3M).
    max_enqueued_tokens: int = Field(3_000_000, ge=1)
    # One input JSONL must stay under the API's 2 GB; a wave larger than this is sharded into batches.
    max_jsonl_bytes: int = Field(2_000_000_000, ge=1024, le=2_000_000_000)
    # Images inline (base64) in the JSONL; False = File API references (48 h expiry, 20 GB storage).
    inline_images: bool = True
    file_storage_limit_bytes: int = Field(20_000_000_000, ge=1)
    stuck_batch_hours: float = Field(26.0, gt=0)
    # A finished batch whose parsed results cover less than this fraction of its records raises an alert.
    min_result_fraction: float = Field(0.9, ge=0, le=1)
    # Raw result files (gzip) are archived here before parsing; empty = `<database folder>/batch_archive`.
    archive_dir: Path | None = None
    # Where a page's upstream context comes from: the upstream page's output (pages wait for it) or
    # a fast local OCR pass over the upstream image (every page of a book is runnable at once).
    # `upstream_image`: the upstream page's image itself, downscaled to `context_image_side` pixels
    # (a prompt version that knows it, v1.2+), beside the page's own: no local pass, no wait.
    context_source: Literal["upstream_output", "local_ocr", "upstream_image"] = "upstream_output"
    context_image_side: int = Field(384, ge=64, le=3072)
    # Real-time / flex calls: per-call timeout and transport retries (tenacity) before a record fails.
    request_timeout_s: float = Field(600.0, gt=0)
    transport_retries: int = Field(4, ge=1, le=20)
    retry_initial_wait_s: float = Field(1.0, ge=0)
    retry_max_wait_s: float = Field(60.0, ge=0)
    # A 429 on batches.create holds the batch and retries after this (doubling, capped).
    hold_backoff_s: float = Field(60.0, ge=0)
    hold_backoff_max_s: float = Field(1800.0, ge=0)


# Which engine runs the records (`engine:`); `local.engine` names the local OCR model (`LocalEngineName`).
EngineKind = Literal["local", "gemini-batch", "gemini-realtime", "gemini-flex"]
LocalEngineName = Literal["rapidocr", "tesseract", "transformers"]


def _pages_or_auto(value: Any) -> Any:
    """YAML and the environment give `3` as a number, `local run --batch-size 3` as the text "3": both mean 3."""
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value)
    if value == "auto" or (type(value) is int and value >= 1):  # `type`: YAML's `true` is no page count
        return value
    raise ValueError("must be 'auto' or a positive number of pages")


# Pages per local inference batch; `auto` sizes it from the device's free memory.
BatchSize = Annotated[int | Literal["auto"], BeforeValidator(_pages_or_auto)]


class LocalSettings(_Section):
    # rapidocr: pip-only, the default; tesseract: needs `apt-get install tesseract-ocr` (README).
    engine: LocalEngineName = "rapidocr"
    device: str = "cpu"
    batch_size: BatchSize = "auto"
    model_dir: Path | None = None
    # `ray`: pages run on Ray actors (one per GPU, else one CPU actor per node) while this process stays
    # the record store's only writer; `none`: this host's devices, inside this process.
    cluster: Literal["none", "ray"] = "none"
    # With `cluster: ray`: `auto` (the cluster this host joined), `host:port` / `ray://host:10001`, or
    # empty to start a private Ray on this host.
    ray_address: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False,
    )

    engine: EngineKind = "local"
    paths: PathsSettings = Field(default_factory=PathsSettings)
    filters: FilterSettings = Field(default_factory=FilterSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    gemini: GeminiSettings = Field(default_factory=GeminiSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)

    @field_validator("engine", mode="before")
    @classmethod
    def _normalise_engine(cls, value: Any) -> Any:
        return value.replace("_", "-") if isinstance(value, str) else value

    def resolve_paths(self, base: Path) -> "Settings":
        """Make relative paths absolute against `base` (the settings file's folder)."""
        def fix(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else (base / p).resolve())

        paths = self.paths.model_copy(
            update={name: fix(getattr(self.paths, name)) for name in PathsSettings.model_fields}
        )
        prompt = self.prompt.model_copy(update={"registry_dir": fix(self.prompt.registry_dir)})
        local = self.local.model_copy(update={"model_dir": fix(self.local.model_dir)})
        gemini = self.gemini.model_copy(update={"archive_dir": fix(self.gemini.archive_dir)})
        return self.model_copy(update={"paths": paths, "prompt": prompt, "local": local, "gemini": gemini})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file, environ = _SOURCES.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, _Environment(settings_cls, environ)]
        if file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=file))
        return tuple(sources)

    def override(self, section: str | None = None, *, source: str = "command-line options",
                 **values: Any) -> "Settings":
        """These settings with `values` over the top level (or over one section), validated like the file;
        a `SettingsError` names `source` (where the values came from)."""
        base = self.model_dump() if section is None else getattr(self, section).model_dump()
        updated = {**base, **{k: v for k, v in values.items() if v is not None}}
        cls = type(self) if section is None else type(getattr(self, section))
        try:
            checked = cls.model_validate(updated)
        except ValidationError as exc:
            error = SettingsError(_format_validation_error(exc, source))
        else:
            return checked if section is None else self.model_copy(update={section: checked})
        raise error  # outside the handler: no __context__ holding the unscrubbed input


# (YAML file or None, environment) of the `load_settings` call in progress: pydantic-settings asks the
# class for its sources, and a file or environment given per call has no other way in.
_SOURCES: ContextVar[tuple[Path | None, Mapping[str, str]]] = ContextVar("settings_sources", default=(None, {}))


class _Environment(EnvSettingsSource):
    """`OCR_ASSETS_...` variables of the given environment; values parsed as YAML, as in the file."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = {k: v for k, v in environ.items() if k.upper() != CONFIG_ENV}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, Any]:
        # Names case-insensitive, as pydantic-settings reads os.environ; "" means None.
        return {name.lower(): _yaml_value(value) for name, value in self._environ.items()}

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        return value  # parsed as YAML already (JSON is YAML too)

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        # pydantic-settings skips variables naming no setting; a typo (`OCR_ASSETS_EXECUTON__…`) is
        # an error here, as in the file, so it goes to validation as an unknown field.
        prefix = ENV_PREFIX.lower()
        for name, value in self.env_vars.items():
            rest = name[len(prefix):] if name.startswith(prefix) else ""
            if rest and rest.split("__")[0] not in self.settings_cls.model_fields:
                data[rest] = value
        return data


def _yaml_value(raw: str) -> Any:
    if raw == "":
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


@contextmanager
def _sources(file: Path | None, environ: Mapping[str, str]) -> Iterator[None]:
    token = _SOURCES.set((file, environ))
    try:
        yield
    finally:
        _SOURCES.reset(token)


def _format_validation_error(exc: ValidationError, source: str, environ: Mapping[str, str] | None = None) -> str:
    """One line per error naming the field; an input is shown only where it cannot be a secret."""
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) or "(top level)"
        given = err.get("input")
        if err["type"] == "extra_forbidden" and loc and looks_secret(loc[-1]):
            names = ", ".join(f"${name}" for name in SECRET_ENV[:2])
            lines.append(f"  {field}: looks like a secret; secrets come only from the environment "
                         f"({names}), never from settings")
            continue
        hidden = isinstance(given, dict) or any(looks_secret(p) for p in loc) or is_secret_value(given, environ)
        lines.append(f"  {field}: {err['msg']}" + ("" if hidden else f" (got {given!r})"))
    return scrub("\n".join(lines), environ)


def settings_path(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(path or environ.get(CONFIG_ENV) or DEFAULT_SETTINGS_FILE)


def _check_file(file: Path, environ: Mapping[str, str]) -> None:
    """A settings file must read as YAML holding a mapping (pydantic-settings would fail less clearly)."""
    error = None
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        error = SettingsError(scrub(f"cannot read settings file {file}: {exc}", environ))
    if error is not None:
        raise error  # outside the handler: no __context__ quoting the file
    if loaded is not None and not isinstance(loaded, dict):
        raise SettingsError(f"settings file {file} must hold a mapping, not {type(loaded).__name__}")


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from YAML (if present) + environment; relative paths resolve against the file's folder."""
    environ = dict(os.environ) if environ is None else environ
    file = settings_path(path, environ)
    if file.exists():
        _check_file(file, environ)
    elif path is not None:
        raise SettingsError(f"settings file {file} does not exist")
    source = str(file) if file.exists() else f"{file} (absent) and the environment"
    try:
        with _sources(file if file.exists() else None, environ):
            settings = Settings()
    except ValidationError as exc:
        error = SettingsError(_format_validation_error(exc, source, environ))
    else:
        return settings.resolve_paths(file.resolve().parent)
    raise error  # outside the handler: no __context__ holding the unscrubbed input
