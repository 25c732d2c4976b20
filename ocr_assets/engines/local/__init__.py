"""Local inference: RapidOCR on the CPU by default, or a transformers VLM on CUDA devices, offline.

Plain Python (no Dagster): `LocalInference` is the `SyncEngine` that the Dagster resource, the CLI
and the emulator wrap.
"""

from ocr_assets.engines.local.batching import SafeRange, auto_batch_size, run_with_oom_backoff
from ocr_assets.engines.local.devices import DeviceError, resolve_devices
from ocr_assets.engines.local.estimate import DryRunEstimate
from ocr_assets.engines.local.runner import LocalInference

__all__ = [
    "DeviceError",
    "DryRunEstimate",
    "LocalInference",
    "SafeRange",
    "auto_batch_size",
    "resolve_devices",
    "run_with_oom_backoff",
]
