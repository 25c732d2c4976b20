"""page_ocr + book_courses + courses materialized through a real instance with the local engine."""

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from ocr_assets.definitions import defs
from ocr_assets.defs.assets import ENGINE_TAG
from ocr_assets.defs.resources import LocalInferenceResource, SettingsResource, default_resources
from ocr_assets.pipeline import open_store
from tests.defs.support import Corpus, write_corpus, write_settings

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def materialize(instance: dg.DagsterInstance, selection: list[str], **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize([*defs.assets, *defs.asset_checks], selection=selection, instance=instance,
                          resources=default_resources(), raise_on_error=False, **kwargs)


def materializations(instance: dg.DagsterInstance, asset: str) -> dict[str, dg.AssetMaterialization]:
    """The latest materialization of every partition of `asset`."""
    found = {}
    for book in instance.get_dynamic_partitions("books"):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[book]), limit=1).records
        if records:
            found[book] = records[0].asset_materialization
    return found


def table_rows(value: dg.TableMetadataValue) -> list[dict]:
    return [dict(record.data) for record in value.records]


def test_one_run_over_two_books_materializes_both_partitions_with_per_page_tables(corpus: Corpus, instance) -> None:
    plan = materialize(instance, ["corpus_plan"])
    assert plan.success
    assert sorted(instance.get_dynamic_partitions("books")) == corpus.books  # corpus_plan adds the partitions

    start, end = instance.get_dynamic_partitions("books")[0], instance.get_dynamic_partitions("books")[-1]
    result = materialize(instance, ["page_ocr", "book_courses"], tags={RANGE_START: start, RANGE_END: end})
    assert result.success
    assert len(instance.get_runs()) == 2  # the plan run, then ONE run for both books (single-run backfill)

    pages = materializations(instance, "page_ocr")
    assert sorted(pages) == corpus.books
    ny = pages["NY:Adams Academy:1902"].metadata
    rows = table_rows(ny["page_table"])
    assert [(r["page"], r["upstream_page"], r["status"]) for r in rows] == [
        (1, None, "SUCCESS"), (2, 1, "SUCCESS"), (4, None, "SUCCESS")]  # page 4 starts a new chain
    assert [c.name for c in ny["page_table"].schema.columns] == [
        "page", "upstream_page", "status", "failed", "attempts", "error", "tokens", "cost_usd", "output_path"]
    assert list(ny)[0] == "page_table" and not any(r["failed"] for r in rows)
    assert all(Path(ny["output_root"].value, r["output_path"]).exists() and r["attempts"] == 1 for r in rows)
    assert rows[2]["output_path"] == "NY/Adams Academy/1902/4.json"  # relative to output_root
    assert (ny["pages"].value, ny["success"].value) == (3, 3)
    assert not {"fatal_failure", "blocked", "pending", "tokens", "cost_usd"} & set(ny)  # zero counts are not shown
    assert not [name for name in ny if name.startswith("run_") or name == "engine"]  # run-wide facts: on the run
    assert [r[:3] for r in Path(ny["full_table"].value).read_text().splitlines()[1:]] == ["1,,", "2,1", "4,,"]
    assert pages["CA:Lincoln High:1901"].metadata["pages"].value == 2

    courses = materializations(instance, "book_courses")
    assert sorted(courses) == corpus.books
    ca = courses["CA:Lincoln High:1901"].metadata
    assert [r["course_name"] for r in table_rows(ca["preview"])] == ["Algebra", "Geometry"]
    assert "book" in {c.name for c in ca["dagster/column_schema"].schema.columns}
    assert pq.read_table(ca["parquet"].value).num_rows == ca["courses"].value == 2
    assert Path(ca["jsonl"].value).exists()

    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"outputs_match_schema": True, "no_page_silently_missing": True,
                      "courses_on_content_pages": True, "cost_within_budget": True}

    corpus_table = materialize(instance, ["courses"])
    assert corpus_table.success
    meta = instance.get_latest_materialization_event(dg.AssetKey("courses")).asset_materialization.metadata
    assert meta["dagster/row_count"].value == 6 and meta["books"].value == 2
    assert {r["book"] for r in table_rows(meta["preview"])} == set(corpus.books)  # which book each course is from
    assert [c.name for c in meta["dagster/column_schema"].schema.columns] == [
        c.name for c in ca["dagster/column_schema"].schema.columns]
    assert pq.read_table(meta["parquet"].value).num_rows == 6


