"""Chaos, reduced: ≈500 pages over the faulty emulator while the orchestrator is SIGKILLed twice.

The harness (corpus, emulator faults, bursts, kills, audit) is `bench/chaos.py`; the benchmark runs
it at 10,000 pages with 5 kills. Here it must finish in under 3 minutes on 2 cores, so batches are
small, chains are at most 2 pages and the emulator answers with `EchoAnswerer` after 0.2 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import ChaosConfig, ChaosReport, run_chaos

FAULT_KINDS_EXPECTED = {"error_429", "error_503", "malformed_json", "truncated", "missing_line", "duplicate_line"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ChaosReport:
    cfg = ChaosConfig(
        pages=480, pages_per_book=24, chain=2, kills=2, seed=8, batch_size=40, max_batches=12,
        max_attempts=6, batch_latency_s=0.2, poll_interval_s=0.2, kill_after_s=(0.5, 3.0),
        burst_every_s=(1.0, 3.0), burst_s=(0.5, 1.5), timeout_s=170.0,
        workdir=Path(tmp_path_factory.mktemp("chaos")),
    )
    return run_chaos(cfg, log=lambda line: None)


@pytest.mark.timeout(180)
def test_every_page_ends_terminal_and_none_is_lost(report: ChaosReport) -> None:
    assert report.kills >= 2, report.figures()
    assert report.terminal == report.pages == 480, report.problems()
    assert report.unfinished == 0 and report.lost == 0, report.problems()


def test_no_record_is_sent_again_after_its_success_was_ingested(report: ChaosReport) -> None:
    assert report.success_resent == 0, report.examples.get("success_resent")
    assert report.success_resent_by_order == 0, report.examples.get("success_resent_by_order")
    assert report.success_without_request == 0, report.examples.get("success_without_request")
    # resends after retryable failures did happen (so the check above had something to tell apart)
    assert report.requests > report.status_counts.get("SUCCESS", 0)


def test_every_output_file_is_whole_and_agrees_with_the_store(report: ChaosReport) -> None:
    assert report.corrupt_outputs == 0, report.examples.get("corrupt_outputs")
    assert report.disagreements == 0, report.examples.get("disagreements")


def test_the_faults_really_happened(report: ChaosReport) -> None:
    assert FAULT_KINDS_EXPECTED <= set(report.request_outcomes), report.request_outcomes
    assert report.batch_events.get("failed", 0) >= 1 and report.batch_events.get("expired", 0) >= 1, \
        report.batch_events
    assert sum(report.endpoint_faults.values()) > 0, report.endpoint_faults
    assert report.orchestrator_runs >= 3
