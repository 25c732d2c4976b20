import csv
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from ocr_assets import operations as ops
from ocr_assets.prompts import PromptRegistry
from ocr_assets.store import ClaimItem, RecordStatus
from tests.fixtures.corpus import REPO_ROOT
from tests.fixtures.ops_scenario import A, B, MALFORMED, build_scenario, copy_scenario, page_result
from tests.fixtures.records import write_output


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("scenario")
    return root, build_scenario(root)


@pytest.fixture()
def scenario(built, tmp_path: Path):
    """The scenario on a private copy of its store (outputs and images shared, read-only)."""
    root, (_, engine, batches) = built
    return copy_scenario(root, tmp_path), engine, batches


# -- patterns and grouping (pure) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        ("503 UNAVAILABLE: backend overloaded, retry in 30s", "<n> UNAVAILABLE: backend overloaded, retry in <n>s"),
        ("retries exhausted after 3 attempts: 503 UNAVAILABLE", "<n> UNAVAILABLE"),
        ("timeout for CA:ucla:1900:3 after 30.5s", "timeout for <key> after <n>s"),
        ("allow-list of NY:st johns:1910 changed", "allow-list of <book> changed"),
        ("batch scripted-1a2b3c4d5e6f failed", "batch scripted-<hex> failed"),
        ("file /data/images/CA/x/3.jpg is missing", "file <path> is missing"),
        ("GET https://example.com/v1/batches/abc?x=1 failed", "GET <url> failed"),
        (MALFORMED, "model output is not valid JSON: Expecting <str> delimiter: line <n> column <n> (char <n>)"),
        ("prompt v1.1 missing values 1, 2, 3", "prompt v1.1 missing values <n>…"),
        ("  spaced\n out  ", "spaced out"),
        (None, ""),
    ],
)
def test_failure_messages_normalise_to_patterns_without_their_variable_parts(message, pattern) -> None:
    assert ops.normalise_message(message) == pattern


def _row(key: str, cls: str, kind: str, message: str, minute: int) -> dict:
    return {"key": key, "error_class": cls, "error_type": kind, "message": message,
            "created_at": datetime(2026, 1, 1, 12, minute)}


def test_failures_group_by_class_type_and_pattern_biggest_first_with_example_keys() -> None:
    rows = [
        _row("a:b:1900:1", "retryable", "http_503", "503 retry in 30s", 1),
        _row("a:b:1900:2", "retryable", "http_503", "503 retry in 45s", 2),
        _row("a:b:1900:1", "retryable", "http_503", "503 retry in 10s", 3),
        _row("a:b:1900:3", "retryable", "http_503", "connection reset", 4),
        _row("a:b:1900:4", "fatal", "safety", "503 retry in 30s", 5),
    ]
    groups = ops.group_failures(rows, examples=1)
    assert [(g.error_class, g.error_type, g.pattern, g.failures, g.records) for g in groups] == [
        ("retryable", "http_503", "<n> retry in <n>s", 3, 2),
        ("fatal", "safety", "<n> retry in <n>s", 1, 1),
        ("retryable", "http_503", "connection reset", 1, 1),
    ]
    assert groups[0].example_keys == ["a:b:1900:1"]
    assert groups[0].example_message == "503 retry in 10s"  # the latest one
    assert groups[0].last_seen == datetime(2026, 1, 1, 12, 3)


# -- failures on a store filled through the pipeline -------------------------------------------------


def test_failure_groups_report_every_failure_of_the_run(scenario) -> None:
    pipeline, _, _ = scenario
    groups = {(g.error_type, g.pattern): g for g in ops.failure_groups(pipeline.store)}
    assert set(groups) == {
        ("http_503", "<n> UNAVAILABLE: backend overloaded, retry in <n>s"),
        ("malformed_json", ops.normalise_message(MALFORMED)),
        ("safety", "response blocked by the safety filter (HARM_CATEGORY_X)"),
    }
    http = groups[("http_503", "<n> UNAVAILABLE: backend overloaded, retry in <n>s")]
    assert (http.error_class, http.failures, http.records, http.example_keys) == ("retryable", 2, 1, [f"{A}:5"])
    assert groups[("safety", "response blocked by the safety filter (HARM_CATEGORY_X)")].error_class == "fatal"


