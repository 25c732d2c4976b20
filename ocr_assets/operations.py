"""Operating the record store: failure reports, retries, reset, record history, prompt reconstruction.

The CLI (`ocr_assets.cli.ops`) and the Dagster layer call these; nothing here prints. Every write
goes through `RecordStore` methods (or, for the file-level reset, its lock), so the guarantees of
the store — one short transaction per access, under its file lock — hold here too.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ocr_assets.core import PromptIdentity
from ocr_assets.outputs import atomic_write_text
from ocr_assets.page_requests import UPSTREAM_OUTPUT, UpstreamOutputContext, build_page_requests
from ocr_assets.prompts import PromptError, PromptRegistry
from ocr_assets.settings import Settings
from ocr_assets.store import RecordRow, RecordStatus, RecordStore


class OperationsError(ValueError):
    """An operation that cannot be done as asked (unknown key, nothing selected, ...)."""


# -- failure patterns ----------------------------------------------------------------------------

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Record and book keys first (they contain numbers that the later rules would split up).
    (re.compile(r"\b[\w.\-]+:[\w.\-]+(?: [\w.\-]+)*:\d{3,4}:\d+\b"), "<key>"),
    (re.compile(r"\b[\w.\-]+:[\w.\-]+(?: [\w.\-]+)*:\d{3,4}\b"), "<book>"),
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"(?:/[\w.\-]+){2,}/?"), "<path>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"(?<![A-Za-z_\d.])\d+(?:\.\d+)?"), "<n>"),
]


_EXHAUSTED = re.compile(r"^retries exhausted after \d+ attempts: ")


def normalise_message(message: str | None, *, max_len: int = 160) -> str:
    """A failure message with its variable parts (keys, numbers, ids, paths, quoted text) masked,
    so failures that differ only in those group together."""
    text = " ".join((message or "").split())
    text = _EXHAUSTED.sub("", text)  # group an exhausted record's last failure with its cause
    for pattern, token in _PATTERNS:
        text = pattern.sub(token, text)
    text = re.sub(r"(<\w+>)(?:[\s,]*\1)+", r"\1…", text)  # "<n>, <n>, <n>" → "<n>…"
    return text if len(text) <= max_len else text[: max_len - 1] + "…"


class FailureGroup(BaseModel):
    error_class: str
    error_type: str
    pattern: str
    failures: int  # failure_log rows
    records: int  # distinct records
    example_keys: list[str]
    example_message: str
    last_seen: datetime


def failure_rows(store: RecordStore, *, book: str | None = None, current_only: bool = False) -> list[dict[str, Any]]:
    """failure_log rows (oldest first) with the record's current status and the message pattern.

    `current_only`: only each still-failed record's latest failure (what is broken now).
    """
    rows = store.failures_with_status(book=book, current_only=current_only)
    for row in rows:
        row["pattern"] = normalise_message(row["message"])
    return rows


def group_failures(rows: Sequence[dict[str, Any]], *, examples: int = 3) -> list[FailureGroup]:
    """Group failure rows by (error class, error type, message pattern); biggest groups first."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        pattern = row.get("pattern") or normalise_message(row.get("message"))
        ident = (row["error_class"], row["error_type"], pattern)
        g = groups.setdefault(ident, {"failures": 0, "keys": [], "message": row["message"], "last": row["created_at"]})
        g["failures"] += 1
        if row["key"] not in g["keys"]:
            g["keys"].append(row["key"])
        if row["created_at"] >= g["last"]:
            g["last"], g["message"] = row["created_at"], row["message"]
    out = [
        FailureGroup(
            error_class=c, error_type=t, pattern=p, failures=g["failures"], records=len(g["keys"]),
            example_keys=g["keys"][:examples], example_message=g["message"], last_seen=g["last"],
        )
        for (c, t, p), g in groups.items()
    ]
    return sorted(out, key=lambda g: (-g.failures, g.error_class, g.error_type, g.pattern))


def failure_groups(
    store: RecordStore, *, book: str | None = None, current_only: bool = False, examples: int = 3
) -> list[FailureGroup]:
    return group_failures(failure_rows(store, book=book, current_only=current_only), examples=examples)


EXPORT_COLUMNS = [
    "id", "created_at", "key", "book", "attempt", "batch_id", "engine", "model", "error_class", "error_type",
    "pattern", "message", "current_status", "prompt_name", "prompt_version", "prompt_vars_hash",
    "generation_config", "traceback", "raw_response",
]


