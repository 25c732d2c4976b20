"""Batches: their rows, observed state changes, and releasing a batch's records so nothing is lost with it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ocr_assets.store import transitions
from ocr_assets.store.core import StoreBase, dict_rows, model_rows, placeholders
from ocr_assets.store.models import ACTIVE_BATCH_STATES, BatchRow, BatchState, BatchTransition, utcnow
from ocr_assets.store.records import _block_downstream, _running, chunks


class BatchesMixin(StoreBase):
    def mark_submitted(self, batch_id: str, remote_name: str, *, count_attempt: bool,
                       detail: dict | None = None) -> None:
        """The remote create succeeded: record its name and (if not yet) count the attempt.

        `detail` (optional) replaces the batch's detail JSON in the same transaction.
        """
        now = utcnow()
        with self.connect() as con:
            con.execute(
                "UPDATE batches SET remote_name = ?, state = 'PENDING', detail = coalesce(?, detail), "
                "updated_at = ? WHERE batch_id = ?",
                [remote_name, json.dumps(detail) if detail is not None else None, now, batch_id],
            )
            if count_attempt:
                for chunk in chunks(list(_running(con, batch_id))):
                    con.execute(
                        f"UPDATE records SET attempts = attempts + 1, updated_at = ? "
                        f"WHERE key IN ({placeholders(chunk)})",  # RUNNING in the batch: read just now
                        [now, *chunk],
                    )

    def set_batch_state(self, batch_id: str, state: BatchState, *, error: str | None = None,
                        detail: dict | None = None) -> None:
        now = utcnow()
        with self.connect() as con:
            con.execute(
                """UPDATE batches SET state = ?, error = coalesce(?, error),
                       detail = coalesce(?, detail), updated_at = ?,
                       ingested_at = CASE WHEN ? = 'INGESTED' THEN ? ELSE ingested_at END
                   WHERE batch_id = ?""",
                [str(state), error, json.dumps(detail) if detail is not None else None, now, str(state), now,
                 batch_id],
            )

    def set_batch_states(self, transitions_seen: Sequence[BatchTransition]) -> list[str]:
        """Apply many observed state changes in one transaction; returns the batch ids that moved.

        Each change is guarded: a batch moves only while it is still in the state its caller saw,
        so a batch that moved on meanwhile (ingested, cancelled, released elsewhere) is left alone.
        """
        latest = {t.batch_id: t for t in transitions_seen}  # UPDATE ... FROM must match each batch once
        if not latest:
            return []
        now = utcnow()
        with self.connect() as con:
            moved = con.execute(
                """UPDATE batches SET state = t.state, updated_at = ?,
                       ingested_at = CASE WHEN t.state = 'INGESTED' THEN ? ELSE batches.ingested_at END
                   FROM (SELECT unnest(?) AS batch_id, unnest(?) AS seen, unnest(?) AS state) t
                   WHERE batches.batch_id = t.batch_id AND batches.state = t.seen
                   RETURNING batches.batch_id""",
                [now, now, list(latest), [str(t.seen) for t in latest.values()],
                 [str(t.state) for t in latest.values()]],
            ).fetchall()
        return [r[0] for r in moved]

    def get_batch(self, batch_id: str) -> BatchRow | None:
        with self.connect() as con:
            rows = model_rows(
                con.execute("SELECT * FROM batches WHERE batch_id = ? OR remote_name = ?", [batch_id, batch_id]),
                BatchRow,
            )
        return rows[0] if rows else None

    def batches(self, *, states: Sequence[BatchState | str] | None = None, limit: int | None = None) -> list[BatchRow]:
        params: list[Any] = []
        sql = "SELECT * FROM batches"
        if states is not None:
            sql += " WHERE state IN (SELECT unnest(?))"
            params.append([str(s) for s in states])
        sql += " ORDER BY created_at DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.connect() as con:
            return model_rows(con.execute(sql, params), BatchRow)

    def active_batches(self) -> list[BatchRow]:
        return self.batches(states=ACTIVE_BATCH_STATES)

    def unsettled_batches(self, engine: str) -> list[BatchRow]:
        """Remote-terminal batches of `engine` not yet settled, oldest first: SUCCEEDED/EXPIRED, or
        FAILED/CANCELLED with records still RUNNING in them (a crash between poll and release)."""
        with self.connect() as con:
            return model_rows(con.execute(
                """SELECT b.* FROM batches b
                   WHERE b.engine = ? AND (b.state IN ('SUCCEEDED', 'EXPIRED')
                      OR (b.state IN ('FAILED', 'CANCELLED') AND EXISTS (
                          SELECT 1 FROM batch_records br JOIN records r ON r.key = br.key
                          WHERE br.batch_id = b.batch_id AND r.batch_id = b.batch_id AND r.status = 'RUNNING')))
                   ORDER BY b.updated_at""",
                [engine],
            ), BatchRow)

    def batch_members(self, batch_id: str) -> list[tuple[str, int, int]]:
        """(key, within-batch index, attempt) for every record sent in the batch."""
        with self.connect() as con:
            return con.execute(
                "SELECT key, batch_index, attempt FROM batch_records WHERE batch_id = ? ORDER BY batch_index",
                [batch_id],
            ).fetchall()

    def batch_outcome_counts(self, batch_id: str) -> dict[str, int]:
        """outcome → records of the batch (RUNNING while in flight)."""
        with self.connect() as con:
            return dict(con.execute(
                "SELECT coalesce(outcome, 'RUNNING'), count(*) FROM batch_records "
                "WHERE batch_id = ? GROUP BY 1 ORDER BY 1", [batch_id]).fetchall())

    def batch_record_table(self, batch_id: str) -> list[dict[str, Any]]:
        """One row per record sent in the batch, in batch order: key, status (its outcome in this
        batch, or its status while in flight), error (this batch's failure message), attempt."""
        with self.connect() as con:
            return dict_rows(con.execute(
                """SELECT br.key, coalesce(br.outcome, r.status) AS status, f.message AS error, br.attempt
                   FROM batch_records br
                   LEFT JOIN records r ON r.key = br.key
                   LEFT JOIN (SELECT key, batch_id, arg_max(message, id) AS message FROM failure_log
                              WHERE batch_id = ? GROUP BY key, batch_id) f
                     ON f.key = br.key AND f.batch_id = br.batch_id
                   WHERE br.batch_id = ? ORDER BY br.batch_index""",
                [batch_id, batch_id],
            ))

    def batch_keys(self, batch_ids: Sequence[str]) -> dict[str, list[str]]:
        """batch id → keys of every record sent in it (batch order), for many batches in one query."""
        if not batch_ids:
            return {}
        with self.connect() as con:
            found = dict(
                con.execute(
                    "SELECT batch_id, list(key ORDER BY batch_index) FROM batch_records "
                    "WHERE batch_id IN (SELECT unnest(?)) GROUP BY batch_id",
                    [list(batch_ids)],
                ).fetchall()
            )
        return {batch_id: found.get(batch_id, []) for batch_id in batch_ids}

    def release_batch(self, batch_id: str, *, error: str, error_type: str, count_failure: bool,
                      state: BatchState, refund_attempt: bool = False) -> list[str]:
        """Return every record still RUNNING in the batch so it can run again (never lost with it).

        `count_failure=True` (the batch ran and failed/expired/was cancelled): the attempt stands, the
        failure is logged, and records whose attempts are exhausted become FATAL (chains BLOCKED).
        `count_failure=False` (the remote create never happened): records go back as they were;
        `refund_attempt=True` also takes back the attempt their claim counted (a sync engine that
        could not answer any page, e.g. a wrong endpoint). Statuses follow `transitions.after_release`.
        """
        now = utcnow()
        with self.connect() as con:
            running = _running(con, batch_id)
            keys = list(running)
            if keys and count_failure:
                for chunk in chunks(keys):
                    con.execute(
                        f"""INSERT INTO failure_log (key, attempt, batch_id, engine, error_class, error_type,
                               message, prompt_name, prompt_version, prompt_vars_hash, model, created_at)
                           SELECT key, attempts, batch_id, engine, 'retryable', ?, ?, prompt_name,
                               prompt_version, prompt_vars_hash, model, ?
                           FROM records WHERE key IN ({placeholders(chunk)})""",
                        [error_type, error, now, *chunk],
                    )
            refund = int(refund_attempt and not count_failure)
            statuses = {key: transitions.after_release(attempts=running[key][0] - refund,
                                                       max_attempts=self.max_attempts,
                                                       count_failure=count_failure) for key in keys}
            messages = {key: (transitions.exhausted(running[key][0], error)
                              if statuses[key] == transitions.S.FATAL_FAILURE else error) for key in keys}
            for chunk in chunks(keys):
                con.execute(
                    f"""UPDATE records SET status = u.status, attempts = greatest(records.attempts - ?, 0),
                           last_error = CASE WHEN ? THEN u.message ELSE records.last_error END,
                           error_class = CASE WHEN ? THEN 'retryable' ELSE records.error_class END,
                           error_type = CASE WHEN ? THEN ? ELSE records.error_type END,
                           batch_id = NULL, batch_index = NULL, updated_at = ?
                        FROM (SELECT unnest(?::VARCHAR[]) AS key, unnest(?::VARCHAR[]) AS status,
                                     unnest(?::VARCHAR[]) AS message) u
                        WHERE records.key IN ({placeholders(chunk)}) AND records.key = u.key""",
                    [refund, count_failure, count_failure, count_failure, error_type, now, list(chunk),
                     [str(statuses[k]) for k in chunk], [messages[k] for k in chunk], *chunk],
                )
            fatal = [key for key in keys if statuses[key] == transitions.S.FATAL_FAILURE]
            _block_downstream(con, fatal, now)
            con.execute(
                "UPDATE batch_records SET outcome = ? WHERE batch_id = ? AND outcome IS NULL",
                ["released:" + error_type, batch_id],
            )
            con.execute(
                "UPDATE batches SET state = ?, error = ?, updated_at = ? WHERE batch_id = ?",
                [str(state), error, now, batch_id],
            )
        return keys
