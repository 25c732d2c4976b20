"""The Dagster instance on a real PostgreSQL (`dagster_home/dagster.postgres.yaml`): dagster-daemon and the
sensors drive a book to SUCCESS through the Gemini batch path (emulator), and dagster-webserver's GraphQL
reads the run history back out of PostgreSQL."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocr_assets.pipeline import open_store
from ocr_assets.plan import build_plan
from ocr_assets.settings import load_settings
from tests.defs.support import REPO_ROOT, write_corpus, write_settings
from tests.defs.test_dagster_webserver import BIN, Platform
from tests.fixtures.postgres import PostgresServer, postgres_bindir, postgres_server
from tests.fixtures.services import free_port, require_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BOOK = "OH:Oberlin College:1905"
# Pages 1 and 3: two chains, so one submit wave and one ingest finish the book.
CORPUS = {BOOK: {1: ["OBERLIN COLLEGE", "CATALOGUE 1905"], 3: ["CHEMISTRY", "1. General Chemistry. Elements."]}}
RUNS = """{ runsOrError { __typename ... on Runs { results { runId jobName status tags { key value } } } } }"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    require_or_skip(bindir is not None, "PostgreSQL server binaries are not installed (Debian `postgresql`; "
                                        ".ci/run installs it)")
    require_or_skip(importlib.util.find_spec("dagster_postgres") is not None,
                    "dagster-postgres is not installed (pip install -e '.[cluster]')")
    assert bindir is not None
    with postgres_server(bindir) as server:
        yield server


def test_the_daemon_and_sensors_finish_a_book_on_postgres_and_graphql_reads_the_run_history(
    tmp_path: Path, postgres: PostgresServer, gemini_emulator, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    import dagster as dg
    import psycopg2

    emulator = gemini_emulator(batch_latency_s=0.2)
    write_corpus(tmp_path / "corpus", CORPUS)
    config = write_settings(tmp_path / "corpus", engine="gemini-batch", gemini={"base_url": emulator.url})
    settings = load_settings(config)
    store = open_store(settings)
    build_plan(store, settings.paths.images_root, settings.paths.allow_list_root)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.postgres.yaml", home / "dagster.yaml")  # the shipped variant
    for name, value in postgres.env().items():
        monkeypatch.setenv(name, value)
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "BRAINTRUST_API_KEY")}
    env.update(DAGSTER_HOME=str(home), OCR_ASSETS_CONFIG=str(config), PYTHONUNBUFFERED="1")
    (tmp_path / "logs").mkdir()
    port = free_port()
    platform = Platform(url=f"http://127.0.0.1:{port}", home=home, env=env, logs=tmp_path / "logs")
    try:
        # Starting the sensors (discovery, batch submit, batch poll) writes their state to PostgreSQL;
        # the daemon then ticks them.
        started = subprocess.run([str(BIN / "dagster"), "sensor", "start", "-m", "ocr_assets.definitions",
                                  "--start-all"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
        platform.start("dagster-daemon", "run", "-m", "ocr_assets.definitions")
        platform.start("dagster-webserver", "-m", "ocr_assets.definitions", "-h", "127.0.0.1", "-p", str(port))
        keys = {f"{BOOK}:1", f"{BOOK}:3"}
        deadline = time.monotonic() + 480
        while True:
            counts = store.status_counts()
            runs = _runs(platform) if counts.get("SUCCESS") == len(keys) else []
            finished = {r["jobName"] for r in runs if r["status"] == "SUCCESS"}
            if {"submit_batches_job", "ingest_batch_job"} <= finished and all(
                    r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the book did not finish: {counts}, runs {runs}\n{platform.log_tail()}")
            time.sleep(2)
        assert {r.key: r.status.value for r in store.records()} == dict.fromkeys(keys, "SUCCESS")
        assert all(r["status"] == "SUCCESS" for r in runs), runs
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_dynamic_partitions("books") == [BOOK]  # added by the discovery sensor
            assert BOOK in instance.get_materialized_partitions(dg.AssetKey("page_ocr"))
    finally:
        platform.stop()
    # The history lives in PostgreSQL, not in SQLite files under DAGSTER_HOME.
    with psycopg2.connect(host=postgres.host, port=postgres.port, user=postgres.user,
                          dbname=postgres.db_name) as con, con.cursor() as cur:
        cur.execute("SELECT run_id FROM runs")
        assert {row[0] for row in cur.fetchall()} == {r["runId"] for r in runs}
    assert not list(home.rglob("*.db"))


def _runs(platform: Platform) -> list[dict]:
    try:
        with urllib.request.urlopen(f"{platform.url}/server_info", timeout=5):
            pass
    except OSError:
        return []  # the webserver is still starting
    data = platform.graphql(RUNS, {})["runsOrError"]
    assert data["__typename"] == "Runs", data
    return data["results"]