def export_failures_csv(
    store: RecordStore, path: Path, *, book: str | None = None, current_only: bool = False
) -> int:
    """Write every failure (with pattern and current status) as CSV, atomically; returns the row count."""
    rows = failure_rows(store, book=book, current_only=current_only)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in EXPORT_COLUMNS})
    atomic_write_text(Path(path), buffer.getvalue())
    return len(rows)


# -- retry ---------------------------------------------------------------------------------------


class RetryPlan(BaseModel):
    """Which records a retry would reset, and why the others named were left alone."""

    selected: list[str] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict)


def _is_fatal_class(record: RecordRow) -> bool:
    """A FATAL record that failed for a fatal reason (not one whose retries ran out)."""
    return record.status == RecordStatus.FATAL_FAILURE and record.error_class != "retryable"


def _retry_reason(record: RecordRow, include_fatal: bool) -> str | None:
    """Why `record` is not selected for a retry, or None when it is."""
    if record.status == RecordStatus.RETRYABLE_FAILURE:
        return None
    if record.status == RecordStatus.FATAL_FAILURE:
        if not _is_fatal_class(record) or include_fatal:
            return None
        return f"failed fatally ({record.error_type}); resending it needs --fatal --yes"
    if record.status == RecordStatus.BLOCKED:
        return f"blocked by {record.blocked_by}; retry that record and this one follows"
    return f"is {record.status}, not failed"


def plan_retry(
    store: RecordStore,
    *,
    keys: Sequence[str] = (),
    books: Sequence[str] = (),
    all_retryable: bool = False,
    include_fatal: bool = False,
) -> RetryPlan:
    """Select failed records to make runnable again.

    - `keys` / `books`: the failed records named (fatal-class ones only with `include_fatal`);
    - `all_retryable`: every RETRYABLE_FAILURE record and every record whose retries ran out
      (FATAL with error class `retryable`) — nothing else;
    - `include_fatal` alone: every record that failed fatally.
    """
    if not (keys or books or all_retryable or include_fatal):
        raise OperationsError("nothing selected: name --key, --book, --all-retryable or --fatal")
    plan = RetryPlan()
    candidates: list[RecordRow] = []
    if keys:
        found = store.get_many(list(keys))
        for key in keys:
            if key not in found:
                plan.skipped[key] = "no such record"
            else:
                candidates.append(found[key])
    for book in books:
        in_book = store.records(book=book)
        if not in_book:
            plan.skipped[book] = "no such book"
        candidates += [r for r in in_book if r.status in (RecordStatus.RETRYABLE_FAILURE, RecordStatus.FATAL_FAILURE)]
    if all_retryable or (include_fatal and not keys and not books):
        for status in (RecordStatus.RETRYABLE_FAILURE, RecordStatus.FATAL_FAILURE):
            for record in store.records(status=status):
                fatal = _is_fatal_class(record)
                if (all_retryable and not fatal) or (include_fatal and fatal):
                    candidates.append(record)
    seen: set[str] = set()
    for record in candidates:
        if record.key in seen:
            continue
        seen.add(record.key)
        reason = _retry_reason(record, include_fatal)
        if reason is None:
            plan.selected.append(record.key)
        else:
            plan.skipped[record.key] = reason
    return plan


def apply_retry(store: RecordStore, plan: RetryPlan, *, reason: str) -> int:
    """Reset the selected records' attempts (audit-logged by the store); returns how many changed."""
    return store.reset_for_retry(plan.selected, reason=reason) if plan.selected else 0


# -- reset ---------------------------------------------------------------------------------------


class ResetResult(BaseModel):
    backup: Path | None
    wiped: dict[str, int]


def backup_path(db: Path, when: datetime | None = None) -> Path:
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return db.with_name(f"{db.stem}.backup-{stamp}{db.suffix}")


def reset_store(store: RecordStore) -> ResetResult:
    """Back the DB file up next to itself, then delete every row, all under the store's lock.

    Rows are deleted rather than the file removed, so other processes' open `RecordStore`s keep a
    valid schema. Outputs on disk are left alone (a re-run rewrites them).
    """
    db = store.path
    if not db.exists():
        return ResetResult(backup=None, wiped={})
    target = backup_path(db)
    wiped = store.backup_and_wipe(target)
    store.audit("reset", {"backup": str(target), "wiped": wiped})
    return ResetResult(backup=target, wiped=wiped)


# -- history and logs ----------------------------------------------------------------------------


class RecordHistory(BaseModel):
    record: RecordRow
    batches: list[dict[str, Any]]  # one per attempt, from batch_records + batches
    failures: list[dict[str, Any]]
    inferences: list[dict[str, Any]]
    costs: list[dict[str, Any]]
    audit: list[dict[str, Any]]


