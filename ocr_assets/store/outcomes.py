"""One batch's applied outcomes as an Arrow table, and the log rows written from it in bulk."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb

from ocr_assets.store.models import RecordOutcome


def write_outcome_logs(con: duckdb.DuckDBPyConnection, batch_id: str, now: datetime, *, failures: bool) -> None:
    """failure_log (when some failed), cost_ledger and inference_log rows for every row of the
    registered `outcome_rows` table."""
    if failures:
        con.execute(
            """INSERT INTO failure_log (key, attempt, batch_id, engine, error_class, error_type,
                   message, traceback, raw_response, prompt_name, prompt_version,
                   prompt_vars_hash, model, generation_config, created_at)
               SELECT key, attempt, ?, engine, coalesce(error_class, 'retryable'),
                   coalesce(error_type, 'unknown'), coalesce(message, ''), traceback, raw_response,
                   prompt_name, prompt_version, prompt_vars_hash, model, generation_config, ?
               FROM outcome_rows WHERE NOT success""",
            [batch_id, now],
        )
    con.execute(
        """INSERT INTO cost_ledger (key, batch_id, engine, pricing_mode, model, prompt_tokens,
               output_tokens, cached_tokens, cost_usd, realtime_cost_usd, created_at)
           SELECT key, ?, engine, pricing_mode, model, prompt_tokens, output_tokens, cached_tokens,
               cost_usd, realtime_cost_usd, ?
           FROM outcome_rows""",
        [batch_id, now],
    )
    con.execute(
        """INSERT INTO inference_log (key, book, page, attempt, batch_id, engine, model, success,
               prompt_name, prompt_version, prompt_vars_hash, rendered_prompt, previous_context,
               generation_config, output_path, output_sha256, error_type, error_message, raw_response,
               prompt_tokens, output_tokens, cached_tokens, cost_usd, latency_s, created_at,
               error_class, traceback, prompt_template_hash, worker)
           SELECT key, book, page, attempt, ?, engine, model, success, prompt_name, prompt_version,
               prompt_vars_hash, rendered_prompt, previous_context, generation_config, output_path, output_sha256,
               error_type, message, raw_response, prompt_tokens, output_tokens, cached_tokens,
               cost_usd, latency_s, ?,
               CASE WHEN success THEN NULL ELSE coalesce(error_class, 'retryable') END,
               traceback, prompt_template_hash, worker
           FROM outcome_rows""",
        [batch_id, now],
    )


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)




def outcome_table(rows: Sequence[tuple[RecordOutcome, tuple[Any, ...], str, str | None]]) -> Any:
    """An Arrow table of applied outcomes: (outcome, running row, new status, message) per record.

    The running row is `(attempts, prompt_name, prompt_version, prompt_vars_hash, book, page)`.
    """
    import pyarrow as pa

    text, int32, int64, double = pa.string(), pa.int32(), pa.int64(), pa.float64()
    outcomes = [o for o, _, _, _ in rows]
    columns: dict[str, tuple[Any, list[Any]]] = {
        "key": (text, [o.key for o in outcomes]),
        "status": (text, [status for _, _, status, _ in rows]),
        "success": (pa.bool_(), [o.success for o in outcomes]),
        "message": (text, [message for _, _, _, message in rows]),
        "error_class": (text, [o.error_class for o in outcomes]),
        "error_type": (text, [o.error_type for o in outcomes]),
        "traceback": (text, [o.traceback for o in outcomes]),
        "raw_response": (text, [o.raw_response for o in outcomes]),
        "output_path": (text, [o.output_path for o in outcomes]),
        "output_sha256": (text, [o.output_sha256 for o in outcomes]),
        "model": (text, [o.model for o in outcomes]),
        "engine": (text, [o.engine for o in outcomes]),
        "pricing_mode": (text, [o.pricing_mode for o in outcomes]),
        "prompt_tokens": (int64, [o.prompt_tokens for o in outcomes]),
        "output_tokens": (int64, [o.output_tokens for o in outcomes]),
        "cached_tokens": (int64, [o.cached_tokens for o in outcomes]),
        "cost_usd": (double, [o.cost_usd for o in outcomes]),
        "realtime_cost_usd": (double, [o.realtime_cost_usd for o in outcomes]),
        "latency_s": (double, [o.latency_s for o in outcomes]),
        "rendered_prompt": (text, [o.rendered_prompt for o in outcomes]),
        "prompt_template_hash": (text, [o.prompt_template_hash for o in outcomes]),
        "previous_context": (text, [_dumps(o.previous_context) for o in outcomes]),
        "generation_config": (text, [_dumps(o.generation_config) for o in outcomes]),
        "worker": (text, [o.worker for o in outcomes]),
        "attempt": (int32, [running[0] for _, running, _, _ in rows]),
        "prompt_name": (text, [running[1] for _, running, _, _ in rows]),
        "prompt_version": (text, [running[2] for _, running, _, _ in rows]),
        "prompt_vars_hash": (text, [running[3] for _, running, _, _ in rows]),
        "book": (text, [running[4] for _, running, _, _ in rows]),
        "page": (int32, [running[5] for _, running, _, _ in rows]),
    }
    return pa.table({name: pa.array(values, type=kind) for name, (kind, values) in columns.items()})

