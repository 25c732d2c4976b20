"""Input-token estimates and the enqueued-token budget across active batch jobs.

The Batch API's binding limit is enqueued input tokens per model across active jobs, so the
submitter estimates each request before it is sent (prompt chars / 4 + image tiles) and keeps the
sum over active batches under `gemini.max_enqueued_tokens`. The estimate is calibrated per model
from the usage metadata of ingested results (a ratio kept in the store's kv table).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence

from pydantic import BaseModel

from ocr_assets.store import BatchRow, RecordStore

CHARS_PER_TOKEN = 4
TOKENS_PER_TILE = 258
SMALL_IMAGE_SIDE = 384
# The calibration ratio is kept in a sane band so one odd batch cannot starve or flood the queue.
RATIO_BOUNDS = (0.25, 8.0)
CALIBRATION_WEIGHT_CAP = 2000


# Tokens per image at an explicit `mediaResolution` (documented figures; calibration absorbs the rest).
MEDIA_RESOLUTION_TOKENS = {
    "gemini-3": {"low": 280, "medium": 560, "high": 1120},
    "gemini-2": {"low": 64, "medium": 256},  # high (and unset) = the tiling below
}


def image_tokens(width: int, height: int, media_resolution: str | None = None, model: str = "") -> int:
    """Gemini image cost: a fixed count at an explicit media resolution, else 258 tokens for a small
    image and 258 per crop tile (squares of side min(w, h) / 1.5 clamped to [256, 768], as documented).
    """
    if media_resolution is not None:
        family = "gemini-3" if model.removeprefix("models/").startswith("gemini-3") else "gemini-2"
        fixed = MEDIA_RESOLUTION_TOKENS[family].get(media_resolution)
        if fixed is not None:
            return fixed
    if width <= 0 or height <= 0:
        return TOKENS_PER_TILE
    if width <= SMALL_IMAGE_SIDE and height <= SMALL_IMAGE_SIDE:
        return TOKENS_PER_TILE
    tile = min(max(min(width, height) / 1.5, 256), 768)
    return math.ceil(width / tile) * math.ceil(height / tile) * TOKENS_PER_TILE


def raw_estimate(prompt: str, width: int, height: int, *, media_resolution: str | None = None, model: str = "",
                 extra_images: Sequence[tuple[int, int]] = ()) -> int:
    """Uncalibrated input tokens of one page request (its image, plus any context image)."""
    return math.ceil(len(prompt) / CHARS_PER_TOKEN) + sum(
        image_tokens(w, h, media_resolution, model) for w, h in [(width, height), *extra_images]
    )


class Calibration(BaseModel):
    """actual prompt tokens / raw estimate, for one model, from ingested usage metadata."""

    model: str
    ratio: float = 1.0
    samples: int = 0

    def estimate(self, raw: int) -> int:
        return max(1, math.ceil(raw * self.ratio))


def _kv_name(model: str) -> str:
    return f"gemini:token_calibration:{model}"


# (store path, model) → (monotonic time read, calibration): saves a store transaction per wave.
_CACHE: dict[tuple[str, str], tuple[float, Calibration]] = {}
CACHE_TTL_S = 60.0


def load_calibration(store: RecordStore, model: str, *, max_age_s: float = CACHE_TTL_S) -> Calibration:
    cache_key = (str(store.path), model)
    cached = _CACHE.get(cache_key)
    if cached is not None and time.monotonic() - cached[0] < max_age_s:
        return cached[1]
    text = store.kv_get(_kv_name(model))
    calibration = Calibration(model=model)
    if text:
        try:
            calibration = Calibration.model_validate(json.loads(text))
        except ValueError:
            pass
    _CACHE[cache_key] = (time.monotonic(), calibration)
    return calibration


def update_calibration(
    store: RecordStore, model: str, *, raw_estimate_total: int, actual_prompt_tokens: int, records: int
) -> Calibration:
    """Fold one batch's (raw estimate, actual) into the model's running ratio; returns the new one."""
    current = load_calibration(store, model)
    if raw_estimate_total <= 0 or actual_prompt_tokens <= 0 or records <= 0:
        return current
    observed = actual_prompt_tokens / raw_estimate_total
    weight = min(current.samples, CALIBRATION_WEIGHT_CAP)
    ratio = (current.ratio * weight + observed * records) / (weight + records)
    ratio = min(max(ratio, RATIO_BOUNDS[0]), RATIO_BOUNDS[1])
    updated = Calibration(model=model, ratio=ratio, samples=current.samples + records)
    store.kv_set(_kv_name(model), updated.model_dump_json())
    _CACHE[(str(store.path), model)] = (time.monotonic(), updated)
    return updated


def enqueued_tokens(batches: Sequence[BatchRow], *, model: str | None = None) -> int:
    """Estimated input tokens held by active batches (of `model`, when given)."""
    return sum(b.estimated_tokens for b in batches if model is None or b.model in (None, model))


def token_room(batches: Sequence[BatchRow], budget: int, *, model: str | None = None) -> int:
    return max(0, budget - enqueued_tokens(batches, model=model))
