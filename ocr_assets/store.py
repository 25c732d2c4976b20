"""The record store: DuckDB file holding every record's state, batches, failures, costs and inferences.

DuckDB allows one read-write process per file and no readers beside it, while Dagster runs, the
daemon's sensors and the CLI are separate processes. So every access is a short transaction under
an exclusive OS file lock (`<db>.lock`), with the connection leased between close-together calls
and handed back when idle (`store_lease`); see DESIGN.md for the measurement that rejected "retry
on lock error" alone. Transitions are guarded SQL: a record only moves from the
states its transition allows, and results only apply to the batch the record is in.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
from pydantic import BaseModel, Field
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from ocr_assets.store_lease import lease_for


class RecordStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    RETRYABLE_FAILURE = "RETRYABLE_FAILURE"
    FATAL_FAILURE = "FATAL_FAILURE"
    BLOCKED = "BLOCKED"


TERMINAL_STATUSES = (RecordStatus.SUCCESS, RecordStatus.FATAL_FAILURE, RecordStatus.BLOCKED)


class BatchState(StrEnum):
    SUBMITTING = "SUBMITTING"  # claimed locally, remote create not yet confirmed
    HELD = "HELD"  # remote create refused for capacity (429); retried later, no attempt counted
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    INGESTED = "INGESTED"


ACTIVE_BATCH_STATES = (BatchState.SUBMITTING, BatchState.HELD, BatchState.PENDING, BatchState.RUNNING)
REMOTE_TERMINAL_STATES = (BatchState.SUCCEEDED, BatchState.FAILED, BatchState.CANCELLED, BatchState.EXPIRED)


class StoreError(RuntimeError):
    """The record store could not complete an operation."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key VARCHAR PRIMARY KEY,
    book VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    school VARCHAR NOT NULL,
    year INTEGER NOT NULL,
    page INTEGER NOT NULL,
    image_path VARCHAR NOT NULL,
    allow_list_path VARCHAR NOT NULL,
    upstream_key VARCHAR,
    chain_remaining INTEGER NOT NULL DEFAULT 0,
    -- Denormalised "upstream is SUCCESS" so runnable() is one scan, not a 1M x 1M join.
    upstream_done BOOLEAN NOT NULL DEFAULT false,
    status VARCHAR NOT NULL DEFAULT 'PENDING',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error VARCHAR,
    error_class VARCHAR,
    error_type VARCHAR,
    blocked_by VARCHAR,
    prompt_name VARCHAR,
    prompt_version VARCHAR,
    prompt_vars_hash VARCHAR,
    model VARCHAR,
    engine VARCHAR,
    batch_id VARCHAR,
    batch_index INTEGER,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE NOT NULL DEFAULT 0,
    output_path VARCHAR,
    output_sha256 VARCHAR,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id VARCHAR PRIMARY KEY,
    remote_name VARCHAR,
    engine VARCHAR NOT NULL,
    model VARCHAR,
    state VARCHAR NOT NULL,
    record_count INTEGER NOT NULL,
    estimated_tokens BIGINT NOT NULL DEFAULT 0,
    owner VARCHAR,
    error VARCHAR,
    detail VARCHAR,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    ingested_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS batch_records (
    batch_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    batch_index INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    outcome VARCHAR,
    PRIMARY KEY (batch_id, key)
);
CREATE SEQUENCE IF NOT EXISTS failure_seq;
CREATE TABLE IF NOT EXISTS failure_log (
    id BIGINT PRIMARY KEY DEFAULT nextval('failure_seq'),
    key VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,
    batch_id VARCHAR,
    engine VARCHAR,
    error_class VARCHAR NOT NULL,
    error_type VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    traceback VARCHAR,
    raw_response VARCHAR,
    prompt_name VARCHAR,
    prompt_version VARCHAR,
    prompt_vars_hash VARCHAR,
    model VARCHAR,
    generation_config VARCHAR,
    created_at TIMESTAMP NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS ledger_seq;
CREATE TABLE IF NOT EXISTS cost_ledger (
    id BIGINT PRIMARY KEY DEFAULT nextval('ledger_seq'),
    key VARCHAR NOT NULL,
    batch_id VARCHAR,
    engine VARCHAR NOT NULL,
    pricing_mode VARCHAR NOT NULL,
    model VARCHAR,
    prompt_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cost_usd DOUBLE NOT NULL,
    realtime_cost_usd DOUBLE NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS inference_seq;
CREATE TABLE IF NOT EXISTS inference_log (
    id BIGINT PRIMARY KEY DEFAULT nextval('inference_seq'),
    key VARCHAR NOT NULL,
    book VARCHAR,
    page INTEGER,
    attempt INTEGER,
    batch_id VARCHAR,
    engine VARCHAR,
    model VARCHAR,
    success BOOLEAN NOT NULL,
    prompt_name VARCHAR,
    prompt_version VARCHAR,
    prompt_vars_hash VARCHAR,
    -- Long free text (the output is ~10 KB a record): zstd checkpoints several times faster than the
    -- default dictionary/FSST analysis and stores smaller. Files created before keep the default.
    rendered_prompt VARCHAR USING COMPRESSION zstd,
    previous_context VARCHAR USING COMPRESSION zstd,
    generation_config VARCHAR,
    output_json VARCHAR USING COMPRESSION zstd,
    error_type VARCHAR,
    error_message VARCHAR,
    raw_response VARCHAR USING COMPRESSION zstd,
    prompt_tokens BIGINT,
    output_tokens BIGINT,
    cached_tokens BIGINT,
    cost_usd DOUBLE,
    latency_s DOUBLE,
    created_at TIMESTAMP NOT NULL,
    error_class VARCHAR,
    traceback VARCHAR,
    prompt_template_hash VARCHAR
);
-- Columns added after the first release (CREATE above has them; older files get them here).
ALTER TABLE inference_log ADD COLUMN IF NOT EXISTS error_class VARCHAR;
ALTER TABLE inference_log ADD COLUMN IF NOT EXISTS traceback VARCHAR;
ALTER TABLE inference_log ADD COLUMN IF NOT EXISTS prompt_template_hash VARCHAR;
CREATE SEQUENCE IF NOT EXISTS report_seq;
CREATE TABLE IF NOT EXISTS plan_report (
    id BIGINT PRIMARY KEY DEFAULT nextval('report_seq'),
    plan_run VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS audit_seq;
CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'),
    action VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    name VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
"""


class PlannedRecord(BaseModel):
    """A plan node as the store receives it."""

    key: str
    book: str
    state: str
    school: str
    year: int
    page: int
    image_path: str
    allow_list_path: str
    upstream_key: str | None = None
    chain_remaining: int = 0


class RecordRow(PlannedRecord):
    """One record as stored: its plan node plus its state."""

    upstream_done: bool = False
    status: RecordStatus
    attempts: int = 0
    last_error: str | None = None
    error_class: str | None = None
    error_type: str | None = None
    blocked_by: str | None = None
    prompt_name: str | None = None
    prompt_version: str | None = None
    prompt_vars_hash: str | None = None
    model: str | None = None
    engine: str | None = None
    batch_id: str | None = None
    batch_index: int | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    output_path: str | None = None
    output_sha256: str | None = None
    created_at: datetime
    updated_at: datetime


class BatchRow(BaseModel):
    batch_id: str
    remote_name: str | None = None
    engine: str
    model: str | None = None
    state: BatchState
    record_count: int
    estimated_tokens: int = 0
    owner: str | None = None
    error: str | None = None
    detail: str | None = None
    created_at: datetime
    updated_at: datetime
    ingested_at: datetime | None = None


class BatchTransition(NamedTuple):
    """A batch state change observed remotely: `batch_id` goes from `seen` to `state`."""

    batch_id: str
    seen: BatchState
    state: BatchState


PLAN_COLUMNS = tuple(PlannedRecord.model_fields)
_INSERT_CHUNK = 100_000


class ClaimItem(BaseModel):
    """A record going into a batch (or a synchronous run), with the prompt it will be sent."""

    key: str
    batch_index: int
    prompt_name: str
    prompt_version: str
    prompt_vars_hash: str


class RecordOutcome(BaseModel):
    """What happened to one record in one attempt; `apply_outcomes` writes it transactionally."""

    key: str
    success: bool
    output_path: str | None = None
    output_sha256: str | None = None
    output_json: str | None = None
    error_class: str | None = None  # "retryable" | "fatal"
    error_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    raw_response: str | None = None
    model: str = ""
    engine: str = ""
    pricing_mode: str = "local"
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    realtime_cost_usd: float = 0.0
    latency_s: float | None = None
    rendered_prompt: str | None = None
    prompt_template_hash: str | None = None
    previous_context: dict | None = None
    generation_config: dict | None = None


class ApplySummary(BaseModel):
    applied: list[str] = Field(default_factory=list)
    succeeded: list[str] = Field(default_factory=list)
    retryable: list[str] = Field(default_factory=list)
    fatal: list[str] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)  # not RUNNING in this batch (stale or replayed)
    blocked: int = 0


# Skip extension auto-loading work the store never needs.
# Closing checkpoints, and each ingest transaction lands as its own small row group; vacuum would
# merge it into its neighbours at every checkpoint, recompressing them again and again (20k-record
# ingest bench: 11 s of checkpoints → 4 s without). The cost: deleted rows' space is not compacted.
_DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                  "max_vacuum_tasks": 0}


class _LockConflict(Exception):
    pass


def _is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflict" in text or "could not set lock" in text)


class RecordStore:
    """Every access is one transaction under the store's exclusive file lock (see `store_lease`)."""

    def __init__(self, path: str | Path, *, max_attempts: int = 3):
        self.path = Path(path)
        self.max_attempts = max_attempts
        self._schema_ready = False

    # -- connection management -------------------------------------------------------------

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store's lock with the database closed (file-level work: backup, wipe)."""
        with lease_for(self.path).use() as lease:
            try:
                lease.acquire()
                lease.close_connection()
                yield
            finally:
                lease.release()

    def copy_to(self, target: str | Path) -> Path:
        """A consistent copy of the database file (and a WAL a crash left), taken under the lock."""
        with self.exclusive():
            return copy_database_files(self.path, Path(target))

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive connection; everything inside runs in one transaction, committed on exit."""
        with lease_for(self.path).use() as lease:
            keep = False
            try:
                lease.acquire()
                con = lease.connection(self._open)
                if not self._schema_ready:
                    con.execute(_SCHEMA)
                    self._schema_ready = True
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
                keep = True  # after any failure the connection is closed, not trusted for the next call
            finally:
                lease.done(keep=keep)

    # Another program (a user's duckdb shell) may hold the file without our lock: retry briefly.
    @retry(
        retry=retry_if_exception_type(_LockConflict),
        stop=stop_after_attempt(8),
        wait=wait_exponential_jitter(initial=0.05, max=2.0),
        reraise=True,
    )
    def _open_retrying(self) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(self.path), config=_DUCKDB_CONFIG)
        except duckdb.IOException as exc:
            if _is_lock_conflict(exc):
                raise _LockConflict(str(exc)) from exc
            raise

    def _open(self) -> duckdb.DuckDBPyConnection:
        try:
            return self._open_retrying()
        except _LockConflict as exc:
            raise StoreError(f"record store {self.path} is locked by another program: {exc}") from None

    def init(self) -> None:
        with self.connect():
            pass

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
                plan_nodes = pa.table(  # noqa: F841 - referenced by name in SQL
                    {name: pa.array([row[i] for row in chunk], type=types.get(name, pa.string()))
                     for i, name in enumerate(columns)}
                )
                con.execute(
                    f"INSERT INTO records ({', '.join(columns)}, created_at, updated_at) "
                    f"SELECT {', '.join(columns)}, ?, ? FROM plan_nodes ON CONFLICT DO NOTHING",
                    [now, now],
                )
        return len(nodes)

    def add_plan_report(self, plan_run: str, entries: Sequence[tuple[str, str]]) -> None:
        if not entries:
            return
        now = utcnow()
        with self.connect() as con:
            con.executemany(
                "INSERT INTO plan_report (plan_run, path, reason, created_at) VALUES (?, ?, ?, ?)",
                [(plan_run, path, reason, now) for path, reason in entries],
            )

    def plan_report(self, plan_run: str | None = None) -> list[tuple[str, str, str]]:
        with self.connect() as con:
            if plan_run is None:
                plan_run = (con.execute("SELECT max(plan_run) FROM plan_report").fetchone() or [None])[0]
            return con.execute(
                "SELECT plan_run, path, reason FROM plan_report WHERE plan_run = ? ORDER BY id", [plan_run]
            ).fetchall()

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

        Longest remaining chain first, so long chains start early and the makespan shrinks.
        `require_upstream=False` (context from a local OCR pass, not the upstream output) drops the
        upstream-SUCCESS condition; a BLOCKED record stays blocked either way.
        """
        params: list[Any] = [self.max_attempts, not require_upstream]
        book_filter = ""
        if books is not None:
            book_filter = "AND book IN (SELECT unnest(?))"
            params.append(list(books))
        params.append(limit)
        with self.connect() as con:
            # Top-N on narrow integer columns first, then fetch the full rows: sorting whole rows
            # (or by varchar) over a million records costs seconds. rowid order = plan order.
            cur = con.execute(
                f"""
                SELECT r.* FROM records r JOIN (
                    SELECT rowid AS rid, chain_remaining AS rank FROM records
                    WHERE status IN ('PENDING', 'RETRYABLE_FAILURE') AND attempts < ?
                      AND (upstream_key IS NULL OR upstream_done OR ?)
                      {book_filter}
                    ORDER BY chain_remaining DESC, rowid
                    LIMIT ?
                ) top ON r.rowid = top.rid
                ORDER BY top.rank DESC, top.rid
                """,
                params,
            )
            return _rows(cur, RecordRow)

    def get(self, key: str) -> RecordRow | None:
        with self.connect() as con:
            found = _rows(con.execute("SELECT * FROM records WHERE key = ?", [key]), RecordRow)
        return found[0] if found else None

    def get_many(self, keys: Sequence[str]) -> dict[str, RecordRow]:
        if not keys:
            return {}
        with self.connect() as con:
            rows = _rows(
                con.execute("SELECT * FROM records WHERE key IN (SELECT unnest(?))", [list(keys)]), RecordRow
            )
        return {row.key: row for row in rows}

    def records(
        self,
        *,
        status: RecordStatus | str | None = None,
        book: str | None = None,
        batch_id: str | None = None,
        limit: int | None = None,
    ) -> list[RecordRow]:
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(str(status))
        if book is not None:
            where.append("book = ?")
            params.append(book)
        if batch_id is not None:
            where.append("batch_id = ?")
            params.append(batch_id)
        sql = "SELECT * FROM records" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY book, page"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.connect() as con:
            return _rows(con.execute(sql, params), RecordRow)

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
        params: list[Any] = [self.max_attempts]
        where = ""
        if books is not None:
            where = "AND book IN (SELECT unnest(?))"
            params.append(list(books))
        with self.connect() as con:
            return con.execute(
                f"""SELECT count(*) FROM records WHERE
                    (status IN ('PENDING', 'RUNNING') OR (status = 'RETRYABLE_FAILURE' AND attempts < ?)) {where}""",
                params,
            ).fetchone()[0]

    # -- batches ---------------------------------------------------------------------------

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
        with self.connect() as con:
            # One guarded statement: only records still claimable move, and it says which did. The
            # claim is a relation built from parameter lists (no pyarrow import on the submit path).
            eligible = [
                r[0]
                for r in con.execute(
                    f"""
                    WITH claim_table AS (
                        SELECT unnest(?::VARCHAR[]) AS key, unnest(?::INTEGER[]) AS batch_index,
                               unnest(?::VARCHAR[]) AS prompt_name, unnest(?::VARCHAR[]) AS prompt_version,
                               unnest(?::VARCHAR[]) AS prompt_vars_hash)
                    UPDATE records SET status = 'RUNNING', batch_id = ?, batch_index = c.batch_index,
                        attempts = records.attempts + {increment}, engine = ?, model = ?,
                        prompt_name = c.prompt_name, prompt_version = c.prompt_version,
                        prompt_vars_hash = c.prompt_vars_hash, updated_at = ?
                    FROM claim_table c
                    WHERE records.key = c.key
                      AND records.status IN ('PENDING', 'RETRYABLE_FAILURE') AND records.attempts < ?
                      AND (records.upstream_key IS NULL OR records.upstream_done OR ?)
                    RETURNING records.key
                    """,
                    [[i.key for i in items], [i.batch_index for i in items], [i.prompt_name for i in items],
                     [i.prompt_version for i in items], [i.prompt_vars_hash for i in items],
                     batch_id, engine, model, now, self.max_attempts, not require_upstream],
                ).fetchall()
            ]
            if not eligible:
                return []
            con.execute(
                """
                INSERT INTO batch_records (batch_id, key, batch_index, attempt)
                SELECT ?, r.key, r.batch_index, r.attempts + ? FROM records r
                WHERE r.key IN (SELECT unnest(?))
                """,
                [batch_id, 0 if count_attempt else 1, eligible],
            )
            con.execute(
                """INSERT INTO batches (batch_id, remote_name, engine, model, state, record_count,
                       estimated_tokens, owner, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [batch_id, remote_name, engine, model, str(state), len(eligible), estimated_tokens, owner, now, now],
            )
        return eligible

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
                con.execute(
                    "UPDATE records SET attempts = attempts + 1, updated_at = ? "
                    "WHERE batch_id = ? AND status = 'RUNNING'",
                    [now, batch_id],
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

    def set_batch_states(self, transitions: Sequence[BatchTransition]) -> list[str]:
        """Apply many observed state changes in one transaction; returns the batch ids that moved.

        Each change is guarded: a batch moves only while it is still in the state its caller saw,
        so a batch that moved on meanwhile (ingested, cancelled, released elsewhere) is left alone.
        """
        latest = {t.batch_id: t for t in transitions}  # UPDATE ... FROM must match each batch once
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
            rows = _rows(
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
            return _rows(con.execute(sql, params), BatchRow)

    def active_batches(self) -> list[BatchRow]:
        return self.batches(states=ACTIVE_BATCH_STATES)

    def batch_members(self, batch_id: str) -> list[tuple[str, int, int]]:
        """(key, within-batch index, attempt) for every record sent in the batch."""
        with self.connect() as con:
            return con.execute(
                "SELECT key, batch_index, attempt FROM batch_records WHERE batch_id = ? ORDER BY batch_index",
                [batch_id],
            ).fetchall()

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
        could not answer any page, e.g. a wrong endpoint).
        """
        now = utcnow()
        with self.connect() as con:
            keys = [
                r[0]
                for r in con.execute(
                    "SELECT key FROM records WHERE batch_id = ? AND status = 'RUNNING'", [batch_id]
                ).fetchall()
            ]
            if keys and count_failure:
                con.execute(
                    """INSERT INTO failure_log (key, attempt, batch_id, engine, error_class, error_type,
                           message, prompt_name, prompt_version, prompt_vars_hash, model, created_at)
                       SELECT key, attempts, batch_id, engine, 'retryable', ?, ?, prompt_name,
                           prompt_version, prompt_vars_hash, model, ?
                       FROM records WHERE batch_id = ? AND status = 'RUNNING'""",
                    [error_type, error, now, batch_id],
                )
                con.execute(
                    """UPDATE records SET
                          status = CASE WHEN attempts >= ? THEN 'FATAL_FAILURE' ELSE 'RETRYABLE_FAILURE' END,
                          last_error = CASE WHEN attempts >= ?
                              THEN 'retries exhausted after ' || attempts || ' attempts: ' || ? ELSE ? END,
                          error_class = 'retryable', error_type = ?,
                          batch_id = NULL, batch_index = NULL, updated_at = ?
                        WHERE batch_id = ? AND status = 'RUNNING'""",
                    [self.max_attempts, self.max_attempts, error, error, error_type, now, batch_id],
                )
                _propagate_blocked(con, now)
            elif keys:
                con.execute(
                    """UPDATE records SET attempts = greatest(attempts - ?, 0),
                          status = CASE WHEN attempts - ? <= 0 THEN 'PENDING' ELSE 'RETRYABLE_FAILURE' END,
                          batch_id = NULL, batch_index = NULL, updated_at = ?
                        WHERE batch_id = ? AND status = 'RUNNING'""",
                    [int(refund_attempt), int(refund_attempt), now, batch_id],
                )
            con.execute(
                "UPDATE batch_records SET outcome = ? WHERE batch_id = ? AND outcome IS NULL",
                ["released:" + error_type, batch_id],
            )
            con.execute(
                "UPDATE batches SET state = ?, error = ?, updated_at = ? WHERE batch_id = ?",
                [str(state), error, now, batch_id],
            )
        return keys

    # -- outcomes --------------------------------------------------------------------------

    def running_keys(self, batch_id: str) -> set[str]:
        with self.connect() as con:
            return {
                r[0]
                for r in con.execute(
                    "SELECT key FROM records WHERE batch_id = ? AND status = 'RUNNING'", [batch_id]
                ).fetchall()
            }

    def apply_outcomes(self, batch_id: str, outcomes: Sequence[RecordOutcome]) -> ApplySummary:
        """Apply one batch's results in one transaction; only records RUNNING in this batch change.

        A replayed or stale result (record already moved on) is reported as ignored, so re-ingesting
        a batch changes nothing.
        """
        summary = ApplySummary()
        if not outcomes:
            return summary
        now = utcnow()
        seen: set[str] = set()
        unique: list[RecordOutcome] = []
        for outcome in outcomes:  # first outcome per key wins
            if outcome.key not in seen:
                seen.add(outcome.key)
                unique.append(outcome)
        with self.connect() as con:
            running = {
                r[0]: (r[1], r[2], r[3], r[4], r[5], r[6])
                for r in con.execute(
                    """SELECT key, attempts, prompt_name, prompt_version, prompt_vars_hash, book, page
                       FROM records WHERE batch_id = ? AND status = 'RUNNING'""",
                    [batch_id],
                ).fetchall()
            }
            rows: list[tuple[RecordOutcome, tuple[Any, ...], str, str | None]] = []
            for o in unique:
                if o.key not in running:
                    summary.ignored.append(o.key)
                    continue
                attempts = running[o.key][0]
                if o.success:
                    status = RecordStatus.SUCCESS
                    summary.succeeded.append(o.key)
                elif o.error_class == "fatal":
                    status = RecordStatus.FATAL_FAILURE
                    summary.fatal.append(o.key)
                elif attempts >= self.max_attempts:
                    status = RecordStatus.FATAL_FAILURE
                    summary.fatal.append(o.key)
                else:
                    status = RecordStatus.RETRYABLE_FAILURE
                    summary.retryable.append(o.key)
                message = o.message
                if not o.success and o.error_class != "fatal" and status == RecordStatus.FATAL_FAILURE:
                    message = f"retries exhausted after {attempts} attempts: {o.message}"
                rows.append((o, running[o.key], str(status), None if o.success else message))
                summary.applied.append(o.key)
            if rows:
                # Every write below is one set-based statement over this table: executemany runs a
                # statement per row, which cost seconds per 500-record batch.
                with _registered(con, "outcome_rows", _outcome_table(rows)):
                    con.execute(
                        """UPDATE records SET status = u.status, last_error = u.message,
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
                           WHERE records.key = u.key AND records.batch_id = ? AND records.status = 'RUNNING'""",
                        [now, batch_id],
                    )
                    if summary.succeeded:
                        con.execute(
                            "UPDATE records SET upstream_done = true "
                            "WHERE upstream_key IN (SELECT key FROM outcome_rows WHERE success)"
                        )
                    con.execute(
                        """UPDATE batch_records SET outcome = u.status FROM outcome_rows u
                           WHERE batch_records.batch_id = ? AND batch_records.key = u.key""",
                        [batch_id],
                    )
                    if len(summary.applied) > len(summary.succeeded):
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
                               generation_config, output_json, error_type, error_message, raw_response,
                               prompt_tokens, output_tokens, cached_tokens, cost_usd, latency_s, created_at,
                               error_class, traceback, prompt_template_hash)
                           SELECT key, book, page, attempt, ?, engine, model, success, prompt_name, prompt_version,
                               prompt_vars_hash, rendered_prompt, previous_context, generation_config, output_json,
                               error_type, message, raw_response, prompt_tokens, output_tokens, cached_tokens,
                               cost_usd, latency_s, ?,
                               CASE WHEN success THEN NULL ELSE coalesce(error_class, 'retryable') END,
                               traceback, prompt_template_hash
                           FROM outcome_rows""",
                        [batch_id, now],
                    )
            summary.blocked = _propagate_blocked(con, now) if summary.fatal else 0
        return summary

    # -- operations ------------------------------------------------------------------------

    def failures(self, key: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM failure_log"
        params: list[Any] = []
        if key is not None:
            sql += " WHERE key = ?"
            params.append(key)
        sql += " ORDER BY id"
        with self.connect() as con:
            cur = con.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a read query and return dict rows (for reports and tests)."""
        with self.connect() as con:
            cur = con.execute(sql, list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def audit(self, action: str, detail: dict[str, Any]) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT INTO audit_log (action, detail, created_at) VALUES (?, ?, ?)",
                [action, json.dumps(detail, default=str), utcnow()],
            )

    def reset_for_retry(self, keys: Sequence[str], *, reason: str) -> int:
        """Make terminal-failed or exhausted records runnable again (attempts reset), audit-logged."""
        if not keys:
            return 0
        now = utcnow()
        with self.connect() as con:
            changed = con.execute(
                """UPDATE records SET status = 'PENDING', attempts = 0, blocked_by = NULL, updated_at = ?
                   WHERE key IN (SELECT unnest(?)) AND status IN ('RETRYABLE_FAILURE', 'FATAL_FAILURE')
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

    def kv_get(self, name: str) -> str | None:
        with self.connect() as con:
            row = con.execute("SELECT value FROM kv WHERE name = ?", [name]).fetchone()
        return row[0] if row else None

    def kv_set(self, name: str, value: str) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT INTO kv (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [name, value],
            )


def copy_database_files(db: Path, target: Path) -> Path:
    """Copy a store file and a WAL a crash left; the caller holds `RecordStore.exclusive()`.

    No connection is open under that lock and closing checkpoints, so the file alone is consistent.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(db, target)
    wal = db.with_name(db.name + ".wal")
    if wal.exists():
        shutil.copy2(wal, target.with_name(target.name + ".wal"))
    return target


def _propagate_blocked(con: duckdb.DuckDBPyConnection, now: datetime) -> int:
    """Block every not-yet-run record downstream of a FATAL or BLOCKED record (chains are short)."""
    total = 0
    while True:
        changed = con.execute(
            """UPDATE records SET status = 'BLOCKED',
                   blocked_by = coalesce(u.blocked_by, u.key), updated_at = ?
               FROM records u
               WHERE records.upstream_key = u.key
                 AND u.status IN ('FATAL_FAILURE', 'BLOCKED')
                 AND records.status IN ('PENDING', 'RETRYABLE_FAILURE')
               RETURNING records.key""",
            [now],
        ).fetchall()
        if not changed:
            return total
        total += len(changed)


def _unblock(con: duckdb.DuckDBPyConnection, now: datetime) -> None:
    """Records BLOCKED by a record that is no longer failed go back to PENDING."""
    while True:
        changed = con.execute(
            """UPDATE records SET status = 'PENDING', blocked_by = NULL, updated_at = ?
               FROM records u
               WHERE records.upstream_key = u.key AND records.status = 'BLOCKED'
                 AND u.status NOT IN ('FATAL_FAILURE', 'BLOCKED')
               RETURNING records.key""",
            [now],
        ).fetchall()
        if not changed:
            return


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, name: str, table: Any) -> Iterator[None]:
    """`table` visible to SQL as `name` for the block only: a leased connection outlives the call,
    and would otherwise keep a whole batch's outcomes alive until the next ingest."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)


def _outcome_table(rows: Sequence[tuple[RecordOutcome, tuple[Any, ...], str, str | None]]) -> Any:
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
        "output_json": (text, [o.output_json for o in outcomes]),
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
        "attempt": (int32, [running[0] for _, running, _, _ in rows]),
        "prompt_name": (text, [running[1] for _, running, _, _ in rows]),
        "prompt_version": (text, [running[2] for _, running, _, _ in rows]),
        "prompt_vars_hash": (text, [running[3] for _, running, _, _ in rows]),
        "book": (text, [running[4] for _, running, _, _ in rows]),
        "page": (int32, [running[5] for _, running, _, _ in rows]),
    }
    return pa.table({name: pa.array(values, type=kind) for name, (kind, values) in columns.items()})


def _rows(cursor: duckdb.DuckDBPyConnection, model: type[BaseModel]) -> list[Any]:
    names = [d[0] for d in cursor.description]
    return [model.model_validate(dict(zip(names, row))) for row in cursor.fetchall()]
