"""Record status transitions as data: which moves exist, and what an attempt's result moves a record to.

Pure (no DuckDB): the store's SQL only carries out what these functions decide.
"""

from __future__ import annotations

from typing import NamedTuple

from ocr_assets.store.models import RecordStatus

S = RecordStatus

CLAIMABLE = (S.PENDING, S.RETRYABLE_FAILURE)
BLOCKABLE = CLAIMABLE  # a record not yet run (or waiting to retry) is blocked by a failed upstream
BLOCKING = (S.FATAL_FAILURE, S.BLOCKED)
RESETTABLE = (S.RETRYABLE_FAILURE, S.FATAL_FAILURE)  # `retry` by an operator

TRANSITIONS: dict[RecordStatus, frozenset[RecordStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.BLOCKED}),
    # A result, or a release: the batch failed (attempt stands) or was never created (back as it was).
    S.RUNNING: frozenset({S.SUCCESS, S.RETRYABLE_FAILURE, S.FATAL_FAILURE, S.PENDING}),
    S.RETRYABLE_FAILURE: frozenset({S.RUNNING, S.BLOCKED, S.PENDING}),
    S.FATAL_FAILURE: frozenset({S.PENDING}),  # only by an operator's retry
    S.BLOCKED: frozenset({S.PENDING}),  # its upstream was reset
    S.SUCCESS: frozenset(),  # never resent
}


def can_move(source: RecordStatus, target: RecordStatus) -> bool:
    return target in TRANSITIONS[source]


def claimable(status: str, attempts: int, upstream_key: str | None, upstream_done: bool, *, max_attempts: int,
              require_upstream: bool = True) -> bool:
    """Runnable: PENDING or RETRYABLE with attempts left, and its upstream SUCCESS (or none, or not
    required: context from a local OCR pass). A BLOCKED record is never claimable."""
    return (status in CLAIMABLE and attempts < max_attempts
            and (upstream_key is None or upstream_done or not require_upstream))


class Verdict(NamedTuple):
    """Where one attempt's result puts a RUNNING record, and the error it keeps (None on success)."""

    status: RecordStatus
    message: str | None


def exhausted(attempts: int, message: str | None) -> str:
    return f"retries exhausted after {attempts} attempts: {message}"


def after_attempt(*, success: bool, error_class: str | None, message: str | None, attempts: int,
                  max_attempts: int) -> Verdict:
    """SUCCESS; FATAL for a fatal error or a retryable one with no attempts left; else RETRYABLE."""
    if success:
        return Verdict(S.SUCCESS, None)
    if error_class == "fatal":
        return Verdict(S.FATAL_FAILURE, message)
    if attempts >= max_attempts:
        return Verdict(S.FATAL_FAILURE, exhausted(attempts, message))
    return Verdict(S.RETRYABLE_FAILURE, message)


def after_release(*, attempts: int, max_attempts: int, count_failure: bool) -> RecordStatus:
    """A RUNNING record whose batch is given up: a failed batch counts the attempt, a create that
    never happened puts the record back as it was."""
    if count_failure:
        return S.FATAL_FAILURE if attempts >= max_attempts else S.RETRYABLE_FAILURE
    return S.PENDING if attempts == 0 else S.RETRYABLE_FAILURE


def sql_list(statuses: tuple[RecordStatus, ...]) -> str:
    """`('A', 'B')` for a SQL IN clause (statuses are fixed enum values, never user input)."""
    return "(" + ", ".join(f"'{s}'" for s in statuses) + ")"
