"""The store's schema as numbered migrations, applied in order to any file that lacks them.

`schema_migrations` says which ran. A file made before migrations were numbered has none recorded:
migration 1 is that schema written idempotently (IF NOT EXISTS), so such a file takes it as a no-op
and then the rest. Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

import duckdb

_V1_BASE = """
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

# The evaluation tables (`ocr-assets eval`), created on first use before they were numbered here.
_V2_EVAL = """
CREATE TABLE IF NOT EXISTS eval_runs (
    run_id VARCHAR NOT NULL, version VARCHAR NOT NULL, engine VARCHAR, model VARCHAR,
    created_at TIMESTAMP NOT NULL, pages INTEGER, valid_pages INTEGER, schema_valid_rate DOUBLE,
    cer DOUBLE, mean_page_cer DOUBLE, course_precision DOUBLE, course_recall DOUBLE, course_f1 DOUBLE,
    attempts INTEGER, prompt_tokens_per_page DOUBLE, output_tokens_per_page DOUBLE, cost_per_page DOUBLE,
    total_cost_usd DOUBLE, failures VARCHAR, experiment VARCHAR, work_dir VARCHAR,
    PRIMARY KEY (run_id, version)
);
CREATE TABLE IF NOT EXISTS eval_pages (
    run_id VARCHAR NOT NULL, version VARCHAR NOT NULL, key VARCHAR NOT NULL, valid BOOLEAN, status VARCHAR,
    error_type VARCHAR, cer DOUBLE, ref_chars INTEGER, edits INTEGER, tp INTEGER, fp INTEGER, fn INTEGER,
    attempts INTEGER, prompt_tokens BIGINT, output_tokens BIGINT, cached_tokens BIGINT, cost_usd DOUBLE,
    PRIMARY KEY (run_id, version, key)
);
"""

# Point lookups for the per-batch paths, so their cost stays flat as the corpus grows: DuckDB probes
# an ART index for `col = ?` and `col IN (?, ...)` on one column. Only columns never updated after
# insert are indexed (an UPDATE of an indexed column is a delete + insert in DuckDB).
_V3_LOOKUP_INDEXES = """
CREATE INDEX IF NOT EXISTS records_upstream_key ON records (upstream_key);
CREATE INDEX IF NOT EXISTS batch_records_batch_id ON batch_records (batch_id);
CREATE INDEX IF NOT EXISTS failure_log_key ON failure_log (key);
"""

# Which worker ran an inference when that was not this process (a Ray actor: "host/node id").
_V4_INFERENCE_WORKER = """
ALTER TABLE inference_log ADD COLUMN IF NOT EXISTS worker VARCHAR;
"""

# A success's output is logged by reference: the file it was written to and the sha256 of its bytes.
# The file is the one copy (and a batch's raw answers stay in its archive); `output_json`, a second
# copy of every output (~80 % of the store file, ~15 % of ingest time), keeps only older rows.
_V5_OUTPUT_BY_REFERENCE = """
ALTER TABLE inference_log ADD COLUMN IF NOT EXISTS output_path VARCHAR;
ALTER TABLE inference_log ADD COLUMN IF NOT EXISTS output_sha256 VARCHAR;
"""

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, _V1_BASE),
    (2, _V2_EVAL),
    (3, _V3_LOOKUP_INDEXES),
    (4, _V4_INFERENCE_WORKER),
    (5, _V5_OUTPUT_BY_REFERENCE),
)
LATEST = MIGRATIONS[-1][0]


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply every migration the file lacks, each in its own transaction; returns those applied."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, sql in MIGRATIONS:
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        applied.append(version)
    return applied
