"""Project settings: one YAML file plus `OCR_ASSETS_...` environment overrides, validated by pydantic.

Secrets (`GEMINI_API_KEY`, `BRAINTRUST_API_KEY`) are never read from the file: only from the
environment, at the point of use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_SETTINGS_FILE = "ocr_assets.yaml"
ENV_PREFIX = "OCR_ASSETS_"
# Variables under the prefix that steer the process rather than override a setting.
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"
SDK_HELPER_ENV = f"{ENV_PREFIX}SDK_HELPER"  # 0: the CLI makes Gemini calls in-process (engines.gemini.helper)
SECRET_NAMES = ("GEMINI_API_KEY", "BRAINTRUST_API_KEY", "GOOGLE_API_KEY")


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


class ModelSettings(_Section):
    name: str = "gemini-2.5-flash"
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    # USD per million tokens at real-time prices; batch is billed at `batch_discount` of these.
    input_price_per_mtok: float = Field(0.30, ge=0)
    output_price_per_mtok: float = Field(2.50, ge=0)
    cached_input_price_per_mtok: float = Field(0.03, ge=0)
    batch_discount: float = Field(0.5, gt=0, le=1)


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
    context_source: Literal["upstream_output", "local_ocr"] = "upstream_output"
    # Real-time / flex calls: per-call timeout and transport retries (tenacity) before a record fails.
    request_timeout_s: float = Field(600.0, gt=0)
    transport_retries: int = Field(4, ge=1, le=20)
    retry_initial_wait_s: float = Field(1.0, ge=0)
    retry_max_wait_s: float = Field(60.0, ge=0)
    # A 429 on batches.create holds the batch and retries after this (doubling, capped).
    hold_backoff_s: float = Field(60.0, ge=0)
    hold_backoff_max_s: float = Field(1800.0, ge=0)


class LocalSettings(_Section):
    # rapidocr: pip-only, the default; tesseract: needs `apt-get install tesseract-ocr` (README).
    engine: Literal["rapidocr", "tesseract", "transformers"] = "rapidocr"
    device: str = "cpu"
    batch_size: str = "auto"
    model_dir: Path | None = None


EngineName = Literal["local", "gemini-batch", "gemini-realtime", "gemini-flex"]


class Settings(_Section):
    engine: EngineName = "local"
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


def _set_nested(target: dict[str, Any], dotted: list[str], value: Any) -> None:
    node = target
    for part in dotted[:-1]:
        existing = node.get(part)
        if not isinstance(existing, dict):
            existing = {}
            node[part] = existing
        node = existing
    node[dotted[-1]] = value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`OCR_ASSETS_EXECUTION__MAX_ATTEMPTS=5` → {"execution": {"max_attempts": 5}} (values parsed as YAML)."""
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in (CONFIG_ENV, SDK_HELPER_ENV):
            continue
        dotted = [part.lower() for part in name[len(ENV_PREFIX):].split("__") if part]
        if not dotted:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        _set_nested(overrides, dotted, value)
    return overrides


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        given = err.get("input")
        shown = "" if isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"  {field}: {err['msg']}{shown}")
    return "\n".join(lines)


def settings_path(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Path:
    environ = dict(os.environ) if environ is None else environ
    return Path(path or environ.get(CONFIG_ENV) or DEFAULT_SETTINGS_FILE)


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load settings from YAML (if present) + environment; relative paths resolve against the file's folder."""
    environ = dict(os.environ) if environ is None else environ
    file = settings_path(path, environ)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise SettingsError(f"cannot read settings file {file}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise SettingsError(f"settings file {file} must hold a mapping, not {type(loaded).__name__}")
        data = loaded or {}
    elif path is not None:
        raise SettingsError(f"settings file {file} does not exist")
    for secret in SECRET_NAMES:
        if secret.lower() in {k.lower() for k in _flatten_keys(data)}:
            raise SettingsError(f"{secret} must come from the environment, not from {file}")
    data = _deep_merge(data, _env_overrides(environ))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_format_validation_error(exc, str(file))) from None
    return settings.resolve_paths(file.resolve().parent)


def _flatten_keys(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return []
    keys: list[str] = []
    for key, value in data.items():
        keys.append(str(key))
        keys.extend(_flatten_keys(value))
    return keys
