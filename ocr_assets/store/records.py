"""Records: the plan's nodes, the reads that pick work, and every change of a record's status.

Per-batch paths (claim, apply, blocking a chain) find rows through indexed point lookups
(`key IN (?, ...)`, `upstream_key IN (?, ...)`), so their cost does not grow with the corpus.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import duckdb

from ocr_assets.store import transitions
from ocr_assets.store.core import StoreBase, model_rows, placeholders, registered, where_equal
from ocr_assets.store.models import (
    PLAN_COLUMNS,
    ApplySummary,
    BatchState,
    ClaimItem,
    PlannedRecord,
    RecordOutcome,
    RecordRow,
    RecordStatus,
    TERMINAL_STATUSES,
    utcnow,
)
from ocr_assets.store.outcomes import outcome_table, write_outcome_logs
from ocr_assets.store.transitions import BLOCKABLE, BLOCKING, CLAIMABLE, RESETTABLE, sql_list

_INSERT_CHUNK = 100_000
_LOOKUP_CHUNK = 1000  # keys per `IN (?, ...)`: DuckDB probes the index up to 2,048 matches


class Progress(NamedTuple):
    terminal: int
    total: int
    cost_usd: float


def chunks(values: Sequence[Any], size: int = _LOOKUP_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


class RecordsMixin(StoreBase):
    # -- plan ------------------------------------------------------------------------------

    def planned_pages_by_book(self) -> dict[str, tuple[set[int], bool]]:
        """book → (planned pages, started) where started means some record left PENDING or was tried."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT book, list(page), bool_or(status <> 'PENDING' OR attempts > 0) "
                "FROM records GROUP BY book"
            ).fetchall()
        return {book: (set(pages), bool(started)) for book, pages, started in rows}

    def add_planned(
        self, nodes: Sequence[PlannedRecord | tuple], *, replace_books: Iterable[str] = ()
    ) -> int:
        """Insert plan nodes (models or tuples in `PLAN_COLUMNS` order) in one bulk transaction.

        `replace_books` are unstarted books being re-planned: their untouched records are replaced.
        """
        import pyarrow as pa

        now = utcnow()
        columns = list(PLAN_COLUMNS)
        rows = [tuple(n.model_dump().values()) if isinstance(n, PlannedRecord) else n for n in nodes]
        types = {"year": pa.int32(), "page": pa.int32(), "chain_remaining": pa.int32()}
        replace = list(replace_books)
        with self.connect() as con:
            if replace:
                con.execute(
                    "DELETE FROM records WHERE book IN (SELECT unnest(?)) AND status = 'PENDING' AND attempts = 0",
                    [replace],
                )
            # Chunks keep the Arrow copy small next to a million planned tuples.
            for start in range(0, len(rows), _INSERT_CHUNK):
                chunk = rows[start:start + _INSERT_CHUNK]
                table = pa.table({name: pa.array([row[i] for row in chunk], type=types.get(name, pa.string()))
                                  for i, name in enumerate(columns)})
                with registered(con, "plan_nodes", table):
                    con.execute(
                        f"INSERT INTO records ({', '.join(columns)}, created_at, updated_at) "
                        f"SELECT {', '.join(columns)}, ?, ? FROM plan_nodes ON CONFLICT DO NOTHING",
                        [now, now],
                    )
        return len(nodes)

    def export_plan(self) -> dict[str, Any]:
        """The plan in the documented `{"nodes": {...}, "deps": {...}}` form."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT key, image_path, allow_list_path, upstream_key FROM records ORDER BY book, page"
            ).fetchall()
        return {
            "nodes": {k: {"image_path": img, "filter_json": allow} for k, img, allow, _ in rows},
            "deps": {k: up for k, _, _, up in rows},
        }

    # -- reads -----------------------------------------------------------------------------

    def runnable(
        self, limit: int = 1000, *, books: Sequence[str] | None = None, require_upstream: bool = True
    ) -> list[RecordRow]:
        """Records eligible to run now: PENDING/RETRYABLE, attempts left, upstream SUCCESS or none.

        Order (deterministic): longest remaining chain first, so long chains start early and the
        makespan shrinks; then book, then page. `require_upstream=False` (context from a local OCR
        pass, not the upstream output) drops the upstream-SUCCESS condition; a BLOCKED record stays
        blocked either way.
        """
        params: list[Any] = [self.max_attempts, not require_upstream]
        book_filter = ""
        if books is not None:
            book_filter = "AND book IN (SELECT unnest(?))"
            params.append(list(books))
        params.append(limit)
        with self.connect() as con:
            # Top-N over the few narrow columns the order needs, then the full rows of the winners:
            # sorting whole rows over a million records costs seconds.
            cur = con.execute(
                f"""
                SELECT r.* FROM records r JOIN (
                    SELECT rowid AS rid, chain_remaining, book, page FROM records
                    WHERE status IN {sql_list(CLAIMABLE)} AND attempts < ?
                      AND (upstream_key IS NULL OR upstream_done OR ?)
                      {book_filter}
                    ORDER BY chain_remaining DESC, book, page
                    LIMIT ?
                ) top ON r.rowid = top.rid
                ORDER BY top.chain_remaining DESC, top.book, top.page
                """,
                params,
            )
            return model_rows(cur, RecordRow)

    def get(self, key: str) -> RecordRow | None:
        found = self.get_many([key])
        return found.get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, RecordRow]:
        if not keys:
            return {}
        found: dict[str, RecordRow] = {}
        with self.connect() as con:
            for chunk in chunks(list(keys)):
                for row in model_rows(
                    con.execute(f"SELECT * FROM records WHERE key IN ({placeholders(chunk)})", list(chunk)),
                    RecordRow,
                ):
                    found[row.key] = row
        return found

    def records(
        self,
        *,
        status: RecordStatus | str | None = None,
        book: str | None = None,
        batch_id: str | None = None,
        limit: int | None = None,
    ) -> list[RecordRow]:
        where, params = where_equal(status=status, book=book, batch_id=batch_id)
        sql = "SELECT * FROM records" + where + " ORDER BY book, page"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.connect() as con:
            return model_rows(con.execute(sql, params), RecordRow)

    def books(self) -> list[str]:
        with self.connect() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT book FROM records ORDER BY book").fetchall()]

    def counts_by_book(self, books: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        params: list[Any] = []
        where = ""
        if books is not None:
            where = "WHERE book IN (SELECT unnest(?))"
            params.append(list(books))
        with self.connect() as con:
            rows = con.execute(
                f"SELECT book, status, count(*) FROM records {where} GROUP BY book, status ORDER BY book", params
            ).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for book, status, n in rows:
            counts.setdefault(book, {})[status] = n
        return counts

    def status_counts(self) -> dict[str, int]:
        with self.connect() as con:
            return dict(con.execute("SELECT status, count(*) FROM records GROUP BY status").fetchall())

    def unfinished_count(self, books: Sequence[str] | None = None) -> int:
        """Records that are not terminal (counting exhausted retries as terminal)."""
        progress = self.progress(books)
        return progress.total - progress.terminal

    def progress(self, books: Sequence[str] | None = None) -> Progress:
        """Terminal and total records (of `books`, or all), and the cost billed so far (all books)."""
        params: list[Any] = [self.max_attempts]
        where = ""
        if books is not None:
            where = "WHERE book IN (SELECT unnest(?))"
            params.append(list(books))
        with self.connect() as con:
            terminal, total = con.execute(
                f"""SELECT count(*) FILTER (WHERE status IN {sql_list(TERMINAL_STATUSES)}
                                            OR (status = 'RETRYABLE_FAILURE' AND attempts >= ?)), count(*)
                    FROM records {where}""",
                params,
            ).fetchone()
            cost = con.execute("SELECT coalesce(sum(cost_usd), 0) FROM cost_ledger").fetchone()[0]
        return Progress(terminal=int(terminal), total=int(total), cost_usd=float(cost))

    # -- claim -----------------------------------------------------------------------------

    def claim(
        self,
        batch_id: str,
        items: Sequence[ClaimItem],
        *,
        engine: str,
        model: str,
        state: BatchState = BatchState.RUNNING,
        count_attempt: bool = True,
        estimated_tokens: int = 0,
        owner: str | None = None,
        remote_name: str | None = None,
        require_upstream: bool = True,
    ) -> list[str]:
        """Move runnable records into a new batch in one transaction; returns the keys claimed.

        The guard (status PENDING/RETRYABLE, attempts left, upstream SUCCESS) is evaluated inside the
        transaction, so two racing submitters never claim the same record.
        """
        if not items:
            return []
        now = utcnow()
        owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        increment = 1 if count_attempt else 0
        claimed: list[tuple[str, int, int]] = []
        with self.connect() as con:
            for chunk in chunks(items):
                # The guard is checked on rows read in this transaction (the store has one writer, under
                # the file lock), then only those rows move: a filter beside the key list would make
                # DuckDB scan the table instead of probing its key index.
                found = lookup(con, [i.key for i in chunk], "status, attempts, upstream_key, upstream_done")
                chunk = [i for i in chunk if i.key in found and transitions.claimable(
                    *found[i.key], max_attempts=self.max_attempts, require_upstream=require_upstream)]
                if not chunk:
                    continue
                keys = [i.key for i in chunk]
                claimed += con.execute(
                    f"""
                    UPDATE records SET status = 'RUNNING', batch_id = ?, batch_index = c.batch_index,
                        attempts = records.attempts + {increment}, engine = ?, model = ?,
                        prompt_name = c.prompt_name, prompt_version = c.prompt_version,
                        prompt_vars_hash = c.prompt_vars_hash, updated_at = ?
                    FROM (SELECT unnest(?::VARCHAR[]) AS key, unnest(?::INTEGER[]) AS batch_index,
                                 unnest(?::VARCHAR[]) AS prompt_name, unnest(?::VARCHAR[]) AS prompt_version,
                                 unnest(?::VARCHAR[]) AS prompt_vars_hash) c
                    WHERE records.key IN ({placeholders(keys)}) AND records.key = c.key
                    RETURNING records.key, records.batch_index, records.attempts
                    """,
                    [batch_id, engine, model, now, keys, [i.batch_index for i in chunk],
                     [i.prompt_name for i in chunk], [i.prompt_version for i in chunk],
                     [i.prompt_vars_hash for i in chunk], *keys],
                ).fetchall()
            if not claimed:
                return []
            claimed.sort(key=lambda row: row[1])
            attempt_offset = 0 if count_attempt else 1
            con.execute(
                "INSERT INTO batch_records (batch_id, key, batch_index, attempt) "
                "SELECT ?, unnest(?::VARCHAR[]), unnest(?::INTEGER[]), unnest(?::INTEGER[])",
                [batch_id, [k for k, _, _ in claimed], [i for _, i, _ in claimed],
                 [a + attempt_offset for _, _, a in claimed]],
            )
            con.execute(
                """INSERT INTO batches (batch_id, remote_name, engine, model, state, record_count,
                       estimated_tokens, owner, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [batch_id, remote_name, engine, model, str(state), len(claimed), estimated_tokens, owner, now, now],
            )
        return [k for k, _, _ in claimed]

    # -- outcomes --------------------------------------------------------------------------

    def apply_outcomes(
        self, batch_id: str, outcomes: Sequence[RecordOutcome], *,
        before_write: Callable[[list[str]], None] | None = None,
    ) -> ApplySummary:
        """Apply one batch's results in one transaction; only records RUNNING in this batch change.

        A replayed or stale result (record already moved on) is reported as ignored, so re-ingesting
        a batch changes nothing. Statuses follow `transitions.after_attempt`. `before_write(keys)`
        runs inside the transaction with the keys about to be applied, before any row changes: the
        outcomes' durable side effects (their output files) go there, so a record is never SUCCESS
        without its file and an ignored outcome never overwrites one. If it raises, nothing changes.
        """
        summary = ApplySummary()
        if not outcomes:
            return summary
        now = utcnow()
        unique: dict[str, RecordOutcome] = {}
        for outcome in outcomes:
            unique.setdefault(outcome.key, outcome)  # the first outcome per key wins
        by_status = {RecordStatus.SUCCESS: summary.succeeded, RecordStatus.FATAL_FAILURE: summary.fatal,
                     RecordStatus.RETRYABLE_FAILURE: summary.retryable}
        with self.connect() as con:
            running = _running(con, batch_id, list(unique))
            rows: list[tuple[RecordOutcome, tuple[Any, ...], str, str | None]] = []
            for o in unique.values():
                if o.key not in running:
                    summary.ignored.append(o.key)
                    continue
                verdict = transitions.after_attempt(success=o.success, error_class=o.error_class,
                                                    message=o.message, attempts=running[o.key][0],
                                                    max_attempts=self.max_attempts)
                assert transitions.can_move(RecordStatus.RUNNING, verdict.status)
                by_status[verdict.status].append(o.key)
                rows.append((o, running[o.key], str(verdict.status), verdict.message))
                summary.applied.append(o.key)
            if before_write is not None and summary.applied:
                before_write(summary.applied)
            if rows:
                _write_outcomes(con, batch_id, rows, summary, now)
            summary.blocked = _block_downstream(con, summary.fatal, now)
        return summary

    def reset_for_retry(self, keys: Sequence[str], *, reason: str) -> int:
        """Make terminal-failed or exhausted records runnable again (attempts reset), audit-logged."""
        if not keys:
            return 0
        now = utcnow()
        with self.connect() as con:
            changed = con.execute(
                f"""UPDATE records SET status = 'PENDING', attempts = 0, blocked_by = NULL, updated_at = ?
                   WHERE key IN (SELECT unnest(?)) AND status IN {sql_list(RESETTABLE)}
                   RETURNING key""",
                [now, list(keys)],
            ).fetchall()
            changed_keys = [r[0] for r in changed]
            _unblock(con, now)
            con.execute(
                "INSERT INTO audit_log (action, detail, created_at) VALUES ('retry', ?, ?)",
                [json.dumps({"reason": reason, "keys": changed_keys}), now],
            )
        return len(changed_keys)