def record_history(store: RecordStore, key: str) -> RecordHistory:
    """Everything the store knows about one record, oldest first."""
    record = store.get(key)
    if record is None:
        raise OperationsError(f"no record {key!r} in {store.path}")
    with store.session():
        return RecordHistory(
            record=record,
            batches=store.record_attempts(key),
            failures=store.failures(key),
            inferences=store.inferences(key=key),
            costs=store.costs(key),
            audit=store.audit_entries(key),
        )


def inference_rows(
    store: RecordStore, *, key: str | None = None, book: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """inference_log rows, newest last (the last `limit` when given)."""
    return store.inferences(key=key, book=book, limit=limit)


def batch_records_table(store: RecordStore, batch_id: str) -> list[dict[str, Any]]:
    """One row per record sent in the batch: key, status (its outcome in this batch, or RUNNING
    while in flight), error (this batch's failure message), attempt. For Dagster metadata tables."""
    return store.batch_record_table(batch_id)


# -- prompt reconstruction -----------------------------------------------------------------------


def _logged_context_source(generation_config: str | None) -> str | None:
    try:
        value = json.loads(generation_config) if generation_config else None
    except ValueError:
        return None
    return value.get("context_source") if isinstance(value, dict) else None


class PromptReconstruction(BaseModel):
    """A record's prompt rebuilt from its stored identity, with the checks that it is the one sent."""

    key: str
    text: str
    identity: PromptIdentity
    sent: bool  # False: the record has no stored identity yet (rendered with the configured version)
    stored_vars_hash: str | None = None
    vars_hash_matches: bool | None = None
    logged_template_hash: str | None = None
    template_matches: bool | None = None
    logged_prompt_matches: bool | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def reconstruct_prompt(settings: Settings, store: RecordStore, registry: PromptRegistry, key: str) -> PromptReconstruction:
    """Rebuild a record's request with the one request builder (`page_requests`), from the record, its
    stored prompt version and the context source it ran with (logged with its generation settings),
    and check the variables' hash against the stored `vars_hash`. Raises `OperationsError` when the
    record is unknown or its context cannot be rebuilt."""
    from ocr_assets.engines.gemini.context import provider_for  # the local OCR context loads lazily

    record = store.get(key)
    if record is None:
        raise OperationsError(f"no record {key!r} in {store.path}")
    sent = bool(record.prompt_version and record.prompt_vars_hash)
    name = record.prompt_name or settings.prompt.name
    version = record.prompt_version or settings.prompt.version
    logged = store.last_logged_prompt(key, version, record.prompt_vars_hash) if sent else None
    source = _logged_context_source(logged["generation_config"] if logged else None) or settings.gemini.context_source
    provider = provider_for(settings.model_copy(update={"gemini": settings.gemini.model_copy(
        update={"context_source": source})}), store)
    try:
        requests, problems = build_page_requests(
            [record], registry=registry, prompt_name=name, prompt_version=version,
            provider=provider or UpstreamOutputContext(store),
        )
    except PromptError as exc:
        raise OperationsError(str(exc)) from None
    if problems:
        raise OperationsError(problems[0][1])
    rebuilt = requests[0]
    result = PromptReconstruction(key=key, text=rebuilt.prompt, identity=rebuilt.prompt_identity, sent=sent)
    if not sent:
        return result
    result.stored_vars_hash = record.prompt_vars_hash
    result.vars_hash_matches = rebuilt.prompt_identity.vars_hash == record.prompt_vars_hash
    if logged:
        result.logged_template_hash = logged["prompt_template_hash"]
        if result.logged_template_hash:
            result.template_matches = result.logged_template_hash == rebuilt.prompt_identity.template_hash
        if logged["rendered_prompt"] is not None:
            result.logged_prompt_matches = logged["rendered_prompt"] == rebuilt.prompt
    rendered = rebuilt.prompt_identity
    problems = []
    if not result.vars_hash_matches:
        why = (
            f"its upstream {record.upstream_key} "
            f"{'output' if source == UPSTREAM_OUTPUT else f'{source} context'} changed after this record ran"
            if record.upstream_key else "the variables' definition changed after this record ran"
        )
        problems.append(
            f"rebuilt variables hash {rendered.vars_hash} but the record was sent with "
            f"{record.prompt_vars_hash} ({why})"
        )
    if result.template_matches is False:
        problems.append(
            f"template {name}/{version} is now {rendered.template_hash} but the record was sent with "
            f"{result.logged_template_hash} (the template file was edited)"
        )
    if problems:
        result.problem = (
            "; ".join(problems) + ". The text actually sent is in the inference log: "
            f"ocr-assets inferences --key {key} --full"
        )
    return result
