"""Token estimates, their calibration, the enqueued-token budget, and batch vs real-time pricing."""

from __future__ import annotations

from datetime import datetime

import pytest

from ocr_assets.core import TokenUsage
from ocr_assets.engines.gemini.metering import (
    enqueued_tokens,
    image_tokens,
    load_calibration,
    raw_estimate,
    token_room,
    update_calibration,
)
from ocr_assets.pricing import cost
from ocr_assets.settings import ModelSettings
from ocr_assets.store import BatchRow, BatchState, RecordStore


@pytest.mark.parametrize(
    ("size", "tokens"),
    [((8, 8), 258), ((384, 384), 258), ((385, 100), 258 * 2), ((768, 768), 258 * 4), ((2000, 3000), 258 * 12)],
)
def test_image_tokens_follow_the_tiling_rule(size, tokens):
    assert image_tokens(*size) == tokens


def test_a_request_estimate_is_prompt_chars_over_four_plus_the_image():
    assert raw_estimate("x" * 401, 100, 100) == 101 + 258


def test_calibration_learns_the_ratio_from_ingested_usage_and_is_kept_in_the_store(tmp_path):
    store = RecordStore(tmp_path / "s.duckdb")
    assert load_calibration(store, "m").ratio == 1.0
    first = update_calibration(store, "m", raw_estimate_total=1000, actual_prompt_tokens=1500, records=10)
    assert first.ratio == pytest.approx(1.5) and first.samples == 10
    second = update_calibration(store, "m", raw_estimate_total=1000, actual_prompt_tokens=1000, records=10)
    assert second.ratio == pytest.approx(1.25)
    assert load_calibration(store, "m").ratio == pytest.approx(1.25)
    assert load_calibration(store, "other-model").ratio == 1.0
    assert second.estimate(100) == 125


def batch(tokens: int, model: str = "m", state: BatchState = BatchState.RUNNING) -> BatchRow:
    now = datetime(2026, 1, 1)
    return BatchRow(batch_id=f"b{tokens}", engine="gemini-batch", model=model, state=state, record_count=1,
                    estimated_tokens=tokens, created_at=now, updated_at=now)


def test_the_budget_counts_estimated_tokens_of_active_batches_per_model():
    active = [batch(1000), batch(500), batch(10_000, model="other")]
    assert enqueued_tokens(active, model="m") == 1500
    assert token_room(active, 2000, model="m") == 500
    assert token_room(active, 1000, model="m") == 0


def test_batch_is_half_the_realtime_price_and_caching_is_never_stacked():
    model = ModelSettings()
    usage = TokenUsage(prompt_tokens=1_000_000, output_tokens=100_000)
    realtime = cost(usage, model, "realtime")
    assert realtime == pytest.approx(0.30 + 0.25)
    assert cost(usage, model, "batch") == pytest.approx(realtime * 0.5)
    cached = TokenUsage(prompt_tokens=1_000_000, output_tokens=100_000, cached_tokens=800_000)
    assert cost(cached, model, "realtime") < realtime
    # batch with a cache: the cached part at the cache price (not halved again), the rest halved
    assert cost(cached, model, "batch") == pytest.approx((200_000 * 0.30 * 0.5 + 800_000 * 0.03
                                                          + 100_000 * 2.50 * 0.5) / 1e6)
    assert cost(cached, model, "batch") < cost(usage, model, "batch")