def lookup(con: duckdb.DuckDBPyConnection, keys: Sequence[str], columns: str) -> dict[str, tuple[Any, ...]]:
    """key → (`columns`) of the records with those keys, by probing the key index.

    DuckDB probes an index only when the key list is the scan's sole filter: any other condition
    (status, batch) turns the probe into a full scan, so callers filter the returned rows instead.
    """
    found: dict[str, tuple[Any, ...]] = {}
    for chunk in chunks(list(keys)):
        for row in con.execute(f"SELECT key, {columns} FROM records WHERE key IN ({placeholders(chunk)})",
                               list(chunk)).fetchall():
            found[row[0]] = row[1:]
    return found


def _running(con: duckdb.DuckDBPyConnection, batch_id: str,
             keys: Sequence[str] | None = None) -> dict[str, tuple[Any, ...]]:
    """key → (attempts, prompt name, version, vars hash, book, page) of records RUNNING in the batch.

    Among `keys`, or (without) among the batch's members in `batch_records`.
    """
    if keys is None:
        keys = [r[0] for r in con.execute("SELECT key FROM batch_records WHERE batch_id = ?", [batch_id]).fetchall()]
    found = lookup(con, keys, "batch_id, status, attempts, prompt_name, prompt_version, prompt_vars_hash, book, page")
    return {key: row[2:] for key, row in found.items() if row[0] == batch_id and row[1] == RecordStatus.RUNNING}


