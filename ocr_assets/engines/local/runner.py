"""`LocalInference`: the local engine the Dagster resource, the CLI and the emulator share.

Pages are split evenly across devices (one worker thread per device), decoded ahead of the
model on background threads, run in batches sized from free memory with OOM back-off, and
answered one outcome per request, in request order. A page's failure is an outcome, never an
exception; only configuration errors (bad device, missing model) raise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ocr_assets.core import PageFailure, PageOutcome, PageRequest, PricingMode
from ocr_assets.engines.local.backend import PageBackend, page_failure
from ocr_assets.engines.local.batching import (
    BatchSizeSpec,
    MemoryHealth,
    choose_batch_size,
    is_oom_error,
    run_with_oom_backoff,
)
from ocr_assets.engines.local.devices import free_memory_bytes, resolve_devices
from ocr_assets.engines.local.estimate import DryRunEstimate, PeakRss, extrapolate
from ocr_assets.engines.local.prefetch import PreparedPage, prefetch_batches, prepare_page
from ocr_assets.schema import ErrorClass
from ocr_assets.settings import LocalEngineName

log = logging.getLogger(__name__)


def split_evenly(count: int, parts: int) -> list[range]:
    """Contiguous index ranges covering `range(count)` whose sizes differ by at most one."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    base, extra = divmod(count, parts)
    ranges, start = [], 0
    for part in range(parts):
        size = base + (1 if part < extra else 0)
        ranges.append(range(start, start + size))
        start += size
    return ranges


