"""Deterministic fault decisions: pure functions of (seed, identity, counter), never of thread timing."""

from __future__ import annotations

import hashlib
import json
import random

from ocr_assets.engines.emulator.config import FILE_ONLY_FAULT_KINDS, RECORD_FAULT_KINDS, FaultConfig


def unit(seed: int, *parts: object) -> float:
    """A uniform number in [0, 1) from a hash of `seed` and `parts` (stable across runs and platforms)."""
    payload = json.dumps([seed, *parts], separators=(",", ":"), default=str).encode("utf-8")
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "big") / 2**64


def record_fault(faults: FaultConfig, key: str, attempt: int, *, file_output: bool = True) -> str | None:
    """The fault kind for this attempt of this record, or None for a clean answer.

    One categorical draw over `RECORD_FAULT_KINDS`; kinds that only shape a result file come out as None
    when the answer is not a file line (real-time calls, inline batches), so rates stay comparable.
    """
    draw = unit(faults.seed, "record", key, attempt)
    edge = 0.0
    for kind in RECORD_FAULT_KINDS:
        edge += getattr(faults, kind)
        if draw < edge:
            return None if (kind in FILE_ONLY_FAULT_KINDS and not file_output) else kind
    return None


def endpoint_fault(faults: FaultConfig, route: str, call_number: int) -> int | None:
    """HTTP status (429 or 503) to refuse this call of `route` with, or None to serve it."""
    if faults.endpoint_routes and route not in faults.endpoint_routes:
        return None
    draw = unit(faults.seed, "endpoint", route, call_number)
    if draw < faults.endpoint_429:
        return 429
    if draw < faults.endpoint_429 + faults.endpoint_503:
        return 503
    return None


def slow_poll(faults: FaultConfig, call_number: int) -> float:
    """Seconds this `batches.get` call sleeps before answering."""
    if faults.slow_poll_s <= 0 or faults.slow_poll_rate <= 0:
        return 0.0
    return faults.slow_poll_s if unit(faults.seed, "slow_poll", call_number) < faults.slow_poll_rate else 0.0


def batch_fate(faults: FaultConfig, ordinal: int) -> str | None:
    """'stuck', 'fail' or 'expire' for the batch with this creation ordinal, else None."""
    if ordinal in faults.stuck_batches:
        return "stuck"
    if ordinal in faults.fail_batches:
        return "fail"
    if ordinal in faults.expire_batches:
        return "expire"
    return None


def keeps_line_when_expired(faults: FaultConfig, key: str, batch_ordinal: int) -> bool:
    return unit(faults.seed, "expired", batch_ordinal, key) < faults.expired_keep_fraction


def shuffled(faults: FaultConfig, items: list, batch_ordinal: int) -> list:
    out = list(items)
    random.Random(f"{faults.seed}:shuffle:{batch_ordinal}").shuffle(out)
    return out


def truncate_point(faults: FaultConfig, key: str, attempt: int, length: int) -> int:
    """Where a 'truncated' answer is cut: 30-80 % of the text, never the whole of it."""
    if length <= 1:
        return 0
    fraction = 0.3 + 0.5 * unit(faults.seed, "truncate", key, attempt)
    return max(1, min(length - 1, int(length * fraction)))


def unknown_key_for(faults: FaultConfig, key: str, attempt: int) -> str:
    return f"unknown-{hashlib.sha256(f'{faults.seed}:{key}:{attempt}'.encode()).hexdigest()[:12]}"