def test_fatal_pages_fail_the_run_by_name_after_the_successful_books_are_reported(
    tmp_path, instance, monkeypatch
) -> None:
    root = tmp_path / "c"
    write_corpus(root, {"CA:Good:1900": {1: ["HISTORY", "1. Ancient History. Greece and Rome."]},
                        "NY:Bad:1900": {1: ["unreadable"], 2: ["MUSIC", "1. Harmony. Chords."]}})
    monkeypatch.setenv("OCR_ASSETS_CONFIG", str(write_settings(root)))
    assert materialize(instance, ["corpus_plan"]).success
    # Damaged after planning (the plan's image check would report it and leave it out).
    (root / "images" / "NY" / "Bad" / "1900" / "1.png").write_bytes(b"not an image at all")

    result = materialize(instance, ["page_ocr", "book_courses"],
                         tags={RANGE_START: "CA:Good:1900", RANGE_END: "NY:Bad:1900"})
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert "NY:Bad:1900:1" in message and "1 page(s) FATAL" in message and "1 page(s) BLOCKED" in message
    assert set(materializations(instance, "page_ocr")) == {"CA:Good:1900"}  # what succeeded is reported
    assert materializations(instance, "book_courses") == {}  # the run stopped at page_ocr
    store = open_store(Corpus(root=root, config=root / "ocr_assets.yaml", books=[]).settings)
    assert {r.key: r.status for r in store.records(book="NY:Bad:1900")} == {
        "NY:Bad:1900:1": "FATAL_FAILURE", "NY:Bad:1900:2": "BLOCKED"}


def test_two_books_materialize_through_gemini_batches_on_the_emulator(corpus: Corpus, instance, gemini_emulator,
                                                                       monkeypatch) -> None:  # noqa: F811
    emulator = gemini_emulator(batch_latency_s=0.2)
    monkeypatch.setenv("OCR_ASSETS_ENGINE", "gemini-batch")
    monkeypatch.setenv("OCR_ASSETS_GEMINI__BASE_URL", emulator.url)
    monkeypatch.setenv("OCR_ASSETS_EXECUTION__POLL_INTERVAL_SECONDS", "0.1")
    assert materialize(instance, ["corpus_plan"]).success
    start, end = instance.get_dynamic_partitions("books")[0], instance.get_dynamic_partitions("books")[-1]
    result = materialize(instance, ["page_ocr", "book_courses"], tags={RANGE_START: start, RANGE_END: end})
    assert result.success
    pages = materializations(instance, "page_ocr")
    assert sorted(pages) == corpus.books
    store = open_store(corpus.settings)
    assert {r.status for r in store.records()} == {"SUCCESS"} and len(store.records()) == 5
    assert {b.engine for b in store.batches()} == {"gemini-batch"}
    # Pages of both books went out together: the first wave holds every chain head of both books.
    sent = sorted(emulator.state.request_log, key=lambda e: e.seq)
    first_batch = [e.key for e in sent if e.batch == sent[0].batch]
    assert {k.rsplit(":", 1)[0] for k in first_batch} == set(corpus.books)
    assert sorted(e.key for e in sent) == sorted(r.key for r in store.records())  # none sent twice


def test_page_ocr_runs_the_engine_its_run_config_names_with_the_local_resource_overrides(
    corpus: Corpus, instance, monkeypatch
) -> None:
    import shutil

    from tests.fixtures.services import require_or_skip

    require_or_skip(shutil.which("tesseract") is not None, "the tesseract program is not installed")
    monkeypatch.setenv("OCR_ASSETS_ENGINE", "gemini-batch")  # the settings say batch, with no key: it could not run
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    assert materialize(instance, ["corpus_plan"]).success
    book = "CA:Lincoln High:1901"
    resources = {**default_resources(), "local_inference": LocalInferenceResource(settings=SettingsResource(),
                                                                                  engine="tesseract")}
    result = dg.materialize([*defs.assets, *defs.asset_checks], selection=["page_ocr"], instance=instance,
                            resources=resources, partition_key=book, raise_on_error=False,
                            run_config={"ops": {"page_ocr": {"config": {"engine": "local"}}}})
    assert result.success
    assert instance.get_run_by_id(result.run_id).tags[ENGINE_TAG] == "local"
    store = open_store(corpus.settings)
    assert {b.engine for b in store.batches()} == {"local-tesseract"}  # the resource's local.engine override
    assert {(r.status, r.engine) for r in store.records(book=book)} == {("SUCCESS", "local-tesseract")}
    assert any("local (tesseract on cpu): 1 book(s)" in e.message for e in instance.all_logs(result.run_id)
               if e.message)


def test_a_partition_not_in_the_plan_fails_with_book_not_in_the_plan(corpus: Corpus, instance) -> None:
    assert materialize(instance, ["corpus_plan"]).success
    instance.add_dynamic_partitions("books", ["TX:nowhere:1900"])  # added by hand: a typo
    result = materialize(instance, ["page_ocr", "book_courses"], partition_key="TX:nowhere:1900")
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "page_ocr"
    message = failure.step_failure_data.user_failure_data.description
    assert "book not in the plan: TX:nowhere:1900" in message and "ocr-assets plan" in message
    assert materializations(instance, "page_ocr") == {} and materializations(instance, "book_courses") == {}
    assert result.get_asset_check_evaluations() == []  # no green checks over 0 pages


