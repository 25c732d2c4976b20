"""Dry-run estimates: time and memory of one page, extrapolated to a whole selection."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil
from pydantic import BaseModel


class DryRunEstimate(BaseModel):
    """What a local run of `pages` pages would take, measured on one sample page."""

    engine: str
    model: str
    devices: list[str]
    batch_size: int
    pages: int
    sample_key: str | None
    sample_ok: bool
    sample_error: str | None = None
    load_s: float
    seconds_per_page: float
    # Pages that run at the same time (devices × pages in flight per device).
    parallelism: int
    estimated_total_s: float
    peak_rss_bytes: int
    peak_cuda_bytes: int | None = None

    def summary(self) -> str:
        gib = 2**30
        cuda = f", CUDA peak {self.peak_cuda_bytes / gib:.2f} GiB" if self.peak_cuda_bytes is not None else ""
        return (
            f"{self.pages} pages on {', '.join(self.devices)} with {self.engine} ({self.model}): "
            f"~{self.seconds_per_page:.2f} s/page, {self.parallelism} in parallel → ~{self.estimated_total_s:.0f} s "
            f"(+{self.load_s:.1f} s model load); RSS peak {self.peak_rss_bytes / gib:.2f} GiB{cuda}"
        )


def extrapolate(seconds_per_page: float, pages: int, parallelism: int) -> float:
    """Wall time for `pages` when `parallelism` pages run at once at the measured speed."""
    return seconds_per_page * pages / max(parallelism, 1)


class PeakRss:
    """Samples this process's resident memory on a background thread; `peak` is the highest seen."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.peak = 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self._process.memory_info().rss)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakRss:
        self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)
