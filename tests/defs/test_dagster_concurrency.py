"""A 20-book backfill (local engine, its own process) while the batch sensors tick and launch submit and
ingest runs against the same DuckDB record store: no lock error, no record submitted twice."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ocr_assets.defs.sensors import batch_poll_sensor, batch_submit_sensor, book_discovery_sensor
from ocr_assets.pipeline import open_store
from ocr_assets.plan import build_plan
from ocr_assets.settings import load_settings
from ocr_assets.store import RecordStatus
from tests.defs.support import REPO_ROOT, launch, tick, write_corpus, write_settings

BIN = Path(sys.executable).parent
LOCK_ERRORS = ("Could not set lock", "Conflicting lock", "is locked by another program", "StoreError")


@pytest.mark.slow
def test_a_twenty_book_backfill_and_ticking_batch_sensors_share_the_store_safely(
    tmp_path, dagster_home, monkeypatch, gemini_emulator  # noqa: F811
) -> None:
    emulator = gemini_emulator(batch_latency_s=0.3)
    root = tmp_path / "corpus"
    books = {f"TX:School {i:02d}:1910": {1: ["ALGEBRA", "1. Algebra. Equations."]} for i in range(20)}
    for i in range(0, 20, 4):  # some two-page chains, so batches and the local run also wait on upstreams
        books[f"TX:School {i:02d}:1910"][2] = ["GEOMETRY", "1. Geometry. Figures."]
    write_corpus(root, books)
    config = write_settings(root, execution={"max_concurrent_batches": 3, "batch_size_limit": 4},
                            gemini={"base_url": emulator.url})
    monkeypatch.setenv("OCR_ASSETS_CONFIG", str(config))
    monkeypatch.setenv("OCR_ASSETS_ENGINE", "gemini-batch")  # the sensors serve batch; the backfill runs local
    store = open_store(load_settings(config))  # the one DuckDB file every party shares
    build_plan(store, root / "images", root / "allow_list")
    keys = sorted(books)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("books", keys)
        backfill = subprocess.Popen(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "ocr_assets.definitions",
             "--select", "page_ocr,book_courses", "--partition-range", f"{keys[0]}...{keys[-1]}"],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "DAGSTER_HOME": str(dagster_home), "OCR_ASSETS_CONFIG": str(config),
                 "OCR_ASSETS_ENGINE": "local"},
        )
        ticks = launched = 0
        deadline = time.monotonic() + 150
        try:
            while time.monotonic() < deadline:
                for sensor in (batch_submit_sensor, batch_poll_sensor, book_discovery_sensor):
                    result = tick(sensor, instance)  # a lock error would raise here
                    ticks += 1
                    requests = [result] if isinstance(result, dg.RunRequest) else (
                        result.run_requests if isinstance(result, dg.SensorResult) else [])
                    for request in requests:
                        launched += launch(instance, sensor, request) is not None
                if backfill.poll() is not None and store.unfinished_count() == 0:
                    break
                time.sleep(0.2)
            output = backfill.communicate(timeout=120)[0]
        finally:
            if backfill.poll() is None:
                backfill.kill()
        assert backfill.returncode == 0, output[-4000:]
        assert not [marker for marker in LOCK_ERRORS if marker in output]
        assert store.unfinished_count() == 0, "the sensors did not finish their batches in time"
        assert {r.status for r in store.records()} == {RecordStatus.SUCCESS}
        # No record was ever submitted twice: one batch membership per record (no retries happened).
        members = store.query("SELECT key, count(*) AS n FROM batch_records GROUP BY key HAVING count(*) > 1")
        assert members == []
        engines = store.query("SELECT b.engine, count(*) AS n FROM batch_records r JOIN batches b USING (batch_id) "
                              "GROUP BY b.engine")
        by_engine = {row["engine"]: row["n"] for row in engines}
        print(f"records per engine: {by_engine}; {ticks} ticks, {launched} runs launched by sensors")
        assert sum(by_engine.values()) == 25 and by_engine.get("gemini-batch", 0) > 0  # both paths took records
        assert launched >= 2 and ticks >= 6
        assert instance.get_materialized_partitions(dg.AssetKey("page_ocr")) == set(keys)


def _step_window(instance: dg.DagsterInstance, run_id: str, step_key: str) -> tuple[float, float]:
    events = {e.dagster_event.event_type: e.timestamp for e in instance.all_logs(run_id)
              if e.dagster_event and e.dagster_event.step_key == step_key}
    return events[dg.DagsterEventType.STEP_START], events[dg.DagsterEventType.STEP_SUCCESS]


def test_two_local_runs_from_the_cli_never_run_page_ocr_at_the_same_time(
    tmp_path: Path, monkeypatch
) -> None:
    # The shipped instance config (the `ocr_inference` pool's limit) in a fresh DAGSTER_HOME.
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    root = tmp_path / "corpus"
    books = {f"TX:School {i}:1910": {p: ["ALGEBRA", f"{p}. Algebra. Equations."] for p in range(1, 5)}
             for i in range(2)}
    write_corpus(root, books)
    config = write_settings(root)
    build_plan(open_store(load_settings(config)), root / "images", root / "allow_list")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("books", sorted(books))  # storage created here, before the two processes
    env = {**os.environ, "DAGSTER_HOME": str(home), "OCR_ASSETS_CONFIG": str(config)}
    env.pop("OCR_ASSETS_ENGINE", None)
    def materialize(book: str) -> subprocess.Popen:  # no run tags: the CLI cannot set them
        return subprocess.Popen([str(BIN / "dagster"), "asset", "materialize", "-m", "ocr_assets.definitions",
                                 "--select", "page_ocr", "--partition", book], cwd=REPO_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # The second run starts while the first one's page_ocr step holds the slot. (Two claims within the same
    # instant can both succeed on Dagster's SQLite storage, which has no row locks; the queued run coordinator
    # that launches UI and backfill runs checks the pool in one process and has no such race.)
    runs = [materialize(sorted(books)[0])]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and runs[0].poll() is None and not any(
                e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_START
                for r in instance.get_runs() for e in instance.all_logs(r.run_id)):
            time.sleep(0.2)
    runs.append(materialize(sorted(books)[1]))
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_runs()
        assert len(records) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in records)
        first, second = sorted(_step_window(instance, r.run_id, "page_ocr") for r in records)
        assert first[1] <= second[0], f"page_ocr steps overlapped: {first} and {second}"
        assert all(r.tags.get("ocr_assets/engine") == "local" for r in instance.get_runs())  # tagged by the step
