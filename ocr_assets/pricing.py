"""Token cost: real-time list price, the batch discount, and cached-input pricing (never stacked)."""

from __future__ import annotations

from ocr_assets.core import PricingMode, TokenUsage
from ocr_assets.settings import ModelSettings


def realtime_cost(usage: TokenUsage, model: ModelSettings) -> float:
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return (
        (usage.prompt_tokens - cached) * model.input_price_per_mtok
        + cached * model.cached_input_price_per_mtok
        + usage.output_tokens * model.output_price_per_mtok
    ) / 1_000_000


def cost(usage: TokenUsage, model: ModelSettings, mode: PricingMode) -> float:
    """What the call is billed. Batch halves uncached input and output; cached input keeps the
    cache price (the API applies the cache discount instead of, not on top of, the batch one)."""
    if mode == "local":
        return 0.0
    if mode == "realtime":
        return realtime_cost(usage, model)
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return (
        (usage.prompt_tokens - cached) * model.input_price_per_mtok * model.batch_discount
        + cached * model.cached_input_price_per_mtok
        + usage.output_tokens * model.output_price_per_mtok * model.batch_discount
    ) / 1_000_000