class LocalInference(BaseModel):
    """Runs page requests on local devices with RapidOCR (CPU, default), Tesseract (CPU) or a transformers VLM."""

    model_config = ConfigDict(extra="forbid")

    device: str | list[str] = "auto"
    batch_size: BatchSizeSpec = "auto"
    engine: LocalEngineName = "rapidocr"
    model_dir: Path | None = None
    max_side: int = Field(2000, ge=256, le=10_000)
    prefetch_workers: int = Field(2, ge=1, le=32)
    max_new_tokens: int = Field(4096, ge=1)
    # Release cached memory every N batches per device (0 = never).
    health_every: int = Field(8, ge=0)

    pricing_mode: ClassVar[PricingMode] = "local"

    _backends: dict[str, PageBackend] = PrivateAttr(default_factory=dict)
    _batch_sizes: dict[str, int] = PrivateAttr(default_factory=dict)
    _devices: list[str] | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _on_outcome: Callable[[PageOutcome], None] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _model_dir_for_transformers(self) -> LocalInference:
        if self.engine == "transformers" and self.model_dir is None:
            raise ValueError("engine 'transformers' needs model_dir (a local Qwen2-VL directory)")
        return self

    @property
    def name(self) -> str:
        return f"local-{self.engine}"

    @property
    def model_name(self) -> str:
        if self.engine == "transformers" and self.model_dir is not None:
            return self.model_dir.name
        if self.engine == "tesseract":
            from ocr_assets.engines.local.tesseract_engine import MODEL_NAME as TESSERACT

            return TESSERACT
        from ocr_assets.engines.local.rapidocr_engine import MODEL_NAME

        return MODEL_NAME

    # -- loading ---------------------------------------------------------------------------

    def devices(self) -> list[str]:
        """The concrete devices this instance runs on (resolved once; raises `DeviceError`)."""
        with self._lock:
            if self._devices is None:
                self._devices = self._resolve_devices()
            return list(self._devices)

    def _resolve_devices(self) -> list[str]:
        if self.engine == "transformers":
            return resolve_devices(self.device)
        # RapidOCR (OpenVINO or ONNX Runtime on the CPU) and Tesseract run on the CPU: a CUDA device would sit idle.
        spec = self.device if isinstance(self.device, str) else ",".join(self.device)
        if spec.strip().lower() not in ("auto", "cpu"):
            log.warning("engine %r runs on the CPU; ignoring device %r", self.engine, spec)
        return ["cpu"]

    def _backend(self, device: str) -> PageBackend:
        with self._lock:
            backend = self._backends.get(device)
            if backend is None:
                started = time.perf_counter()
                backend = self._load(device)
                self._backends[device] = backend
                log.info("loaded %s on %s in %.1f s", backend.model, device, time.perf_counter() - started)
            return backend

    def _load(self, device: str) -> PageBackend:
        if self.engine == "transformers":
            from ocr_assets.engines.local.vlm_engine import TransformersVlmBackend

            assert self.model_dir is not None
            return TransformersVlmBackend(self.model_dir, device, max_new_tokens=self.max_new_tokens)
        if self.engine == "tesseract":
            from ocr_assets.engines.local.tesseract_engine import TesseractBackend

            return TesseractBackend()
        from ocr_assets.engines.local.rapidocr_engine import RapidOcrBackend

        return RapidOcrBackend()

    def load(self) -> list[str]:
        """Resolve devices and load the model on each now (a resource calls this to fail fast)."""
        devices = self.devices()
        for device in devices:
            self._backend(device)
        return devices

    def close(self) -> None:
        """Release the loaded models; a later call loads them again."""
        with self._lock:
            backends, self._backends = self._backends, {}
        for backend in backends.values():
            close = getattr(backend, "close", None)
            if callable(close):
                close()

    def set_progress(self, callback: Callable[[PageOutcome], None] | None) -> None:
        """Call `callback` with each page's outcome as soon as it is known (from worker threads)."""
        self._on_outcome = callback

    def _batch_size_for(self, device: str, backend: PageBackend) -> int:
        with self._lock:
            if device not in self._batch_sizes:
                self._batch_sizes[device] = choose_batch_size(
                    self.batch_size, free_bytes=free_memory_bytes(device),
                    per_item_bytes=backend.per_item_bytes, safe=backend.safe_range,
                )
            return self._batch_sizes[device]

    # -- inference -------------------------------------------------------------------------

    def infer(self, requests: list[PageRequest]) -> list[PageOutcome]:
        """One outcome per request, in request order; pages split evenly across the devices."""
        if not requests:
            return []
        devices = self.devices()
        backends = {device: self._backend(device) for device in devices}
        results: dict[int, PageOutcome] = {}
        results_lock = threading.Lock()

        def collect(index: int, outcome: PageOutcome) -> None:
            with results_lock:
                if index in results:
                    raise RuntimeError(f"page {requests[index].key} answered twice")
                results[index] = outcome
                if self._on_outcome is not None:
                    self._on_outcome(outcome)

        shares = split_evenly(len(requests), len(devices))
        if len(devices) == 1:
            self._run_share_safely(devices[0], backends[devices[0]], requests, shares[0], collect)
        else:
            workers = [
                threading.Thread(
                    target=self._run_share_safely, name=f"local-{device}",
                    args=(device, backends[device], requests, share, collect),
                )
                for device, share in zip(devices, shares, strict=True)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        missing = [index for index in range(len(requests)) if index not in results]
        for index in missing:
            results[index] = PageFailure(
                key=requests[index].key, error_class=ErrorClass.RETRYABLE, error_type="missing_result",
                message="the local worker for this page stopped before answering it", model=self.model_name,
            )
        return [results[index] for index in range(len(requests))]

    def _run_share_safely(self, *args) -> None:
        try:
            self._run_share(*args)
        except Exception:  # a dead worker's pages come back as missing_result, never lost silently
            log.exception("local worker for %s failed", args[0])

    def _run_share(
        self,
        device: str,
        backend: PageBackend,
        requests: list[PageRequest],
        share: range,
        collect: Callable[[int, PageOutcome], None],
    ) -> None:
        """Prefetch, batch and run one device's share of the requests."""
        size = self._batch_size_for(device, backend)
        health = MemoryHealth(device, self.health_every)
        pages = [requests[index] for index in share]
        position = share.start
        for batch in prefetch_batches(pages, size, max_side=self.max_side, workers=self.prefetch_workers):
            indexed = list(zip(range(position, position + len(batch)), batch, strict=True))
            position += len(batch)
            ready: list[tuple[int, PreparedPage]] = []
            for index, page in indexed:
                if page.failure is not None:
                    collect(index, page.failure.model_copy(update={"model": backend.model}))
                else:
                    ready.append((index, page))
            if not ready:
                continue
            run = run_with_oom_backoff(
                [page for _index, page in ready],
                size,
                lambda chunk: self._guarded_batch(backend, chunk),
                on_failure=lambda page, exc: page_failure(
                    page.request.key, ErrorClass.RETRYABLE, "out_of_memory", exc, model=backend.model
                ),
                device=device,
                health=health,
            )
            if run.batch_size != size:
                size = run.batch_size
                with self._lock:
                    self._batch_sizes[device] = size  # later calls start from the size that fit
            for (index, _page), outcome in zip(ready, run.results, strict=True):
                collect(index, outcome)

    @staticmethod
    def _guarded_batch(backend: PageBackend, pages: list[PreparedPage]) -> list[PageOutcome]:
        """`backend.run_batch`, with a whole-batch fault turned into one failure per page (OOM re-raised)."""
        try:
            outcomes = backend.run_batch(pages)
        except Exception as exc:
            if is_oom_error(exc):
                raise
            return [
                page_failure(page.request.key, ErrorClass.RETRYABLE, "engine_error", exc, model=backend.model)
                for page in pages
            ]
        if len(outcomes) != len(pages):
            raise RuntimeError(f"{backend.model} answered {len(outcomes)} of {len(pages)} pages")
        return outcomes

    # -- dry run ---------------------------------------------------------------------------

    def estimate(self, requests: list[PageRequest], *, pages: int | None = None) -> DryRunEstimate:
        """Run the first request alone, measure time and peak memory, and extrapolate.

        The extrapolation covers `pages` pages (default: all of `requests`), so a caller can sample
        from a selection too large to build requests for.
        """
        pages = len(requests) if pages is None else pages
        devices = self.devices()
        device = devices[0]
        with PeakRss() as rss:
            started = time.perf_counter()
            backend = self._backend(device)
            load_s = time.perf_counter() - started
            size = self._batch_size_for(device, backend)
            cuda = device.startswith("cuda")
            if cuda:
                import torch

                torch.cuda.reset_peak_memory_stats(device)
            sample = requests[0] if requests else None
            outcome: PageOutcome | None = None
            started = time.perf_counter()
            if sample is not None:
                page = prepare_page(sample, self.max_side)
                outcome = page.failure or self._guarded_batch(backend, [page])[0]
            seconds = time.perf_counter() - started
            peak_cuda = None
            if cuda:
                import torch

                peak_cuda = int(torch.cuda.max_memory_allocated(device))
        parallelism = len(devices) * getattr(backend, "parallel_pages", 1)
        return DryRunEstimate(
            engine=self.engine, model=backend.model, devices=devices, batch_size=size, pages=pages,
            sample_key=sample.key if sample else None,
            sample_ok=outcome is not None and not isinstance(outcome, PageFailure),
            sample_error=outcome.message if isinstance(outcome, PageFailure) else None,
            load_s=load_s, seconds_per_page=seconds, parallelism=parallelism,
            estimated_total_s=extrapolate(seconds, pages, parallelism),
            peak_rss_bytes=rss.peak, peak_cuda_bytes=peak_cuda,
        )
