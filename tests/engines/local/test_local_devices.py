"""Device selection and validation, with a faked CUDA device list."""

from __future__ import annotations

import pytest
import torch

from ocr_assets.engines.local.devices import DeviceError, available_devices, free_memory_bytes, resolve_devices

GIB = 2**30


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch):
    """Three fake CUDA devices with 4, 10 and 7 GiB free."""
    free = {0: 4 * GIB, 1: 10 * GIB, 2: 7 * GIB}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(free))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (free[index], 16 * GIB))
    return free


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_auto_picks_the_cuda_device_with_the_most_free_memory(fake_cuda) -> None:
    assert resolve_devices("auto") == ["cuda:1"]


def test_auto_falls_back_to_cpu_without_cuda(no_cuda) -> None:
    assert resolve_devices("auto") == ["cpu"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cpu", ["cpu"]),
        ("cuda:2", ["cuda:2"]),
        ("cuda", ["cuda:0"]),
        (" CUDA:1 ", ["cuda:1"]),
        ("cuda:0,cuda:2", ["cuda:0", "cuda:2"]),
        (["cuda:2", "cuda:0"], ["cuda:2", "cuda:0"]),
    ],
)
def test_explicit_specs_resolve_to_existing_devices(fake_cuda, spec, expected) -> None:
    assert resolve_devices(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cuda:3", "'cuda:3' does not exist on this machine; available: cpu, cuda:0, cuda:1, cuda:2"),
        ("gpu", "'gpu' does not exist"),
        ("cuda:0,cuda:0", "listed twice"),
        ("auto,cuda:0", "cannot be combined"),
        ("cpu,cuda:1", "cannot mix 'cpu'"),
        ("", "empty device spec"),
        ([], "empty device spec"),
    ],
)
def test_invalid_specs_raise_a_device_error_naming_what_exists(fake_cuda, spec, message) -> None:
    with pytest.raises(DeviceError, match=message.replace("(", r"\(")):
        resolve_devices(spec)


def test_a_cuda_device_on_a_cpu_only_machine_lists_only_cpu(no_cuda) -> None:
    with pytest.raises(DeviceError, match="available: cpu$"):
        resolve_devices("cuda:0")


def test_available_devices_and_free_memory_follow_torch(fake_cuda) -> None:
    assert available_devices() == ["cpu", "cuda:0", "cuda:1", "cuda:2"]
    assert free_memory_bytes("cuda:2") == 7 * GIB
    assert free_memory_bytes("cpu") > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_resolves_to_a_real_cuda_device() -> None:
    (device,) = resolve_devices("auto")
    assert device.startswith("cuda:")
    assert free_memory_bytes(device) > 0
