"""The real servers: dagster-webserver + dagster-daemon on a temp instance, an asset backfill launched
over GraphQL, and the UI in headless Chromium showing the partition with its per-page table."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from ocr_assets.pipeline import open_store
from ocr_assets.plan import build_plan
from ocr_assets.settings import load_settings
from tests.defs.support import PAGES, REPO_ROOT, fresh_home, write_corpus, write_settings

BIN = Path(sys.executable).parent
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
BOOKS = sorted(PAGES)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Platform:
    url: str
    home: Path
    env: dict[str, str]
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([str(BIN / name), *args], cwd=REPO_ROOT, env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):  # only the process groups this fixture started
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def graphql(self, query: str, variables: dict) -> dict:
        request = urllib.request.Request(f"{self.url}/graphql", data=json.dumps(
            {"query": query, "variables": variables}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert "errors" not in body, body
        return body["data"]

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs.glob("*.log"))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, instance_template: Path) -> Iterator[Platform]:
    """A planned two-book corpus and a running dagster-webserver on a free port (daemon started by tests)."""
    root = tmp_path_factory.mktemp("platform")
    write_corpus(root / "corpus", PAGES)
    config = write_settings(root / "corpus")
    home = fresh_home(instance_template, root / "dagster_home")
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")  # the shipped instance
    settings = load_settings(config)
    store = open_store(settings)
    build_plan(store, settings.paths.images_root, settings.paths.allow_list_root)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("books", store.books())
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "BRAINTRUST_API_KEY")}
    env.update(DAGSTER_HOME=str(home), OCR_ASSETS_CONFIG=str(config), PYTHONUNBUFFERED="1")
    port = free_port()
    (root / "logs").mkdir()
    server = Platform(url=f"http://127.0.0.1:{port}", home=home, env=env, logs=root / "logs")
    server.start("dagster-webserver", "-m", "ocr_assets.definitions", "-h", "127.0.0.1", "-p", str(port))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/server_info", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or server.processes[0].poll() is not None:
                    pytest.fail(f"dagster-webserver did not come up\n{server.log_tail()}")
                time.sleep(0.5)
        print(f"webserver up in {120 - (deadline - time.monotonic()):.0f}s")
        yield server
    finally:
        server.stop()


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}"""


@pytest.fixture(scope="module")
def backfill(platform: Platform) -> str:
    """An asset backfill of page_ocr + book_courses over both books, launched over GraphQL, run by the daemon."""
    data = platform.graphql(LAUNCH_BACKFILL, {"params": {
        "partitionNames": BOOKS, "assetSelection": [{"path": ["page_ocr"]}, {"path": ["book_courses"]}],
        "title": "two books"}})
    launched = data["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    started = time.monotonic()
    # Started after the launch: the daemon's first backfill iteration runs at once (then every 30 s).
    platform.start("dagster-daemon", "run", "-m", "ocr_assets.definitions")
    deadline = time.monotonic() + 240
    with platform.instance() as instance:
        while True:
            status = instance.get_backfill(backfill_id).status
            if status.value not in ("REQUESTED", "CANCELING"):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"backfill {backfill_id} still {status} after 4 minutes\n{platform.log_tail()}")
            time.sleep(1)
    assert status.value == "COMPLETED_SUCCESS", f"{status}\n{platform.log_tail()}"
    print(f"backfill done in {time.monotonic() - started:.0f}s")
    return backfill_id


def test_a_graphql_backfill_over_two_books_runs_them_in_one_queued_run(platform: Platform, backfill: str) -> None:
    with platform.instance() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill}))
        assert len(runs) == 1  # single-run backfill policy: one run, cross-book waves
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
        for asset in ("page_ocr", "book_courses"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(BOOKS)
        # The run went through the shipped QueuedRunCoordinator (enqueued, then dequeued by the daemon).
        events = instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)
        assert len(events) == 1


@pytest.mark.browser
def test_the_ui_shows_the_partition_materialized_with_its_per_page_table(platform: Platform, backfill: str) -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("headless Chromium is not installed (/usr/bin/chromium, /usr/bin/chromedriver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1600,1300", f"--user-data-dir={platform.logs / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=options)
    book = "NY:Adams Academy:1902"
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(f"{platform.url}/assets/page_ocr?view=partitions&partition={urllib.parse.quote(book)}")
        try:  # a first visit opens a community dialog over the page
            WebDriverWait(driver, 15).until(
                ec.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Skip']"))).click()
        except TimeoutException:
            pass
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[normalize-space()='upstream_page']")))
        time.sleep(1)  # let the table finish laying out before the screenshot
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "page_ocr_partition.png"))
        text = driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
    assert f"{book}\nMaterialized" in text
    assert "Materialized (2)" in text and "Missing (0)" in text
    assert "page_table" in text
    assert "page upstream_page status failed attempts error tokens cost_usd output_path" in text
    assert "2 1 SUCCESS false 1" in text  # page 2, upstream page 1, not failed, succeeded on its first attempt
    assert "1902/4.json" in text
