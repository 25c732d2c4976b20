"""Gemini engines: Batch API (`batch`, orchestrated by `runner`), real-time and flex tier (`realtime`).

No Dagster here; `defs/` and the CLI call these domain functions.
"""

from ocr_assets.engines.gemini.batch import GeminiBatchClient, IntegrityReport, parse_results
from ocr_assets.engines.gemini.client import GeminiUnavailable, make_client, scrub
from ocr_assets.engines.gemini.realtime import GeminiFlexEngine, GeminiRealtimeEngine, flex_supported
from ocr_assets.engines.gemini.runner import (
    cancel_batch,
    ingest_batch,
    poll_active,
    run_batches,
    stuck_batches,
    submit_wave,
)

__all__ = [
    "GeminiBatchClient",
    "GeminiFlexEngine",
    "GeminiRealtimeEngine",
    "GeminiUnavailable",
    "IntegrityReport",
    "cancel_batch",
    "flex_supported",
    "ingest_batch",
    "make_client",
    "parse_results",
    "poll_active",
    "run_batches",
    "scrub",
    "stuck_batches",
    "submit_wave",
]