def test_failure_groups_can_be_limited_to_a_book_and_to_what_is_broken_now(scenario) -> None:
    pipeline, _, _ = scenario
    assert {g.error_type for g in ops.failure_groups(pipeline.store, book=B)} == {"safety"}
    rows = ops.failure_rows(pipeline.store, current_only=True)
    assert sorted((r["key"], r["attempt"]) for r in rows) == [(f"{A}:2", 1), (f"{A}:5", 2), (f"{B}:1", 1)]
    pipeline.store.reset_for_retry([f"{A}:2"], reason="test")
    assert f"{A}:2" not in {r["key"] for r in ops.failure_rows(pipeline.store, current_only=True)}


def test_failures_export_to_csv_with_raw_response_pattern_and_current_status(scenario, tmp_path: Path) -> None:
    pipeline, _, _ = scenario
    out = tmp_path / "exports" / "failures.csv"
    assert ops.export_failures_csv(pipeline.store, out) == 4
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ops.EXPORT_COLUMNS
    by = {(r["key"], r["attempt"]): r for r in rows}
    exhausted = by[(f"{A}:5", "2")]
    assert exhausted["current_status"] == "FATAL_FAILURE" and exhausted["error_class"] == "retryable"
    assert exhausted["message"].startswith("retries exhausted after 2 attempts: 503")
    assert exhausted["pattern"] == "<n> UNAVAILABLE: backend overloaded, retry in <n>s"
    assert exhausted["raw_response"] == f"raw answer for {A}:5" and exhausted["traceback"] == "Traceback: boom"
    assert exhausted["prompt_version"] == "v1.1" and exhausted["model"] == "scripted-model"
    assert by[(f"{A}:2", "1")]["message"] == MALFORMED  # commas and quotes survive the CSV round trip


# -- retry --------------------------------------------------------------------------------------------


def _statuses(pipeline) -> dict[str, str]:
    return {r.key: str(r.status) for r in pipeline.store.records()}


def test_retry_all_retryable_makes_exactly_the_retryable_and_exhausted_records_runnable(scenario) -> None:
    pipeline, _, _ = scenario
    before = _statuses(pipeline)
    assert {r.key for r in pipeline.store.runnable()} == {f"{A}:2"}
    plan = ops.plan_retry(pipeline.store, all_retryable=True)
    assert plan.selected == [f"{A}:2", f"{A}:5"] and plan.skipped == {}
    assert ops.apply_retry(pipeline.store, plan, reason="test all") == 2
    assert {r.key for r in pipeline.store.runnable()} == {f"{A}:2", f"{A}:5"}
    after = _statuses(pipeline)
    assert after[f"{A}:5"] == "PENDING" and pipeline.store.get(f"{A}:5").attempts == 0
    assert after[f"{A}:6"] == "PENDING"  # unblocked, but waits for page 5 to succeed
    for key in (f"{A}:1", f"{A}:3", f"{B}:1", f"{B}:2"):
        assert after[key] == before[key]
    audit = pipeline.store.query("SELECT action, detail FROM audit_log WHERE action = 'retry'")
    assert len(audit) == 1 and '"test all"' in audit[0]["detail"] and f"{A}:5" in audit[0]["detail"]


def test_retry_by_key_leaves_fatal_blocked_and_healthy_records_alone_with_reasons(scenario) -> None:
    pipeline, _, _ = scenario
    plan = ops.plan_retry(pipeline.store, keys=[f"{A}:2", f"{B}:1", f"{B}:2", f"{A}:1", "x:y:1900:1"])
    assert plan.selected == [f"{A}:2"]
    assert "--fatal --yes" in plan.skipped[f"{B}:1"]
    assert plan.skipped[f"{B}:2"] == f"blocked by {B}:1; retry that record and this one follows"
    assert plan.skipped[f"{A}:1"] == "is SUCCESS, not failed"
    assert plan.skipped["x:y:1900:1"] == "no such record"
    with_fatal = ops.plan_retry(pipeline.store, keys=[f"{B}:1"], include_fatal=True)
    assert with_fatal.selected == [f"{B}:1"]


