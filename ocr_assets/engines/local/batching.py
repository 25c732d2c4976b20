"""Batch-size guardrails: a size from free memory within the engine's safe range, and OOM back-off."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

BatchSizeSpec = Literal["auto"] | int


@dataclass(frozen=True)
class SafeRange:
    """Batch sizes an engine is known to handle; outside it a run is slow or unstable."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high:
            raise ValueError(f"invalid safe range [{self.low}, {self.high}]")


def clamp_batch_size(requested: int, safe: SafeRange) -> int:
    """`requested` clamped into `safe`, with a warning when it had to move."""
    clamped = min(max(requested, safe.low), safe.high)
    if clamped != requested:
        log.warning(
            "batch size %d is outside this engine's safe range [%d, %d]; using %d",
            requested, safe.low, safe.high, clamped,
        )
    return clamped


def auto_batch_size(
    free_bytes: int, per_item_bytes: int, safe: SafeRange, *, headroom: float = 0.7
) -> int:
    """Items that fit in `headroom` of the free memory, kept within `safe`."""
    if per_item_bytes <= 0:
        raise ValueError("per_item_bytes must be positive")
    fitting = int(free_bytes * headroom) // per_item_bytes
    size = min(max(fitting, safe.low), safe.high)
    log.info("batch size auto: %d (%d MiB free, ~%d MiB per item)", size, free_bytes >> 20, per_item_bytes >> 20)
    return size


def choose_batch_size(
    spec: BatchSizeSpec, *, free_bytes: int, per_item_bytes: int, safe: SafeRange
) -> int:
    """Resolve a `batch_size` setting (`"auto"` or an int) to a size within the safe range."""
    if spec == "auto":
        return auto_batch_size(free_bytes, per_item_bytes, safe)
    if isinstance(spec, bool) or not isinstance(spec, int) or spec < 1:
        raise ValueError(f"batch size must be 'auto' or a positive integer, not {spec!r}")
    return clamp_batch_size(spec, safe)


def is_oom_error(exc: BaseException) -> bool:
    """True for CUDA out-of-memory, whichever way torch (or a kernel) reported it."""
    # Only a loaded torch can have raised its OOM error: never import it just to ask.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release_memory(device: str) -> None:
    """Drop unreachable tensors and hand cached CUDA blocks back so the next batch can use them."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


class MemoryHealth:
    """Counts batches on one device and releases memory every `every` of them (0 = never).

    Long runs fragment the CUDA caching allocator; a periodic release keeps batch size stable.
    """

    def __init__(self, device: str, every: int = 8):
        self.device = device
        self.every = every
        self.batches = 0

    def tick(self) -> None:
        self.batches += 1
        if self.every > 0 and self.batches % self.every == 0:
            release_memory(self.device)


@dataclass(frozen=True)
class BackoffRun(Generic[Result]):
    """Results in input order, the batch size that finally worked, and how many OOMs it took."""

    results: list[Result]
    batch_size: int
    oom_events: int
    batches_run: int


def run_with_oom_backoff(
    items: Sequence[Item],
    batch_size: int,
    fn: Callable[[list[Item]], list[Result]],
    *,
    on_failure: Callable[[Item, BaseException], Result],
    device: str = "cpu",
    health: MemoryHealth | None = None,
) -> BackoffRun[Result]:
    """Run `fn` over `items` in batches; on OOM halve the batch and retry the same items, down to 1.

    An item that still runs out of memory alone becomes `on_failure(item, exc)`; every item gets
    exactly one result. Errors other than OOM propagate: `fn` owns per-item error handling.
    `health` (shared across calls on a device) releases memory every N successful batches.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    results: list[Result] = []
    size, ooms, batches, start = batch_size, 0, 0, 0
    while start < len(items):
        batch = list(items[start : start + size])
        oom: BaseException | None = None
        try:
            out = fn(batch)
        except Exception as exc:
            if not is_oom_error(exc):
                raise
            oom = exc
        if oom is None:
            if len(out) != len(batch):
                raise RuntimeError(f"batch function returned {len(out)} results for {len(batch)} items")
            results.extend(out)
            start += len(batch)
            batches += 1
            if health is not None:
                health.tick()
            continue
        ooms += 1
        if size == 1:
            log.warning("out of memory on a single item on %s; reporting it as failed", device)
            results.append(on_failure(batch[0], oom))
            start += 1
        else:
            size //= 2
            log.warning("out of memory on %s; retrying the same items in batches of %d", device, size)
        # The exception's traceback pins the failed batch's tensors: drop it before freeing memory.
        oom = None
        release_memory(device)
    return BackoffRun(results=results, batch_size=size, oom_events=ooms, batches_run=batches)
