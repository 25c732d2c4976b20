"""The store's logs and side tables: failures, inferences, costs, audit, plan reports, evaluations, kv."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocr_assets.store.core import StoreBase, dict_rows, where_equal
from ocr_assets.store.models import utcnow
from ocr_assets.store.session import copy_database_files

_FAILURES = """
SELECT f.*, r.status AS current_status, r.book AS book
FROM failure_log f LEFT JOIN records r ON r.key = f.key
{where}
ORDER BY f.id
"""


class LogsMixin(StoreBase):
    # -- failures and inferences -----------------------------------------------------------

    def failures(self, key: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM failure_log", []
        if key is not None:
            sql, params = sql + " WHERE key = ?", [key]
        with self.connect() as con:
            return dict_rows(con.execute(sql + " ORDER BY id", params))

    def failures_with_status(self, *, book: str | None = None, current_only: bool = False) -> list[dict[str, Any]]:
        """failure_log rows (oldest first) with the record's current status and book.

        `current_only`: only each still-failed record's latest failure (what is broken now).
        """
        where, params = [], []
        if book is not None:
            where.append("r.book = ?")
            params.append(book)
        if current_only:
            where.append("r.status IN ('RETRYABLE_FAILURE', 'FATAL_FAILURE')")
            where.append("f.id = (SELECT max(g.id) FROM failure_log g WHERE g.key = f.key)")
        with self.connect() as con:
            return dict_rows(con.execute(_FAILURES.format(where="WHERE " + " AND ".join(where) if where else ""),
                                         params))

    def inferences(self, *, key: str | None = None, book: str | None = None,
                   limit: int | None = None) -> list[dict[str, Any]]:
        """inference_log rows, oldest first (the newest `limit` when given)."""
        where, params = where_equal(key=key, book=book)
        sql = "SELECT * FROM inference_log" + where
        if limit is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT {int(limit)})"
        with self.connect() as con:
            return dict_rows(con.execute(sql + " ORDER BY id", params))

    def last_logged_prompt(self, key: str, version: str, vars_hash: str) -> dict[str, Any] | None:
        """The rendered prompt, template hash and generation settings (with the context source) last
        logged for the record with that prompt identity."""
        with self.connect() as con:
            rows = dict_rows(con.execute(
                """SELECT rendered_prompt, prompt_template_hash, generation_config FROM inference_log
                   WHERE key = ? AND prompt_version = ? AND prompt_vars_hash = ? ORDER BY id DESC LIMIT 1""",
                [key, version, vars_hash]))
        return rows[0] if rows else None

    def record_attempts(self, key: str) -> list[dict[str, Any]]:
        """One row per batch the record was sent in (its attempts), oldest first."""
        with self.connect() as con:
            return dict_rows(con.execute(
                """SELECT br.attempt, br.batch_id, br.batch_index, br.outcome, b.remote_name, b.engine, b.model,
                          b.state AS batch_state, b.error AS batch_error, b.created_at, b.ingested_at
                   FROM batch_records br LEFT JOIN batches b ON b.batch_id = br.batch_id
                   WHERE br.key = ? ORDER BY b.created_at, br.attempt""",
                [key]))

    # -- costs -----------------------------------------------------------------------------

    def costs(self, key: str) -> list[dict[str, Any]]:
        with self.connect() as con:
            return dict_rows(con.execute("SELECT * FROM cost_ledger WHERE key = ? ORDER BY id", [key]))

    def cost_totals(self) -> tuple[float, float]:
        """(billed, real-time list price) over every attempt in the cost ledger."""
        with self.connect() as con:
            cost, listed = con.execute(
                "SELECT coalesce(sum(cost_usd), 0), coalesce(sum(realtime_cost_usd), 0) FROM cost_ledger").fetchone()
        return float(cost), float(listed)

    # -- audit -----------------------------------------------------------------------------

    def audit(self, action: str, detail: dict[str, Any]) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT INTO audit_log (action, detail, created_at) VALUES (?, ?, ?)",
                [action, json.dumps(detail, default=str), utcnow()],
            )

    def audit_entries(self, key: str) -> list[dict[str, Any]]:
        """Audit entries whose detail names the record."""
        with self.connect() as con:
            return dict_rows(con.execute("SELECT * FROM audit_log WHERE contains(detail, ?) ORDER BY id",
                                         [json.dumps(key)]))

    # -- plan reports ----------------------------------------------------------------------

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

    # -- evaluations -----------------------------------------------------------------------

    def save_evaluation(self, runs: Sequence[tuple[Any, ...]], pages: Sequence[tuple[Any, ...]]) -> None:
        """One evaluation's `eval_runs` and `eval_pages` rows (in table column order), in one transaction."""
        with self.connect() as con:
            if runs:
                con.executemany(f"INSERT INTO eval_runs VALUES ({', '.join('?' * len(runs[0]))})", list(runs))
            if pages:
                con.executemany(f"INSERT INTO eval_pages VALUES ({', '.join('?' * len(pages[0]))})", list(pages))

    def evaluations(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Stored evaluation summaries (one row per run and version), newest run first."""
        where = "WHERE run_id = ?" if run_id else ""
        with self.connect() as con:
            return dict_rows(con.execute(f"SELECT * FROM eval_runs {where} ORDER BY created_at DESC, version",
                                         [run_id] if run_id else []))

    # -- kv --------------------------------------------------------------------------------

    def kv_get(self, name: str) -> str | None:
        with self.connect() as con:
            row = con.execute("SELECT value FROM kv WHERE name = ?", [name]).fetchone()
        return row[0] if row else None

    def kv_set(self, name: str, value: str) -> None:
        self.kv_set_many({name: value})

    def kv_set_many(self, values: dict[str, str]) -> None:
        if not values:
            return
        with self.connect() as con:
            con.executemany(
                "INSERT INTO kv (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    def kv_with_prefix(self, prefix: str) -> dict[str, str]:
        with self.connect() as con:
            return dict(con.execute("SELECT name, value FROM kv WHERE starts_with(name, ?)", [prefix]).fetchall())

    # -- the whole file --------------------------------------------------------------------

    def backup_and_wipe(self, target: Path) -> dict[str, int]:
        """Copy the file to `target`, then delete every row of every table, in one hold of the lock
        (no write can land between them); returns the rows wiped per table.

        Rows are deleted rather than the file removed, so other processes keep a valid schema.
        """
        with self.session():
            with self.exclusive():
                copy_database_files(self.path, target)
            return self._delete_every_row()

    def _delete_every_row(self) -> dict[str, int]:
        with self.connect() as con:
            tables = [r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations' "
                "ORDER BY table_name").fetchall()]
            wiped: dict[str, int] = {}
            for table in tables:
                wiped[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                con.execute(f'DELETE FROM "{table}"')
        return wiped
