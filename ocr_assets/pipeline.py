"""Record-level execution shared by every engine: build requests, claim, infer, ingest.

`Pipeline.ingest` is the one place where engine outcomes become outputs on disk and store
transitions: validated output written atomically first, then one transaction for the whole batch.
A crash between the two leaves records RUNNING in their batch, and re-ingesting rewrites the same
bytes, so nothing is lost or half-applied.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from ocr_assets.core import (
    EngineCannotAnswer,
    PageFailure,
    PageOutcome,
    PageRequest,
    PageSuccess,
    PricingMode,
    PromptIdentity,
    SyncEngine,
)
from ocr_assets.outputs import OutputFile, write_outputs
from ocr_assets.page_requests import (
    ContextProvider,
    UpstreamOutputContext,
    build_page_requests,
    placeholder_request,
    waits_for_upstream,
)
from ocr_assets.pricing import cost, realtime_cost
from ocr_assets.prompts import PromptRegistry
from ocr_assets.schema import ErrorClass
from ocr_assets.settings import Settings
from ocr_assets.store import (
    ApplySummary,
    BatchState,
    ClaimItem,
    RecordOutcome,
    RecordRow,
    RecordStore,
)
from ocr_assets.tracking import InferenceEvent, NullTracker, Tracker

log = logging.getLogger(__name__)

T = TypeVar("T")
SYNC_ENGINE_PREFIXES = ("local", "gemini-realtime", "gemini-flex")
# A streaming engine's outcomes are ingested at least this often (pages or seconds, whichever first).
INGEST_EVERY_PAGES = 32
INGEST_EVERY_S = 2.0


class RunSummary(BaseModel):
    waves: int = 0
    attempted: int = 0
    succeeded: int = 0
    retryable: int = 0
    fatal: int = 0
    blocked: int = 0
    batches: list[str] = Field(default_factory=list)


class Progress(BaseModel):
    """Where a run stands after a wave (synchronous engines) or a tick (Gemini batch): for logs and bars.

    The one progress type of `drive`, whatever the engine. `done` counts the pages of this run that reached
    a terminal status, out of the `total` it set out to finish; `failures` counts failed attempts so far
    (retryable or fatal). The batch fields stay 0 / empty for synchronous engines.
    """

    done: int
    total: int
    failures: int = 0
    elapsed_s: float = 0.0
    alerts: list[str] = Field(default_factory=list)  # batch integrity alerts so far (Gemini batch)
    cost_usd: float = 0.0  # spent so far on the selected books (Gemini batch)
    tick: int = 0  # the batch loop's tick: one poll + ingest + submit
    active_batches: int = 0
    submitted_batches: int = 0
    ingested_batches: int = 0
    stuck: list[str] = Field(default_factory=list)  # batch ids pending or running past gemini.stuck_batch_hours

    @property
    def rate(self) -> float:
        """Pages done per second so far."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (None before the first page is done)."""
        left = max(0, self.total - self.done)
        return 0.0 if left == 0 else (left / self.rate if self.rate > 0 else None)

    @property
    def eta_text(self) -> str:
        """`45s`, `16m40s`, `2h05m`, or `unknown` before the first page is done."""
        return "unknown" if self.eta_s is None else _duration(self.eta_s)

    def line(self) -> str:
        """`12/48 pages done (25%), 0.80 pages/s, ETA 45s, 1 failure so far`."""
        percent = 100 * self.done // self.total if self.total else 100
        eta = self.eta_text
        failures = f"{self.failures} failure{'' if self.failures == 1 else 's'} so far"
        return f"{self.done}/{self.total} pages done ({percent}%), {self.rate:.2f} pages/s, ETA {eta}, {failures}"


ProgressCallback = Callable[[Progress], None]
# Runs driven inside another program (a Dagster run in `ocr-assets demo`'s process) publish their progress
# here too, each record carrying its `Progress` as `record.progress`: that program's progress bar listens.
progress_log = logging.getLogger("ocr_assets.progress")
progress_log.propagate = False  # only its listeners want these lines; the run log gets them from the asset


