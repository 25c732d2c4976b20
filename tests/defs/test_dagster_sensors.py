"""Sensors evaluated against a real temp instance, the way the daemon ticks them (twice, too)."""

import shutil
import time

import dagster as dg
import pytest

from ocr_assets.definitions import defs
from ocr_assets.defs.jobs import batch_metadata
from ocr_assets.defs.sensors import batch_poll_sensor, batch_submit_sensor, book_discovery_sensor
from ocr_assets.engines.gemini.batch import IntegrityReport
from ocr_assets.pipeline import open_store
from ocr_assets.plan import build_plan
from ocr_assets.store import BatchState, ClaimItem, RecordStatus
from tests.defs.support import PAGES, Corpus, launch, tick, write_corpus, write_settings


def apply_partition_requests(instance: dg.DagsterInstance, result) -> None:
    """What the daemon does with a tick's dynamic partition requests."""
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def test_discovery_launches_one_plan_run_per_new_set_of_book_folders_and_never_removes_a_book(
    corpus: Corpus, instance
) -> None:
    first = tick(book_discovery_sensor, instance)
    assert isinstance(first, dg.SensorResult) and first.dynamic_partitions_requests == []
    [request] = first.run_requests  # the tick only listed folders: the plan run reads the files
    assert request.run_key.startswith("plan:") and request.tags["ocr_assets/books"] == ",".join(corpus.books)
    assert open_store(corpus.settings).books() == []  # nothing planned inside the tick
    assert tick(book_discovery_sensor, instance).run_requests[0].run_key == request.run_key  # deduped by the daemon
    assert launch(instance, book_discovery_sensor, request) is not None
    assert sorted(instance.get_dynamic_partitions("books")) == corpus.books  # corpus_plan added them

    again = tick(book_discovery_sensor, instance)
    assert isinstance(again, dg.SkipReason) and again.skip_message == "no new books (2 book folders, 2 partitions)"

    # A new book appears and an old one vanishes from disk: plan the new one, keep the old partition.
    write_corpus(corpus.root, {"MA:Quincy:1903": {1: ["PHYSICS", "Mechanics. Motion and force."]}})
    shutil.rmtree(corpus.root / "allow_list" / "CA")
    third = tick(book_discovery_sensor, instance)
    [new] = third.run_requests
    assert new.run_key != request.run_key and new.tags["ocr_assets/books"] == "MA:Quincy:1903"
    assert not any(isinstance(r, dg.DeleteDynamicPartitionsRequest) for r in third.dynamic_partitions_requests)
    launch(instance, book_discovery_sensor, new)
    assert sorted(instance.get_dynamic_partitions("books")) == sorted([*corpus.books, "MA:Quincy:1903"])


def test_discovery_adds_partitions_for_books_planned_from_the_cli(corpus: Corpus, instance) -> None:
    _plan(corpus)  # `ocr-assets plan` fills the record store only
    result = tick(book_discovery_sensor, instance)
    assert result.run_requests == []  # every folder is planned already
    [request] = result.dynamic_partitions_requests
    assert request.partitions_def_name == "books" and sorted(request.partition_keys) == corpus.books
    apply_partition_requests(instance, result)
    assert isinstance(tick(book_discovery_sensor, instance), dg.SkipReason)


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, ["CA:Lincoln High:1901", "NY:Adams Academy:1902"]),
    ({"states": ["NY"]}, ["NY:Adams Academy:1902"]),
    ({"year_end": 1901}, ["CA:Lincoln High:1901"]),
])
def test_book_folders_are_listed_without_reading_pages_and_honour_the_filters(corpus: Corpus, filters,
                                                                               expected) -> None:
    from ocr_assets.reports import book_folders
    from ocr_assets.settings import FilterSettings

    (corpus.root / "allow_list" / ".Trash").mkdir()  # hidden and odd folders are the plan run's to report
    (corpus.root / "allow_list" / "NY" / "Adams Academy" / "draft").mkdir()
    assert book_folders(corpus.root / "allow_list", FilterSettings(**filters)) == expected