def test_page_ocr_logs_progress_per_wave_to_the_run_log(corpus: Corpus, instance, monkeypatch) -> None:
    monkeypatch.setenv("OCR_ASSETS_EXECUTION__BATCH_SIZE_LIMIT", "1")  # one page per wave: two waves
    assert materialize(instance, ["corpus_plan"]).success
    result = materialize(instance, ["page_ocr"], partition_key="CA:Lincoln High:1901")
    assert result.success
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)
                if entry.step_key == "page_ocr" and "pages done" in entry.user_message]
    assert [m.split(" pages done")[0] for m in messages] == ["1/2", "2/2"]
    assert all("pages/s" in m and "ETA" in m and "0 failures so far" in m for m in messages)


def test_the_api_keys_appear_nowhere_in_the_dagster_event_log(corpus: Corpus, instance, gemini_emulator,
                                                              monkeypatch) -> None:  # noqa: F811
    from tests.fixtures.braintrust_capture import braintrust_capture

    gemini_key, braintrust_key = "AIzaSENTINEL-dagster-event-log-0123456789", "sk-SENTINEL-dagster-event-log-987"
    emulator = gemini_emulator(batch_latency_s=0.2)
    monkeypatch.setenv("OCR_ASSETS_ENGINE", "gemini-batch")
    monkeypatch.setenv("OCR_ASSETS_GEMINI__BASE_URL", emulator.url)
    monkeypatch.setenv("OCR_ASSETS_EXECUTION__POLL_INTERVAL_SECONDS", "0.1")
    monkeypatch.setenv("GEMINI_API_KEY", gemini_key)
    monkeypatch.setenv("BRAINTRUST_API_KEY", braintrust_key)
    with braintrust_capture() as capture:
        monkeypatch.setenv("BRAINTRUST_APP_URL", capture.url)
        assert materialize(instance, ["corpus_plan"]).success
        start, end = instance.get_dynamic_partitions("books")[0], instance.get_dynamic_partitions("books")[-1]
        assert materialize(instance, ["page_ocr", "book_courses"], tags={RANGE_START: start, RANGE_END: end}).success
        instance.add_dynamic_partitions("books", ["TX:nowhere:1900"])
        assert not materialize(instance, ["page_ocr"], partition_key="TX:nowhere:1900").success  # an error path
        batch_id = open_store(corpus.settings).batches()[0].batch_id
        ingest = defs.resolve_job_def("ingest_batch_job").execute_in_process(
            instance=instance, run_config={"ops": {"ingest_batch": {"config": {"batch_id": batch_id}}}},
            resources=default_resources())
        assert ingest.success
    assert emulator.state.request_log and capture.rows()  # both keys were in use
    runs = instance.get_runs()
    assert len(runs) == 4
    for run in runs:
        text = dg.serialize_value(run) + "".join(dg.serialize_value(e) for e in instance.all_logs(run.run_id))
        assert gemini_key not in text and braintrust_key not in text, run.job_name


GEMINI_JOB_SCRIPT = """
import json, sys
import dagster as dg
from ocr_assets.definitions import defs
from ocr_assets.defs.assets import ENGINE_TAG
from ocr_assets.defs.resources import LocalInferenceResource, SettingsResource, default_resources
with dg.instance_for_test() as instance:
    assert dg.materialize(defs.assets, selection=["corpus_plan"], instance=instance,
                          resources=default_resources()).success
    result = defs.resolve_job_def("ocr_gemini_batch_job").execute_in_process(
        instance=instance, partition_key="CA:Lincoln High:1901", raise_on_error=False)
    print(json.dumps({"success": result.success, "rapidocr_loaded": "rapidocr_onnxruntime" in sys.modules}))
"""


def test_a_gemini_job_never_loads_the_local_model_even_when_the_settings_engine_is_local(
    corpus: Corpus, gemini_emulator  # noqa: F811
) -> None:
    import json
    import os
    import subprocess
    import sys

    emulator = gemini_emulator(batch_latency_s=0.2)
    assert corpus.settings.engine == "local"  # the file says local; the job says gemini-batch
    env = {**os.environ, "OCR_ASSETS_GEMINI__BASE_URL": emulator.url, "GEMINI_API_KEY": "emulator-key",
           "OCR_ASSETS_EXECUTION__POLL_INTERVAL_SECONDS": "0.1"}
    env.pop("OCR_ASSETS_ENGINE", None)
    done = subprocess.run([sys.executable, "-c", GEMINI_JOB_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"success": True, "rapidocr_loaded": False}
    assert {e.key.rsplit(":", 1)[0] for e in emulator.state.request_log} == {"CA:Lincoln High:1901"}
