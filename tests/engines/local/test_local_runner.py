"""`LocalInference`: order, one outcome per request, multi-device split, OOM back-off, dry-run estimate."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from ocr_assets.core import PageFailure, PageSuccess, SyncEngine
from ocr_assets.engines.local import runner as runner_module
from ocr_assets.engines.local.batching import SafeRange
from ocr_assets.engines.local.devices import DeviceError
from ocr_assets.engines.local.runner import LocalInference, split_evenly
from ocr_assets.schema import ErrorClass, OcrPageResult, PageInfo, RawOcr
from tests.engines.local.local_helpers import make_request

GIB = 2**30


class FakeBackend:
    """Answers every page; runs out of memory on batches above `oom_above`; records what it saw."""

    safe_range = SafeRange(1, 64)
    per_item_bytes = GIB

    def __init__(self, device: str, *, oom_above: int | None = None, fail_keys: frozenset[str] = frozenset(),
                 crash: bool = False):
        self.model = f"fake@{device}"
        self.device = device
        self.oom_above = oom_above
        self.fail_keys = fail_keys
        self.crash = crash
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()

    def run_batch(self, pages):
        keys = [page.request.key for page in pages]
        if self.oom_above is not None and len(pages) > self.oom_above:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory ({len(pages)} pages)")
        if self.crash:
            raise RuntimeError("kernel exploded")
        self.batches.append(keys)
        self.threads.add(threading.current_thread().name)
        outcomes = []
        for page in pages:
            if page.request.key in self.fail_keys:
                outcomes.append(PageFailure(key=page.request.key, error_class=ErrorClass.RETRYABLE,
                                            error_type="schema", message="bad", model=self.model))
            else:
                result = OcrPageResult(raw_ocr=RawOcr(), page_info=PageInfo(page_number=page.request.page))
                outcomes.append(PageSuccess(key=page.request.key, result=result, model=self.model, latency_s=0.01))
        return outcomes


@pytest.fixture
def pages(tmp_path: Path):
    def build(count: int, *, broken: set[int] = frozenset()):
        requests = []
        for index in range(count):
            path = tmp_path / f"{index}.png"
            if index in broken:
                path.write_bytes(b"not an image")
            else:
                Image.new("RGB", (20, 30), "white").save(path)
            requests.append(make_request(f"CA:x:1900:{index}", path, page=index))
        return requests

    return build


def with_backends(monkeypatch: pytest.MonkeyPatch, **options) -> dict[str, FakeBackend]:
    made: dict[str, FakeBackend] = {}

    def load(self, device: str) -> FakeBackend:
        made[device] = FakeBackend(device, **options)
        return made[device]

    monkeypatch.setattr(LocalInference, "_load", load)
    return made


@pytest.fixture
def four_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (8 * GIB, 16 * GIB))


@pytest.mark.parametrize(("count", "parts", "sizes"), [(10, 3, [4, 3, 3]), (2, 4, [1, 1, 0, 0]), (0, 2, [0, 0])])
def test_split_evenly_covers_every_index_once(count: int, parts: int, sizes: list[int]) -> None:
    ranges = split_evenly(count, parts)
    assert [len(r) for r in ranges] == sizes
    assert [i for r in ranges for i in r] == list(range(count))


def test_it_is_a_sync_engine_priced_as_local() -> None:
    engine = LocalInference()
    assert isinstance(engine, SyncEngine)
    assert (engine.name, engine.pricing_mode) == ("local-rapidocr", "local")
    assert engine.model_name == "rapidocr-onnxruntime/PP-OCRv4"


def test_settings_strings_are_accepted_as_the_resource_passes_them() -> None:
    engine = LocalInference(engine="rapidocr", device="cpu", batch_size="8", model_dir=None)
    assert engine.batch_size == 8
    with pytest.raises(ValueError, match="model_dir"):
        LocalInference(engine="transformers")
    with pytest.raises(ValueError):
        LocalInference(batch_size="lots")


def test_outcomes_come_back_in_request_order_one_each(monkeypatch, pages) -> None:
    made = with_backends(monkeypatch)
    requests = pages(9, broken={3})
    outcomes = LocalInference(device="cpu", batch_size=4).infer(requests)
    assert [o.key for o in outcomes] == [r.key for r in requests]
    assert isinstance(outcomes[3], PageFailure) and outcomes[3].error_type == "image_unreadable"
    assert outcomes[3].model == "fake@cpu"
    assert all(isinstance(o, PageSuccess) for i, o in enumerate(outcomes) if i != 3)
    assert [len(batch) for batch in made["cpu"].batches] == [3, 4, 1]  # the unreadable page never reaches the model


def test_multi_gpu_splits_work_evenly_and_runs_each_page_exactly_once(monkeypatch, pages, four_gpus) -> None:
    made = with_backends(monkeypatch)
    requests = pages(22)
    engine = LocalInference(engine="transformers", model_dir=Path("/models/none"), device="cuda:0,cuda:1,cuda:3",
                            batch_size=4)
    seen: list[str] = []
    engine.set_progress(lambda outcome: seen.append(outcome.key))
    outcomes = engine.infer(requests)
    assert [o.key for o in outcomes] == [r.key for r in requests]
    per_device = {device: [key for batch in backend.batches for key in batch] for device, backend in made.items()}
    assert sorted(per_device) == ["cuda:0", "cuda:1", "cuda:3"]
    assert [len(keys) for keys in per_device.values()] == [8, 7, 7]
    assert Counter(key for keys in per_device.values() for key in keys) == Counter(r.key for r in requests)
    assert sorted(seen) == sorted(r.key for r in requests)
    assert {device: backend.threads for device, backend in made.items()} == {
        device: {f"local-{device}"} for device in made}  # one worker thread per device
    assert {o.model for o in outcomes} == {"fake@cuda:0", "fake@cuda:1", "fake@cuda:3"}


def test_an_invalid_device_is_a_configuration_error_not_a_page_failure(monkeypatch, pages, four_gpus) -> None:
    with_backends(monkeypatch)
    engine = LocalInference(engine="transformers", model_dir=Path("/m"), device="cuda:7")
    with pytest.raises(DeviceError, match="available: cpu, cuda:0, cuda:1, cuda:2, cuda:3"):
        engine.infer(pages(1))


def test_rapidocr_runs_on_the_cpu_whatever_device_is_named(monkeypatch, four_gpus) -> None:
    assert LocalInference(engine="rapidocr", device="cuda:1").devices() == ["cpu"]


def test_oom_backs_off_and_later_calls_start_from_the_size_that_fit(monkeypatch, pages) -> None:
    made = with_backends(monkeypatch, oom_above=2)
    engine = LocalInference(device="cpu", batch_size=8)
    requests = pages(10)
    outcomes = engine.infer(requests)
    assert all(isinstance(o, PageSuccess) for o in outcomes)
    processed = [key for batch in made["cpu"].batches for key in batch]
    assert Counter(processed) == Counter(r.key for r in requests)  # each exactly once
    assert max(len(batch) for batch in made["cpu"].batches) == 2
    engine.infer(pages(3))
    assert made["cpu"].batches[-2:] == [["CA:x:1900:0", "CA:x:1900:1"], ["CA:x:1900:2"]]


def test_a_page_that_runs_out_of_memory_alone_is_a_retryable_failure(monkeypatch, pages) -> None:
    with_backends(monkeypatch, oom_above=0)
    outcomes = LocalInference(device="cpu", batch_size=2).infer(pages(3))
    assert {(o.error_class, o.error_type) for o in outcomes} == {(ErrorClass.RETRYABLE, "out_of_memory")}


def test_a_crashing_batch_fails_its_pages_without_raising(monkeypatch, pages) -> None:
    with_backends(monkeypatch, crash=True)
    outcomes = LocalInference(device="cpu", batch_size=2).infer(pages(3))
    assert [o.error_type for o in outcomes] == ["engine_error"] * 3
    assert "kernel exploded" in outcomes[0].message and outcomes[0].traceback


def test_a_dead_worker_leaves_missing_results_not_lost_pages(monkeypatch, pages) -> None:
    with_backends(monkeypatch)

    def broken_prefetch(*args, **kwargs):
        raise OSError("disk vanished")

    monkeypatch.setattr(runner_module, "prefetch_batches", broken_prefetch)
    outcomes = LocalInference(device="cpu").infer(pages(2))
    assert [o.error_type for o in outcomes] == ["missing_result", "missing_result"]


def test_the_model_loads_once_per_instance_and_close_releases_it(monkeypatch, pages) -> None:
    loads: list[str] = []

    def load(self, device):
        loads.append(device)
        return FakeBackend(device)

    monkeypatch.setattr(LocalInference, "_load", load)
    engine = LocalInference(device="cpu")
    engine.infer(pages(2))
    engine.infer(pages(2))
    assert loads == ["cpu"]
    engine.close()
    engine.infer(pages(1))
    assert loads == ["cpu", "cpu"]
    assert engine.infer([]) == []


def test_dry_run_estimate_times_one_page_and_extrapolates(monkeypatch, pages) -> None:
    made = with_backends(monkeypatch)
    requests = pages(5)
    estimate = LocalInference(device="cpu", batch_size=4).estimate(requests, pages=1000)
    assert made["cpu"].batches == [["CA:x:1900:0"]]  # one page only
    assert estimate.pages == 1000 and estimate.sample_ok and estimate.sample_key == "CA:x:1900:0"
    assert estimate.devices == ["cpu"] and estimate.batch_size == 4
    assert estimate.estimated_total_s == pytest.approx(estimate.seconds_per_page * 1000)
    assert estimate.peak_rss_bytes > 0 and estimate.peak_cuda_bytes is None
    assert "1000 pages on cpu" in estimate.summary()


def test_dry_run_reports_a_failing_sample(monkeypatch, pages) -> None:
    with_backends(monkeypatch)
    estimate = LocalInference(device="cpu").estimate(pages(2, broken={0}))
    assert not estimate.sample_ok and "cannot decode" in (estimate.sample_error or "")
    assert estimate.pages == 2