def test_retry_fatal_alone_selects_only_fatal_class_failures_and_unblocks_their_chain(scenario) -> None:
    pipeline, _, _ = scenario
    plan = ops.plan_retry(pipeline.store, include_fatal=True)
    assert plan.selected == [f"{B}:1"]
    ops.apply_retry(pipeline.store, plan, reason="test fatal")
    assert _statuses(pipeline)[f"{B}:2"] == "PENDING"
    assert {r.key for r in pipeline.store.runnable()} == {f"{A}:2", f"{B}:1"}


def test_retry_by_book_selects_that_books_failures(scenario) -> None:
    pipeline, _, _ = scenario
    assert ops.plan_retry(pipeline.store, books=[A]).selected == [f"{A}:2", f"{A}:5"]
    plan = ops.plan_retry(pipeline.store, books=[B, "Z:z:1900"])
    assert plan.selected == [] and set(plan.skipped) == {f"{B}:1", "Z:z:1900"}
    with pytest.raises(ops.OperationsError, match="nothing selected"):
        ops.plan_retry(pipeline.store)


# -- reset --------------------------------------------------------------------------------------------


def test_reset_backs_the_file_up_next_to_it_then_wipes_every_row(scenario) -> None:
    pipeline, _, _ = scenario
    store = pipeline.store
    result = ops.reset_store(store)
    assert result.backup is not None and result.backup.parent == store.path.parent
    assert result.backup.name.startswith("store.backup-") and result.backup.suffix == ".duckdb"
    assert result.wiped["records"] == 7 and result.wiped["failure_log"] == 4
    con = duckdb.connect(str(result.backup), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM records").fetchone()[0] == 7
        assert con.execute("SELECT count(*) FROM inference_log").fetchone()[0] == 5
    finally:
        con.close()
    assert store.records() == [] and store.failures() == [] and store.batches() == []
    assert [a["action"] for a in store.query("SELECT action FROM audit_log")] == ["reset"]


def test_reset_of_a_missing_store_does_nothing(tmp_path: Path) -> None:
    from ocr_assets.store import RecordStore

    assert ops.reset_store(RecordStore(tmp_path / "none.duckdb")).backup is None


# -- history, inference log, batch table -----------------------------------------------------------------


def test_record_history_holds_attempts_batches_errors_inferences_costs_and_audit(scenario) -> None:
    pipeline, _, batches = scenario
    key = f"{A}:5"
    pipeline.store.reset_for_retry([key], reason="history test")
    history = ops.record_history(pipeline.store, key)
    assert [(b["attempt"], b["batch_id"], b["outcome"]) for b in history.batches] == [
        (1, batches[0], "RETRYABLE_FAILURE"), (2, batches[1], "FATAL_FAILURE")]
    assert [f["error_type"] for f in history.failures] == ["http_503", "http_503"]
    assert [i["attempt"] for i in history.inferences] == [1, 2]
    assert history.inferences[0]["raw_response"] == f"raw answer for {key}"
    assert len(history.costs) == 2 and history.costs[0]["cost_usd"] > 0
    assert [a["action"] for a in history.audit] == ["retry"]
    with pytest.raises(ops.OperationsError, match="no record"):
        ops.record_history(pipeline.store, "x:y:1900:1")


def test_inference_rows_filter_by_key_and_book_and_keep_the_latest(scenario) -> None:
    pipeline, _, _ = scenario
    assert len(ops.inference_rows(pipeline.store)) == 5
    assert {r["key"] for r in ops.inference_rows(pipeline.store, book=B)} == {f"{B}:1"}
    assert [r["attempt"] for r in ops.inference_rows(pipeline.store, key=f"{A}:5")] == [1, 2]
    latest = ops.inference_rows(pipeline.store, limit=2)
    assert [r["id"] for r in latest] == sorted(r["id"] for r in ops.inference_rows(pipeline.store))[-2:]


def test_batch_records_table_lists_each_records_outcome_error_and_attempt(scenario) -> None:
    pipeline, _, batches = scenario
    assert ops.batch_records_table(pipeline.store, batches[0]) == [
        {"key": f"{A}:1", "status": "SUCCESS", "error": None, "attempt": 1},
        {"key": f"{A}:5", "status": "RETRYABLE_FAILURE",
         "error": "503 UNAVAILABLE: backend overloaded, retry in 30s", "attempt": 1},
        {"key": f"{B}:1", "status": "FATAL_FAILURE",
         "error": "response blocked by the safety filter (HARM_CATEGORY_X)", "attempt": 1},
    ]
    pipeline.store.claim("inflight", [ClaimItem(key=f"{A}:2", batch_index=0, prompt_name="page_ocr",
                                                prompt_version="v1.1", prompt_vars_hash="h")],
                         engine="scripted", model="m")
    assert ops.batch_records_table(pipeline.store, "inflight") == [
        {"key": f"{A}:2", "status": "RUNNING", "error": None, "attempt": 2}]
    assert ops.batch_records_table(pipeline.store, "no-such-batch") == []


# -- prompt reconstruction ------------------------------------------------------------------------------


def _reconstruct(pipeline, key: str, registry: PromptRegistry | None = None) -> ops.PromptReconstruction:
    return ops.reconstruct_prompt(pipeline.settings, pipeline.store, registry or pipeline.registry, key)


def test_a_records_prompt_is_rebuilt_exactly_as_the_engine_received_it(scenario) -> None:
    pipeline, engine, _ = scenario
    sent = {r.key: r.prompt for r in engine.seen}
    for key in (f"{A}:1", f"{A}:2", f"{B}:1"):
        rebuilt = _reconstruct(pipeline, key)
        assert rebuilt.ok and rebuilt.sent and rebuilt.vars_hash_matches
        assert rebuilt.template_matches and rebuilt.logged_prompt_matches
        assert rebuilt.text == sent[key]
    assert "Course 1.3 (Mathematics)" in _reconstruct(pipeline, f"{A}:2").text


def _replace_output(pipeline, key: str, page: int, folder: Path) -> None:
    """The record's output changes after its downstream ran (written aside: outputs are shared)."""
    path, sha = write_output(folder, key, page_result(page, courses=1))
    with pipeline.store.connect() as con:
        con.execute("UPDATE records SET output_path = ?, output_sha256 = ? WHERE key = ?", [str(path), sha, key])


def test_a_changed_upstream_output_is_reported_as_a_hash_mismatch(scenario, tmp_path: Path) -> None:
    pipeline, _, _ = scenario
    _replace_output(pipeline, f"{A}:1", 1, tmp_path / "changed")
    rebuilt = _reconstruct(pipeline, f"{A}:2")
    assert not rebuilt.ok and rebuilt.vars_hash_matches is False
    assert f"its upstream {A}:1 output changed" in rebuilt.problem
    assert rebuilt.stored_vars_hash in rebuilt.problem and "inferences --key" in rebuilt.problem


def test_an_edited_template_is_reported_against_the_logged_template_hash(scenario, tmp_path: Path) -> None:
    pipeline, _, _ = scenario
    copy = tmp_path / "prompts"
    shutil.copytree(REPO_ROOT / "prompts", copy)
    template = copy / "page_ocr" / "v1.1.jinja"
    template.write_text(template.read_text() + "\nOne more instruction.\n")
    rebuilt = _reconstruct(pipeline, f"{A}:1", PromptRegistry(copy))
    assert rebuilt.vars_hash_matches and rebuilt.template_matches is False
    assert "the template file was edited" in rebuilt.problem


def test_a_record_never_sent_gets_the_configured_versions_prompt(scenario) -> None:
    pipeline, _, _ = scenario
    rebuilt = _reconstruct(pipeline, f"{A}:3")
    assert rebuilt.ok and not rebuilt.sent and rebuilt.identity.version == "v1.1"
    assert pipeline.store.get(f"{A}:3").status == RecordStatus.PENDING
    with pytest.raises(ops.OperationsError, match="no record"):
        _reconstruct(pipeline, "x:y:1900:1")
