"""The types every layer shares: a page's inference request, its outcome, the engine errors, the engine
a run uses (`EngineSpec`, resolved once from settings + run config) and the two engine protocols.

Below everything but `schema` and `settings`: the pipeline, prompts, pricing, reports and every engine import
these from here, so no layer has to reach up into `engines/` for them. An engine answers each `PageRequest`
with a `PageSuccess` or a `PageFailure` and never raises for a single page's failure.

"engine" names three things, each with its own type:
- `EngineKind` (settings): which engine runs the records (`engine:`, `ocr-assets run --engine`, the jobs' config);
- `LocalEngineName` (settings): the local OCR model of the `local` kind (`local.engine:`, `local run --engine`);
- `EngineSpec.label`: what a batch row, the cost ledger and the inference log record as the engine
  (`local-rapidocr`, `gemini-realtime`, `gemini-batch`; `gemini-batch-prep` for records settled before submit).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ocr_assets.schema import OcrPageResult, PageError
from ocr_assets.settings import EngineKind, LocalSettings, Settings


class PromptIdentity(BaseModel):
    name: str
    version: str
    vars_hash: str
    template_hash: str = ""


class PageRequest(BaseModel):
    key: str
    book: str
    page: int
    image_path: Path
    prompt: str
    prompt_identity: PromptIdentity
    upstream_key: str | None = None
    # Context carried from the upstream page (text tail + last courses) as the prompt saw it.
    previous_context: dict | None = None
    # Where the context came from (`gemini.context_source`); recorded with the generation settings.
    context_source: str = "upstream_output"
    # `upstream_image`: the upstream page's image, sent (downscaled) after the page's own.
    context_image_path: Path | None = None
    attempt: int = 1


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


class PageSuccess(BaseModel):
    """A validated page, kept as its canonical JSON text (`output`; `PageSuccess(result=page)` renders it).

    A batch holds thousands of successes at once, and as object trees (~130 objects a page) they made
    the garbage collector walk them again and again: 3-4x the cost of parsing the answers. `result`
    rebuilds the page for the few callers that look inside it.
    """

    key: str
    output: bytes  # `OcrPageResult.to_json_bytes()` of the validated page: what its output file holds
    raw_response: str | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    model: str = ""
    latency_s: float | None = None
    # Where it ran when that is not this process (a Ray worker: "host/node id").
    worker: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _render(cls, data: Any) -> Any:
        if isinstance(data, dict) and "result" in data:
            data = dict(data)
            result = data.pop("result")
            page = result if isinstance(result, OcrPageResult) else OcrPageResult.model_validate(result)
            data["output"] = page.to_json_bytes()
        return data

    @property
    def result(self) -> OcrPageResult:
        return OcrPageResult.model_validate_json(self.output)


class PageFailure(PageError):
    """A `PageError` plus what the engine knows about the call that failed."""

    usage: TokenUsage = Field(default_factory=TokenUsage)
    model: str = ""
    latency_s: float | None = None
    # Where it ran when that is not this process (a Ray worker: "host/node id").
    worker: str | None = None


PageOutcome = PageSuccess | PageFailure

PricingMode = Literal["realtime", "batch", "local"]


class EngineCannotAnswer(RuntimeError):
    """The engine cannot answer any page right now: not a page's failure, so the run stops and the
    wave's records go back as they were (no attempt counted)."""


class EngineMisconfigured(EngineCannotAnswer):
    """As configured, no page can ever be answered (a 404: wrong base URL or model name)."""


class EngineUnreachable(EngineCannotAnswer):
    """The API cannot be reached at all (connection refused, DNS), after the transport retries."""


class EngineUnavailable(RuntimeError):
    """The configured engine cannot be built here (missing dependency, credentials or model)."""


# -- the engine a run uses ---------------------------------------------------------------------


class EngineSpec(BaseModel):
    """The engine one run uses, resolved once (`resolve_engine`) and handed to every caller that drives it."""

    model_config = ConfigDict(frozen=True)

    kind: EngineKind
    # The local engine's settings with this run's overrides; None for a Gemini kind (it never loads a local model).
    local: LocalSettings | None = None

    @property
    def is_batch(self) -> bool:
        """Records go out as remote batch jobs (`BatchEngine`), not answered in this process (`SyncEngine`)."""
        return self.kind == "gemini-batch"

    @property
    def label(self) -> str:
        """What batch rows, the cost ledger and the inference log record as this run's engine."""
        return f"local-{self.local.engine}" if self.local is not None else self.kind

    def describe(self) -> str:
        """`local (rapidocr on cpu)`, `gemini-batch`: for run logs and the CLI."""
        if self.local is None:
            return self.kind
        where = f"ray {self.local.ray_address or 'private'}" if self.local.cluster == "ray" else self.local.device
        return f"local ({self.local.engine} on {where})"


def resolve_engine(settings: Settings, kind: str | None = None, *, source: str = "command-line options",
                   **local: Any) -> EngineSpec:
    """The engine a run uses: `kind` (run config, CLI option; None or "" = `settings.engine`) and, for the local
    kind, `settings.local` with the `local` overrides that are set (device, batch_size, engine, model_dir).

    The one place the engine is decided: the CLI, the Dagster assets and `drive` all receive its result.
    Overrides are validated like the settings file (a `SettingsError` names the bad one and `source`).
    """
    chosen = settings.override(engine=kind, source=source) if kind else settings
    if chosen.engine != "local":
        return EngineSpec(kind=chosen.engine)
    return EngineSpec(kind="local", local=chosen.override("local", source=source, **local).local)


# -- the engine protocols ---------------------------------------------------------------------


@runtime_checkable
class SyncEngine(Protocol):
    """Answers requests directly (local model, Gemini real-time, flex tier)."""

    name: str
    pricing_mode: PricingMode

    def infer(self, requests: list[PageRequest]) -> list[PageOutcome]: ...


@runtime_checkable
class BatchEngine(Protocol):
    """Answers requests as remote jobs (Gemini Batch API): the batch loop submits encoded lines as a job, polls
    it, fetches its results joined by key, or cancels it. The payload and status types are the provider's."""

    def submit(self, lines: Sequence[Any] | bytes, display_name: str) -> tuple[str, str]:
        """Create a job; returns (remote job name, input file name)."""
        ...

    def poll(self, name: str) -> Any:
        """One cheap status read of a job."""
        ...

    def fetch(self, batch_id: str, remote_name: str | None, members: dict[str, int], **options: Any
              ) -> tuple[list[PageOutcome], Any]:
        """A finished job's outcomes (joined on key against `members`) and its integrity report."""
        ...

    def cancel(self, name: str) -> None: ...