def publish_progress(progress: Progress) -> None:
    progress_log.info("%s", progress.line(), extra={"progress": progress})


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def open_store(settings: Settings) -> RecordStore:
    return RecordStore(settings.paths.database, max_attempts=settings.execution.max_attempts)


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_dead(owner: str | None) -> bool:
    """Whether the process an `owner_id()` names is surely gone (no owner counts as gone; another
    host's process cannot be checked from here, so it counts as alive)."""
    if not owner:
        return True
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def one_store_session(fn: Callable[..., T]) -> Callable[..., T]:
    """Run `fn(holder, ...)` (a holder of `.store`: a Pipeline) as one unit of work: every store call
    inside shares one hold of the store's lock and connection, closed when it returns."""
    @functools.wraps(fn)
    def in_session(holder: Any, *args: Any, **kwargs: Any) -> T:
        with holder.store.session():
            return fn(holder, *args, **kwargs)

    return in_session


class Pipeline:
    """Domain entry point used by the CLI, the Dagster assets and the benchmarks."""

    def __init__(
        self,
        settings: Settings,
        store: RecordStore | None = None,
        *,
        tracker: Tracker | None = None,
        registry: PromptRegistry | None = None,
    ):
        self.settings = settings
        self.store = store or open_store(settings)
        self.tracker = tracker or NullTracker()
        self.registry = registry or PromptRegistry(settings.prompt.registry_dir)

    # -- requests --------------------------------------------------------------------------

    def build_requests(
        self, records: Sequence[RecordRow], *, prompt_version: str | None = None,
        provider: ContextProvider | None = None,
    ) -> tuple[list[PageRequest], list[tuple[RecordRow, str]]]:
        """Each record's request (`page_requests.build_page_requests`); context from `provider`, by
        default the upstream page's output. Returns (requests, unbuildable)."""
        return build_page_requests(
            records, registry=self.registry, prompt_name=self.settings.prompt.name,
            prompt_version=prompt_version or self.settings.prompt.version,
            provider=provider or UpstreamOutputContext(self.store),
        )

    @staticmethod
    def claim_items(requests: Sequence[PageRequest]) -> list[ClaimItem]:
        return [
            ClaimItem(
                key=r.key, batch_index=i, prompt_name=r.prompt_identity.name,
                prompt_version=r.prompt_identity.version, prompt_vars_hash=r.prompt_identity.vars_hash,
            )
            for i, r in enumerate(requests)
        ]

    # -- ingest ----------------------------------------------------------------------------

    @one_store_session
    def ingest(
        self,
        batch_id: str,
        requests: Sequence[PageRequest],
        outcomes: Sequence[PageOutcome],
        *,
        engine: str,
        pricing_mode: PricingMode,
        model: str | None = None,
    ) -> ApplySummary:
        """Apply the outcomes in one transaction, writing the outputs of the records still RUNNING in
        `batch_id` before their state changes (`RecordStore.apply_outcomes`).

        Requests without an outcome come back as retryable `missing_result` failures.
        """
        model = model or self.settings.model.name
        by_key = {r.key: r for r in requests}
        answered: dict[str, PageOutcome] = {}
        for outcome in outcomes:
            answered.setdefault(outcome.key, outcome)
        for key in by_key:
            if key not in answered:
                answered[key] = PageFailure(
                    key=key, error_class=ErrorClass.RETRYABLE, error_type="missing_result",
                    message="the engine returned no result for this record",
                )
        generation = self.settings.model.generation.model_dump()
        output_root = self.settings.paths.output_root
        files = {key: OutputFile.of(output_root, key, o.output)
                 for key, o in answered.items() if isinstance(o, PageSuccess)}
        records: list[RecordOutcome] = []
        for key, outcome in answered.items():
            request = by_key.get(key)
            billed = cost(outcome.usage, self.settings.model, pricing_mode)
            list_price = 0.0 if pricing_mode == "local" else realtime_cost(outcome.usage, self.settings.model)
            common = dict(
                key=key, model=outcome.model or model, engine=engine, pricing_mode=pricing_mode,
                prompt_tokens=outcome.usage.prompt_tokens, output_tokens=outcome.usage.output_tokens,
                cached_tokens=outcome.usage.cached_tokens, cost_usd=billed, realtime_cost_usd=list_price,
                latency_s=outcome.latency_s, raw_response=outcome.raw_response, worker=outcome.worker,
                rendered_prompt=request.prompt if request else None,
                prompt_template_hash=(request.prompt_identity.template_hash or None) if request else None,
                previous_context=request.previous_context if request else None,
                # The context source is a prompt variable: logged so `prompt show` rebuilds the same context.
                generation_config={**generation, "context_source": request.context_source} if request else generation,
            )
            if isinstance(outcome, PageSuccess):
                output = files[key]  # logged by reference: the file is the output's one copy
                records.append(
                    RecordOutcome(success=True, output_path=str(output.path), output_sha256=output.sha256, **common)
                )
            else:
                records.append(
                    RecordOutcome(success=False, error_class=str(outcome.error_class), error_type=outcome.error_type,
                                  message=outcome.message, traceback=outcome.traceback, **common)
                )
        summary = self.store.apply_outcomes(
            batch_id, records, before_write=lambda keys: write_outputs(files[k] for k in keys if k in files),
        )
        if self.tracker.enabled:  # the events re-parse every output: only build them for a live tracker
            applied = set(summary.applied)
            events = [self._event(rec, batch_id, by_key.get(rec.key), files.get(rec.key))
                      for rec in records if rec.key in applied]
            try:
                self.tracker.log_inferences(events)
            except Exception:  # tracking must never fail a run
                log.warning("inference tracking failed; the DuckDB inference log still has every record",
                            exc_info=True)
        return summary

    @staticmethod
    def _event(rec: RecordOutcome, batch_id: str, request: PageRequest | None,
               output: OutputFile | None) -> InferenceEvent:
        import json

        book, _, page = rec.key.rpartition(":")
        return InferenceEvent(
            key=rec.key, book=book, page=int(page), engine=rec.engine, model=rec.model, batch_id=batch_id,
            attempt=request.attempt if request else 1, success=rec.success,
            prompt_name=request.prompt_identity.name if request else None,
            prompt_version=request.prompt_identity.version if request else None,
            prompt_vars_hash=request.prompt_identity.vars_hash if request else None,
            prompt_template_hash=rec.prompt_template_hash,
            rendered_prompt=rec.rendered_prompt, previous_context=rec.previous_context,
            generation_config=rec.generation_config or {},
            output=json.loads(output.data) if output else None,
            error_class=rec.error_class, error_type=rec.error_type, error_message=rec.message,
            traceback=rec.traceback,
            raw_response=rec.raw_response, prompt_tokens=rec.prompt_tokens, output_tokens=rec.output_tokens,
            worker=rec.worker,
            cached_tokens=rec.cached_tokens, cost_usd=rec.cost_usd, latency_s=rec.latency_s,
        )

    # -- synchronous engines ---------------------------------------------------------------

    def recover_orphans(self) -> list[str]:
        """Release records held by synchronous runs whose process died (counts the attempt)."""
        released: list[str] = []
        for batch in self.store.active_batches():
            if not batch.engine.startswith(SYNC_ENGINE_PREFIXES) or not batch.owner:
                continue
            if owner_dead(batch.owner):
                released += self.store.release_batch(
                    batch.batch_id, error=f"process {batch.owner} died during inference",
                    error_type="orchestrator_died", count_failure=True, state=BatchState.FAILED,
                )
        return released

    def run_wave(
        self, engine: SyncEngine, records: Sequence[RecordRow], *, prompt_version: str | None = None,
        provider: ContextProvider | None = None,
    ) -> tuple[str, ApplySummary] | None:
        """Claim `records`, infer them with a synchronous engine, ingest; None when nothing was claimed.
        `provider`: where the context comes from (default: the upstream page's output)."""
        requests, problems = self.build_requests(records, prompt_version=prompt_version, provider=provider)
        batch_id = f"{engine.name}-{uuid.uuid4().hex[:12]}"
        claimable = requests + [
            placeholder_request(rec, PromptIdentity(name=self.settings.prompt.name,
                                                    version=prompt_version or self.settings.prompt.version,
                                                    vars_hash=""), attempt=rec.attempts + 1)
            for rec, _ in problems
        ]
        claimed = set(
            self.store.claim(batch_id, self.claim_items(claimable), engine=engine.name,
                             model=self._model_name(engine), owner=owner_id(),
                             require_upstream=waits_for_upstream(provider))
        )
        if not claimed:
            return None
        todo = [r for r in requests if r.key in claimed]
        unbuildable: list[PageOutcome] = [
            PageFailure(key=rec.key, error_class=ErrorClass.RETRYABLE, error_type="upstream_output_unreadable",
                        message=why)
            for rec, why in problems if rec.key in claimed
        ]
        claimed_requests = [r for r in claimable if r.key in claimed]
        stream = getattr(engine, "infer_stream", None)
        try:
            if stream is not None and todo:  # ingested as it completes, each part in its own store session
                summary = self._ingest_as_completed(engine, batch_id, claimed_requests, stream(todo), unbuildable)
                self.store.set_batch_state(batch_id, BatchState.INGESTED)
                return batch_id, summary
            outcomes: list[PageOutcome] = list(engine.infer(todo)) if todo else []
        except EngineCannotAnswer as exc:
            self.store.release_batch(batch_id, error=str(exc), error_type="engine_cannot_answer",
                                     count_failure=False, refund_attempt=True, state=BatchState.CANCELLED)
            raise
        with self.store.session():  # the ingest and the batch's end in one hold of the store
            summary = self.ingest(batch_id, claimed_requests, outcomes + unbuildable, engine=engine.name,
                                  pricing_mode=engine.pricing_mode, model=self._model_name(engine))
            self.store.set_batch_state(batch_id, BatchState.INGESTED)
        return batch_id, summary

    def _ingest_as_completed(
        self,
        engine: SyncEngine,
        batch_id: str,
        requests: Sequence[PageRequest],
        chunks: Iterable[Sequence[PageOutcome]],
        extra: Sequence[PageOutcome],
    ) -> ApplySummary:
        """Ingest a streaming engine's outcomes as they arrive (a cluster's results land while it works).

        Outcomes are buffered to `INGEST_EVERY_PAGES` pages or `INGEST_EVERY_S` seconds so the store sees
        few, larger transactions; the last ingest covers every request still unanswered.
        """
        by_key = {r.key: r for r in requests}
        total = ApplySummary()
        buffer: list[PageOutcome] = list(extra)
        flushed_at = time.monotonic()

        def flush(final: bool) -> None:
            nonlocal buffer, flushed_at
            if final and not by_key and not buffer:
                return
            keys = list(by_key) if final else [o.key for o in buffer if o.key in by_key]
            part = self.ingest(batch_id, [by_key.pop(k) for k in dict.fromkeys(keys) if k in by_key], buffer,
                               engine=engine.name, pricing_mode=engine.pricing_mode, model=self._model_name(engine))
            for field in ("applied", "succeeded", "retryable", "fatal", "ignored"):
                getattr(total, field).extend(getattr(part, field))
            total.blocked += part.blocked
            buffer, flushed_at = [], time.monotonic()

        for chunk in chunks:
            buffer.extend(chunk)
            if len(buffer) >= INGEST_EVERY_PAGES or time.monotonic() - flushed_at >= INGEST_EVERY_S:
                flush(final=False)
        flush(final=True)
        return total

    def _model_name(self, engine: SyncEngine) -> str:
        return getattr(engine, "model_name", None) or (
            self.settings.model.name if engine.pricing_mode != "local" else engine.name
        )

    def run_sync(
        self,
        engine: SyncEngine,
        *,
        books: Sequence[str] | None = None,
        wave_size: int | None = None,
        limit: int | None = None,
        prompt_version: str | None = None,
        on_progress: ProgressCallback | None = None,
        provider: ContextProvider | None = None,
    ) -> RunSummary:
        """Drive the selected books (or all) to terminal: waves of runnable records across books.

        `on_progress` gets a `Progress` after every wave. `provider`: where each page's context comes
        from (default: the upstream page's output, so a page waits for it; another source runs every
        page of a book at once).
        """
        wave_size = wave_size or self.settings.execution.batch_size_limit
        summary = RunSummary()
        self.recover_orphans()
        total = self.store.unfinished_count(books) if on_progress else 0
        total = total if limit is None else min(total, limit)
        started = time.monotonic()
        while limit is None or summary.attempted < limit:
            size = wave_size if limit is None else min(wave_size, limit - summary.attempted)
            records = self.store.runnable(size, books=books, require_upstream=waits_for_upstream(provider))
            if not records:
                break
            result = self.run_wave(engine, records, prompt_version=prompt_version, provider=provider)
            if result is None:
                continue
            batch_id, applied = result
            summary.waves += 1
            summary.batches.append(batch_id)
            summary.attempted += len(applied.applied)
            summary.succeeded += len(applied.succeeded)
            summary.retryable += len(applied.retryable)
            summary.fatal += len(applied.fatal)
            summary.blocked += applied.blocked
            if on_progress:
                done = min(total, summary.succeeded + summary.fatal + summary.blocked)
                on_progress(Progress(done=done, total=total, failures=summary.retryable + summary.fatal,
                                     elapsed_s=time.monotonic() - started))
        return summary