def _write_outcomes(con: duckdb.DuckDBPyConnection, batch_id: str,
                    rows: Sequence[tuple[RecordOutcome, tuple[Any, ...], str, str | None]],
                    summary: ApplySummary, now: datetime) -> None:
    """Every write is one set-based statement over the outcome table (executemany runs a statement
    per row, which cost seconds per 500-record batch). `rows` are RUNNING in the batch (checked in
    this transaction), so the updates select by key alone: an index probe."""
    with registered(con, "outcome_rows", outcome_table(rows)):
        for chunk in chunks(summary.applied):
            con.execute(
                f"""UPDATE records SET status = u.status, last_error = u.message,
                       error_class = CASE WHEN u.success THEN NULL ELSE u.error_class END,
                       error_type = CASE WHEN u.success THEN NULL ELSE u.error_type END,
                       output_path = coalesce(u.output_path, records.output_path),
                       output_sha256 = coalesce(u.output_sha256, records.output_sha256),
                       prompt_tokens = records.prompt_tokens + u.prompt_tokens,
                       output_tokens = records.output_tokens + u.output_tokens,
                       cached_tokens = records.cached_tokens + u.cached_tokens,
                       cost_usd = records.cost_usd + u.cost_usd,
                       model = coalesce(nullif(u.model, ''), records.model),
                       batch_id = CASE WHEN u.success THEN records.batch_id ELSE NULL END,
                       batch_index = CASE WHEN u.success THEN records.batch_index ELSE NULL END,
                       updated_at = ?
                   FROM outcome_rows u
                   WHERE records.key IN ({placeholders(chunk)}) AND records.key = u.key""",
                [now, *chunk],
            )
        for chunk in chunks(summary.succeeded):  # their downstream pages may run now
            con.execute(
                f"UPDATE records SET upstream_done = true WHERE upstream_key IN ({placeholders(chunk)})", list(chunk)
            )
        con.execute(
            """UPDATE batch_records SET outcome = u.status FROM outcome_rows u
               WHERE batch_records.batch_id = ? AND batch_records.key = u.key""",
            [batch_id],
        )
        write_outcome_logs(con, batch_id, now, failures=len(summary.applied) > len(summary.succeeded))


