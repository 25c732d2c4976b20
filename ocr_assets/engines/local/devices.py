"""Which torch devices a local run uses: `auto`, `cpu`, `cuda:N`, or several CUDA devices at once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import ModuleType

log = logging.getLogger(__name__)


class DeviceError(ValueError):
    """A device spec names a device this machine does not have; the message lists the ones it has."""


def _torch() -> ModuleType | None:
    # torch is an optional extra (`.[local]`): without it the machine has only the CPU.
    try:
        import torch
    except ImportError:
        return None
    return torch


def cuda_device_count() -> int:
    """Number of CUDA devices torch can use (0 without torch or CUDA)."""
    torch = _torch()
    if torch is None or not torch.cuda.is_available():
        return 0
    return int(torch.cuda.device_count())


def available_devices() -> list[str]:
    """Every device a spec may name: `cpu` then `cuda:0..N-1`."""
    return ["cpu", *(f"cuda:{index}" for index in range(cuda_device_count()))]


def free_memory_bytes(device: str) -> int:
    """Free memory on `device` now: CUDA free bytes, or available system RAM for `cpu`."""
    if device.startswith("cuda"):
        torch = _torch()
        assert torch is not None, "a cuda device was resolved without torch"
        free, _total = torch.cuda.mem_get_info(_cuda_index(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def _cuda_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


def _auto_device() -> str:
    count = cuda_device_count()
    if count == 0:
        return "cpu"
    torch = _torch()
    assert torch is not None
    free = {index: int(torch.cuda.mem_get_info(index)[0]) for index in range(count)}
    best = max(free, key=lambda index: (free[index], -index))
    log.info("device auto: cuda:%d has the most free memory (%d MiB)", best, free[best] >> 20)
    return f"cuda:{best}"


def _normalise(name: str, existing: list[str]) -> str:
    token = name.strip().lower()
    if token == "cuda":
        token = "cuda:0"
    if token not in existing:
        raise DeviceError(
            f"device {name.strip()!r} does not exist on this machine; available: {', '.join(existing)}"
        )
    return token


def resolve_devices(spec: str | Sequence[str]) -> list[str]:
    """Turn a device spec into concrete device names, e.g. `"auto"` → `["cuda:1"]`, `"cuda:0,cuda:1"` → both."""
    raw = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [name.strip() for name in raw if name.strip()]
    if not names:
        raise DeviceError(f"empty device spec; use 'auto' or one of: {', '.join(available_devices())}")
    if any(name.lower() == "auto" for name in names):
        if len(names) > 1:
            raise DeviceError(f"'auto' picks one device and cannot be combined with others: {names}")
        return [_auto_device()]
    existing = available_devices()
    resolved: list[str] = []
    for name in names:
        device = _normalise(name, existing)
        if device in resolved:
            raise DeviceError(f"device {device!r} is listed twice in {names}")
        resolved.append(device)
    if "cpu" in resolved and len(resolved) > 1:
        # A CPU worker beside GPU workers would take an even share of pages and finish last.
        raise DeviceError(f"cannot mix 'cpu' with CUDA devices in one run: {names}")
    return resolved
