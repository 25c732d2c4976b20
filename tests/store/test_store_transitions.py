"""The record status rules, without DuckDB."""

import pytest

from ocr_assets.store import RecordStatus as S
from ocr_assets.store.transitions import TRANSITIONS, after_attempt, after_release, can_move


@pytest.mark.parametrize(
    ("success", "error_class", "attempts", "expected"),
    [
        (True, None, 1, S.SUCCESS),
        (True, None, 3, S.SUCCESS),  # a success on the last attempt is a success
        (False, "retryable", 1, S.RETRYABLE_FAILURE),
        (False, "retryable", 3, S.FATAL_FAILURE),  # no attempts left
        (False, None, 2, S.RETRYABLE_FAILURE),  # unclassified errors are retried
        (False, "fatal", 1, S.FATAL_FAILURE),
    ],
)
def test_an_attempts_result_moves_a_running_record(success, error_class, attempts, expected) -> None:
    verdict = after_attempt(success=success, error_class=error_class, message="boom", attempts=attempts,
                            max_attempts=3)
    assert verdict.status == expected
    assert can_move(S.RUNNING, verdict.status)


def test_exhausted_retries_say_so_and_a_success_keeps_no_error() -> None:
    assert after_attempt(success=False, error_class="retryable", message="503", attempts=3,
                         max_attempts=3).message == "retries exhausted after 3 attempts: 503"
    assert after_attempt(success=True, error_class=None, message="x", attempts=1, max_attempts=3).message is None


@pytest.mark.parametrize(
    ("attempts", "count_failure", "expected"),
    [
        (1, True, S.RETRYABLE_FAILURE),
        (3, True, S.FATAL_FAILURE),
        (0, False, S.PENDING),  # the create never happened: back as it was
        (2, False, S.RETRYABLE_FAILURE),
    ],
)
def test_a_released_batch_puts_its_records_back(attempts, count_failure, expected) -> None:
    assert after_release(attempts=attempts, max_attempts=3, count_failure=count_failure) == expected


def test_success_is_final_and_every_status_has_a_rule() -> None:
    assert set(TRANSITIONS) == set(S)
    assert TRANSITIONS[S.SUCCESS] == frozenset()
    assert not can_move(S.FATAL_FAILURE, S.RUNNING)  # only an operator's reset revives it
    assert not can_move(S.BLOCKED, S.RUNNING)
