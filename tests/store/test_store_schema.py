"""Numbered migrations: a store file from before them opens, keeps its rows and gains what it lacks."""

from datetime import datetime
from pathlib import Path

import duckdb

from ocr_assets.store import RecordStatus, RecordStore
from ocr_assets.store.schema import LATEST, MIGRATIONS


def _old_file(path: Path) -> None:
    """A file as the single-module store made it: the base schema, no migration table, no indexes,
    no eval tables, and an inference_log from before its three late columns."""
    con = duckdb.connect(str(path))
    try:
        base = "\n".join(line for line in MIGRATIONS[0][1].splitlines() if not line.startswith("ALTER TABLE"))
        con.execute(base.replace("    error_class VARCHAR,\n    traceback VARCHAR,\n    prompt_template_hash VARCHAR\n",
                                 "    rowid_pad INTEGER\n"))
        now = datetime(2026, 1, 1)
        con.execute(
            "INSERT INTO records (key, book, state, school, year, page, image_path, allow_list_path, status, "
            "attempts, created_at, updated_at) VALUES ('ca:x:1900:1', 'ca:x:1900', 'ca', 'x', 1900, 1, 'i', 'a', "
            "'SUCCESS', 1, ?, ?)", [now, now])
        con.execute("INSERT INTO kv VALUES ('kept', 'yes')")
    finally:
        con.close()


def test_a_store_file_from_before_numbered_migrations_opens_and_migrates(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    _old_file(db)
    store = RecordStore(db)
    record = store.get("ca:x:1900:1")
    assert record is not None and record.status == RecordStatus.SUCCESS and record.attempts == 1
    assert store.kv_get("kept") == "yes"
    applied = store.query("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in applied] == [v for v, _ in MIGRATIONS]
    columns = {r["column_name"] for r in store.query(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'inference_log'")}
    assert {"error_class", "traceback", "prompt_template_hash", "worker", "output_path", "output_sha256"} <= columns
    indexes = {r["index_name"] for r in store.query("SELECT index_name FROM duckdb_indexes()")}
    assert {"records_upstream_key", "batch_records_batch_id"} <= indexes
    assert store.evaluations() == []  # the eval tables exist now


def test_migrations_run_once_and_are_numbered_in_order(tmp_path: Path) -> None:
    versions = [v for v, _ in MIGRATIONS]
    assert versions == list(range(1, LATEST + 1))
    store = RecordStore(tmp_path / "s.duckdb")
    store.kv_set("a", "1")
    RecordStore(store.path).kv_set("b", "2")  # a second open applies nothing again
    assert store.query("SELECT count(*) AS n FROM schema_migrations")[0]["n"] == LATEST