def _block_downstream(con: duckdb.DuckDBPyConnection, failed: Sequence[str], now: datetime) -> int:
    """Block every not-yet-run record downstream of the `failed` records, walking each chain down
    from them (index probes on `upstream_key`, never a scan of the table)."""
    total = 0
    roots = {key: key for key in failed}  # frontier key → the failed record that blocks its chain
    while roots:
        step: dict[str, str] = {}
        for chunk in chunks(list(roots)):
            for key, upstream, status in con.execute(
                f"SELECT key, upstream_key, status FROM records WHERE upstream_key IN ({placeholders(chunk)})",
                list(chunk),
            ).fetchall():
                if status in BLOCKABLE:
                    step[key] = roots[upstream]
        for chunk in chunks(list(step)):
            con.execute(
                f"""UPDATE records SET status = 'BLOCKED', blocked_by = b.root, updated_at = ? FROM
                       (SELECT unnest(?::VARCHAR[]) AS key, unnest(?::VARCHAR[]) AS root) b
                    WHERE records.key IN ({placeholders(chunk)}) AND records.key = b.key""",
                [now, list(chunk), [step[k] for k in chunk], *chunk],
            )
        total += len(step)
        roots = step
    return total


def _unblock(con: duckdb.DuckDBPyConnection, now: datetime) -> None:
    """Records BLOCKED by a record that is no longer failed go back to PENDING."""
    while True:
        changed = con.execute(
            f"""UPDATE records SET status = 'PENDING', blocked_by = NULL, updated_at = ?
               FROM records u
               WHERE records.upstream_key = u.key AND records.status = 'BLOCKED'
                 AND u.status NOT IN {sql_list(BLOCKING)}
               RETURNING records.key""",
            [now],
        ).fetchall()
        if not changed:
            return
