"""Batch-size guardrails and OOM back-off."""

from __future__ import annotations

import logging

import pytest
import torch

from ocr_assets.engines.local import batching
from ocr_assets.engines.local.batching import (
    MemoryHealth,
    SafeRange,
    auto_batch_size,
    choose_batch_size,
    clamp_batch_size,
    is_oom_error,
    run_with_oom_backoff,
)

MIB = 2**20
GIB = 2**30
SAFE = SafeRange(2, 16)


@pytest.mark.parametrize(
    ("free_mib", "per_item_mib", "expected"),
    [
        (1000, 100, 7),  # 70% of 1000 MiB / 100 MiB
        (100_000, 100, 16),  # plenty of memory: capped at the safe maximum
        (50, 100, 2),  # too little for one item: the safe minimum, OOM back-off handles the rest
        (0, 1, 2),
    ],
)
def test_auto_batch_size_fits_free_memory_within_the_safe_range(free_mib, per_item_mib, expected) -> None:
    assert auto_batch_size(free_mib * MIB, per_item_mib * MIB, SAFE) == expected


def test_auto_batch_size_needs_a_positive_item_size() -> None:
    with pytest.raises(ValueError):
        auto_batch_size(1000, 0, SAFE)


@pytest.mark.parametrize(("requested", "expected", "warns"), [(8, 8, False), (64, 16, True), (1, 2, True)])
def test_a_requested_size_outside_the_safe_range_is_clamped_with_a_warning(
    requested, expected, warns, caplog
) -> None:
    with caplog.at_level(logging.WARNING, logger=batching.__name__):
        assert clamp_batch_size(requested, SAFE) == expected
    assert bool(caplog.records) is warns
    if warns:
        assert "outside this engine's safe range [2, 16]" in caplog.text


@pytest.mark.parametrize("spec", [0, -3, "many", True])
def test_choose_batch_size_rejects_what_is_neither_auto_nor_a_positive_int(spec) -> None:
    with pytest.raises(ValueError):
        choose_batch_size(spec, free_bytes=GIB, per_item_bytes=MIB, safe=SAFE)


def test_choose_batch_size_resolves_auto_and_ints() -> None:
    assert choose_batch_size("auto", free_bytes=GIB, per_item_bytes=100 * MIB, safe=SAFE) == 7
    assert choose_batch_size(4, free_bytes=0, per_item_bytes=1, safe=SAFE) == 4


def test_safe_range_must_be_ordered_and_positive() -> None:
    with pytest.raises(ValueError):
        SafeRange(0, 4)
    with pytest.raises(ValueError):
        SafeRange(5, 4)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("CUDA error: out of memory"), True),
        (RuntimeError("shape mismatch"), False),
        (MemoryError(), False),
        (ValueError("out of memory"), False),
    ],
)
def test_is_oom_error_recognises_cuda_out_of_memory(exc, expected) -> None:
    assert is_oom_error(exc) is expected


class OomAbove:
    """A batch function that runs out of memory on batches larger than `limit` (or on `poison` items)."""

    def __init__(self, limit: int, poison: frozenset[int] = frozenset()):
        self.limit = limit
        self.poison = poison
        self.calls: list[list[int]] = []
        self.processed: list[int] = []

    def __call__(self, batch: list[int]) -> list[str]:
        self.calls.append(list(batch))
        if len(batch) > self.limit or self.poison & set(batch):
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory on a batch of {len(batch)}")
        self.processed += batch
        return [f"ok:{item}" for item in batch]


def test_oom_halves_the_batch_and_every_item_is_processed_exactly_once() -> None:
    fn = OomAbove(limit=3)
    items = list(range(20))
    run = run_with_oom_backoff(items, 16, fn, on_failure=lambda item, exc: f"failed:{item}")
    assert run.results == [f"ok:{item}" for item in items]
    assert sorted(fn.processed) == items  # exactly once each
    assert run.batch_size == 2  # 16 → 8 → 4 → 2
    assert run.oom_events == 3
    assert [len(call) for call in fn.calls[:4]] == [16, 8, 4, 2]


def test_an_item_that_runs_out_of_memory_alone_is_reported_failed_and_the_rest_go_on() -> None:
    fn = OomAbove(limit=8, poison=frozenset({5}))
    run = run_with_oom_backoff(list(range(8)), 4, fn, on_failure=lambda item, exc: f"failed:{item}")
    assert run.results == ["ok:0", "ok:1", "ok:2", "ok:3", "ok:4", "failed:5", "ok:6", "ok:7"]
    assert sorted(fn.processed) == [0, 1, 2, 3, 4, 6, 7]
    assert run.batch_size == 1


def test_errors_other_than_oom_propagate() -> None:
    def broken(batch: list[int]) -> list[int]:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_with_oom_backoff([1, 2], 2, broken, on_failure=lambda item, exc: item)


def test_a_batch_function_that_loses_results_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        run_with_oom_backoff([1, 2], 2, lambda batch: batch[:1], on_failure=lambda item, exc: item)


def test_memory_health_releases_memory_every_n_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[str] = []
    monkeypatch.setattr(batching, "release_memory", released.append)
    health = MemoryHealth("cuda:0", every=3)
    run_with_oom_backoff(list(range(10)), 1, lambda batch: batch, on_failure=lambda item, exc: item,
                         device="cuda:0", health=health)
    assert health.batches == 10
    assert released == ["cuda:0"] * 3


def test_release_memory_on_cpu_only_collects_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    batching.release_memory("cpu")
    assert emptied == []
    batching.release_memory("cuda:0")
    assert emptied == [True]