@pytest.fixture
def batch_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The configured engine is gemini-batch (the only one the batch sensors serve)."""
    monkeypatch.setenv("OCR_ASSETS_ENGINE", "gemini-batch")


def test_submit_sensor_skips_until_records_are_runnable(corpus: Corpus, instance, batch_engine) -> None:
    result = tick(batch_submit_sensor, instance)
    assert isinstance(result, dg.SkipReason) and result.skip_message == "no runnable records"


@pytest.mark.parametrize("engine", ["local", "gemini-realtime"])
def test_batch_sensors_act_only_when_the_configured_engine_is_gemini_batch(
    corpus: Corpus, instance, monkeypatch, engine
) -> None:
    monkeypatch.setenv("OCR_ASSETS_ENGINE", engine)
    _plan(corpus)  # runnable records and free slots: only the engine holds the sensors back
    for sensor in (batch_submit_sensor, batch_poll_sensor):
        result = tick(sensor, instance)
        assert isinstance(result, dg.SkipReason), sensor.name
        assert f"the configured engine is '{engine}'" in result.skip_message
        assert "only when it is 'gemini-batch'" in result.skip_message
    assert open_store(corpus.settings).batches() == []  # nothing was claimed or sent


def _plan(corpus: Corpus) -> None:
    settings = corpus.settings
    build_plan(open_store(settings), settings.paths.images_root, settings.paths.allow_list_root)


def test_submit_sensor_requests_one_run_and_not_another_while_it_is_queued(corpus: Corpus, instance,
                                                                          batch_engine) -> None:
    _plan(corpus)
    request = tick(batch_submit_sensor, instance)
    assert isinstance(request, dg.RunRequest)
    job = defs.resolve_job_def("submit_batches_job")
    queued = instance.create_run_for_job(job, status=dg.DagsterRunStatus.NOT_STARTED,
                                         tags={**request.tags, "dagster/sensor_name": "batch_submit_sensor"})
    second = tick(batch_submit_sensor, instance)
    assert isinstance(second, dg.SkipReason) and queued.run_id in second.skip_message
    instance.report_run_canceled(queued)
    assert isinstance(tick(batch_submit_sensor, instance), dg.RunRequest)


def test_submit_sensor_waits_while_every_batch_slot_is_busy(tmp_path, instance, monkeypatch, batch_engine) -> None:
    root = tmp_path / "c"
    write_corpus(root, PAGES)
    monkeypatch.setenv("OCR_ASSETS_CONFIG", str(write_settings(root, execution={"max_concurrent_batches": 1})))
    corpus = Corpus(root=root, config=root / "ocr_assets.yaml", books=sorted(PAGES))
    _plan(corpus)
    store = open_store(corpus.settings)
    key = store.runnable(1)[0].key
    store.claim("b-1", [ClaimItem(key=key, batch_index=0, prompt_name="page_ocr", prompt_version="v1.1",
                                  prompt_vars_hash="h")], engine="gemini-batch", model="m", state=BatchState.PENDING)
    result = tick(batch_submit_sensor, instance)
    assert isinstance(result, dg.SkipReason) and "batch slots are busy" in result.skip_message
    store.set_batch_state("b-1", BatchState.SUCCEEDED)
    assert isinstance(tick(batch_submit_sensor, instance), dg.RunRequest)


@pytest.fixture(autouse=True)
def _quiet_gemini(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)


# -- the Gemini batch loop driven by the two sensors, against the emulator -------------------------


def latest_partitions(instance: dg.DagsterInstance, asset: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(asset)))


def test_submit_and_poll_sensors_drive_every_book_through_gemini_batches_without_duplicates(
    corpus: Corpus, instance, gemini_emulator, monkeypatch  # noqa: F811
) -> None:
    emulator = gemini_emulator(batch_latency_s=0.2)
    monkeypatch.setenv("OCR_ASSETS_GEMINI__BASE_URL", emulator.url)
    monkeypatch.setenv("OCR_ASSETS_ENGINE", "gemini-batch")
    _plan(corpus)  # planned, but no partition added yet: the ingest runs must add them
    assert instance.get_dynamic_partitions("books") == []
    store = open_store(corpus.settings)
    ingest_keys: list[str] = []
    for _ in range(6):  # waves: page 1s and page 4 first, then the page 2s they unlock
        submit = tick(batch_submit_sensor, instance)
        if isinstance(submit, dg.RunRequest):
            launch(instance, batch_submit_sensor, submit)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(b.engine == "gemini-batch" for b in store.active_batches()):
            first = tick(batch_poll_sensor, instance)
            if isinstance(first, dg.SensorResult):
                break
            time.sleep(0.2)
        else:
            first = tick(batch_poll_sensor, instance)
        if isinstance(first, dg.SkipReason):
            assert store.unfinished_count() == 0, first.skip_message
            break
        second = tick(batch_poll_sensor, instance)  # a second tick before the ingest runs start
        assert [r.run_key for r in second.run_requests] == [r.run_key for r in first.run_requests]
        for request in first.run_requests + second.run_requests:
            assert request.run_key.startswith("ingest:batches/")
            batch = store.get_batch(request.tags["ocr_assets/batch_id"])
            assert request.run_key == f"ingest:{batch.remote_name}"
            if launch(instance, batch_poll_sensor, request) is not None:
                ingest_keys.append(request.run_key)
                assert request.tags["ocr_assets/books"]
        assert isinstance(tick(batch_poll_sensor, instance), dg.SkipReason)  # ingested: nothing left to launch
    assert store.unfinished_count() == 0
    assert {r.status for r in store.records()} == {RecordStatus.SUCCESS}
    assert len(ingest_keys) == len(set(ingest_keys)) >= 2
    ingest_runs = instance.get_runs(dg.RunsFilter(job_name="ingest_batch_job"))
    assert len(ingest_runs) == len(ingest_keys)  # one run per finished batch, never two
    # Each record went into exactly one batch per attempt, and no SUCCESS record was sent again.
    sent = store.query("SELECT key, count(*) AS n FROM batch_records GROUP BY key")
    assert {row["key"]: row["n"] for row in sent} == {r.key: 1 for r in store.records()}
    assert sorted(instance.get_dynamic_partitions("books")) == corpus.books  # added by the ingest runs
    assert latest_partitions(instance, "page_ocr") == latest_partitions(instance, "book_courses") == set(corpus.books)
    # Each ingest run carries its batch's per-record table and integrity counts.
    for run in ingest_runs:
        batch = store.get_batch(run.tags["ocr_assets/batch_id"])
        outputs = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT)
        metadata = outputs[0].dagster_event.step_output_data.metadata
        rows = metadata["records"].value.records
        assert sorted(r.data["key"] for r in rows) == sorted(k for k, _, _ in store.batch_members(batch.batch_id))
        assert {r.data["status"] for r in rows} == {"SUCCESS"}
        assert metadata["integrity_parsed"].value == metadata["integrity_submitted"].value == batch.record_count
        assert "ALERT" not in metadata


def test_a_batch_with_too_few_results_raises_an_alert_in_the_ingest_metadata(corpus: Corpus) -> None:
    store = open_store(corpus.settings)
    _plan(corpus)
    head = store.runnable(1)[0]
    store.claim("gb-alert", [ClaimItem(key=head.key, batch_index=0, prompt_name="page_ocr",
                                                prompt_version="v1.1", prompt_vars_hash="h")], engine="gemini-batch", model="m")
    alert = "batch gb-alert: only 0/1 records have a result line"
    integrity = IntegrityReport(batch_id="gb-alert", submitted=1, parsed=0, missing_count=1, alert=alert)
    store.set_batch_state("gb-alert", BatchState.INGESTED, detail={"integrity": integrity.model_dump(mode="json")})
    metadata = batch_metadata(dg.build_op_context(), store, "gb-alert")
    assert metadata["ALERT"] == alert
    assert (metadata["integrity_submitted"], metadata["integrity_missing_count"]) == (1, 1)
    assert [r.data["key"] for r in metadata["records"].records] == [head.key]


def test_the_poll_sensor_reports_a_batch_stuck_past_the_configured_age(
    corpus: Corpus, instance, gemini_emulator, monkeypatch, capfd  # noqa: F811
) -> None:
    emulator = gemini_emulator(batch_latency_s=0.2, faults={"stuck_batches": [1]})
    monkeypatch.setenv("OCR_ASSETS_GEMINI__BASE_URL", emulator.url)
    monkeypatch.setenv("OCR_ASSETS_ENGINE", "gemini-batch")
    _plan(corpus)
    launch(instance, batch_submit_sensor, tick(batch_submit_sensor, instance))
    store = open_store(corpus.settings)
    [batch] = [b for b in store.active_batches() if b.engine == "gemini-batch"]
    young = tick(batch_poll_sensor, instance)
    assert isinstance(young, dg.SkipReason) and "stuck" not in young.skip_message.lower()

    with store.connect() as con:  # the job has sat there for 30 h (stuck_batch_hours defaults to 26)
        con.execute("UPDATE batches SET created_at = created_at - INTERVAL 30 HOUR WHERE batch_id = ?",
                    [batch.batch_id])
    capfd.readouterr()
    old = tick(batch_poll_sensor, instance)
    assert isinstance(old, dg.SkipReason)
    assert f"STUCK: batch {batch.batch_id}" in old.skip_message and "batch-cancel" in old.skip_message
    # The tick's log (what the UI shows for the tick) has one warning for it, with its age and remote name.
    warnings = [line for line in capfd.readouterr().err.splitlines() if "STUCK" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "30.0 h" in warnings[0]
    assert batch.remote_name in warnings[0]
    assert store.get_batch(batch.batch_id).state in (BatchState.PENDING, BatchState.RUNNING)  # reported, not touched


def test_an_ingest_run_evaluates_the_checks_of_the_books_it_touched_and_refreshes_courses(
    corpus: Corpus, instance
) -> None:
    from ocr_assets.engines.factory import drive
    from ocr_assets.pipeline import Pipeline

    _plan(corpus)
    pipeline = Pipeline(corpus.settings)
    drive(pipeline, books=["NY:Adams Academy:1902"])  # the local engine: its waves are ingested batches
    batch_id = pipeline.store.batches()[0].batch_id
    request = dg.RunRequest(run_config={"ops": {"ingest_batch": {"config": {"batch_id": batch_id}}}},
                            job_name="ingest_batch_job")
    result = launch(instance, batch_poll_sensor, request)
    evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {("page_ocr", "outputs_match_schema"), ("page_ocr", "no_page_silently_missing"),
                                ("page_ocr", "cost_within_budget"), ("book_courses", "courses_on_content_pages")}
    silent = evaluations[("page_ocr", "no_page_silently_missing")]
    # The touched book only: the corpus-wide verdict would fail on the other book's PENDING pages.
    assert silent.metadata["scope"].value == "1 book(s) of this run"
    assert silent.passed and silent.description == "3 of 3 pages accounted for"
    assert all(e.passed for e in evaluations.values())
    courses = instance.get_latest_materialization_event(dg.AssetKey("courses"))
    assert courses is not None and courses.run_id == result.run_id
    assert courses.asset_materialization.metadata["books"].value == 1
