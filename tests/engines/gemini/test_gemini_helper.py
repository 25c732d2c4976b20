"""The CLI's SDK helper process: calls answered across a socket pair, failures that lose nothing.

The helper is forked for real here (from the test process, and by the console script in a subprocess)
and talks to the emulator through the unmodified google-genai SDK.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from ocr_assets.engines.emulator.testing import gemini_emulator  # noqa: F401 - pytest fixture
from ocr_assets.engines.gemini import helper
from ocr_assets.engines.gemini.batch import GeminiBatchClient
from ocr_assets.engines.gemini.calls import CallsGone, GeminiCalls, SubmitUncertain
from ocr_assets.engines.gemini.client import GeminiCallError
from ocr_assets.engines.gemini.runner import recover_submitting, submit_wave
from ocr_assets.pipeline import Pipeline
from ocr_assets.plan import build_plan
from ocr_assets.settings import SDK_HELPER_ENV, load_settings
from ocr_assets.store import BatchState, RecordStatus
from tests.fixtures.corpus import REPO_ROOT, settings_env, settings_for, write_book

BOOK = "ny:alpha:1900"
SENTINEL = "AIzaSENTINEL-helper-do-not-leak-0123456789abcdef"
FAST = dict(gemini__retry_initial_wait_s=0, gemini__retry_max_wait_s=0)
# The console script, with a marker of whether this process (not the helper) imported the SDK.
MAIN_WITH_MARKER = (
    "import atexit, sys\n"
    "from pathlib import Path\n"
    "marker = Path(sys.argv.pop(1))\n"
    "atexit.register(lambda: marker.write_text(str('google.genai' in sys.modules)))\n"
    "from ocr_assets.cli import main\n"
    "sys.argv[0] = 'ocr-assets'\n"
    "main()\n"
)


def _gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def forked(tmp_path: Path, gemini_emulator):
    """A helper forked from this process, with calls for settings pointing at a fresh emulator."""
    server = gemini_emulator(batch_latency_s=30)
    settings = settings_for(tmp_path, gemini__base_url=server.url, **FAST)
    started = helper.SdkHelper.fork()
    yield started, started.calls(settings), settings, server
    started.close(wait=True)


def test_the_helper_answers_calls_in_plain_data_and_keeps_error_details(forked) -> None:
    sdk_helper, calls, settings, server = forked
    uploaded = calls.upload(b'{"key": "k", "request": {}}\n', mime_type="jsonl", display_name="gb-helper-test")
    assert uploaded.name.startswith("files/") and uploaded.expiration_time is not None
    name = calls.create_batch(model=settings.model.name, src=uploaded.name, display_name="gb-helper-test")
    job = calls.get_batch(name)
    assert job.name == name and job.display_name == "gb-helper-test"
    assert job.raw_state in {"JOB_STATE_PENDING", "JOB_STATE_RUNNING"}
    assert [j.name for j in calls.list_batches(page_size=10)] == [name]
    assert [b["name"] for b in server.state.batches.summaries()] == [name]  # the SDK in the helper made it

    with pytest.raises(GeminiCallError) as missing:
        calls.get_batch("batches/does-not-exist")
    assert missing.value.code == 404 and "does-not-exist" in str(missing.value)  # fields survive the pipe

    # The helper holds none of the caller's stdio and ignores Ctrl-C (it ends with the socket).
    if Path(f"/proc/{sdk_helper.pid}/fd").exists():
        assert {os.readlink(f"/proc/{sdk_helper.pid}/fd/{fd}") for fd in (0, 1, 2)} == {os.devnull}
    os.kill(sdk_helper.pid, signal.SIGINT)
    time.sleep(0.2)
    assert calls.get_batch(name).name == name
    calls.cancel_batch(name)
    assert calls.get_batch(name).raw_state in {"JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED"}


def test_the_helper_exits_when_its_socket_closes(forked) -> None:
    sdk_helper, calls, _, _ = forked
    assert calls.list_batches(page_size=1) == []
    sdk_helper.close()
    assert _gone(sdk_helper.pid)
    with pytest.raises(CallsGone):
        calls.list_batches(page_size=1)


def test_a_helper_outlives_no_command_that_dies_without_closing_it(tmp_path: Path) -> None:
    code = ("import os\nfrom ocr_assets.engines.gemini import helper\n"
            "h = helper.SdkHelper.fork()\nprint(h.pid, flush=True)\nos._exit(0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert _gone(int(done.stdout.strip()))


def test_a_dead_helper_fails_calls_and_a_create_in_flight_is_uncertain(forked) -> None:
    sdk_helper, calls, settings, _ = forked
    assert calls.list_batches(page_size=1) == []
    os.kill(sdk_helper.pid, signal.SIGKILL)
    assert _gone(sdk_helper.pid)
    with pytest.raises(CallsGone, match="SDK helper"):
        calls.get_batch("batches/x")
    with pytest.raises(SubmitUncertain) as uncertain:
        calls.create_batch(model=settings.model.name, src="files/input", display_name="gb-x")
    assert uncertain.value.definite is False and uncertain.value.input_file == "files/input"


def test_records_survive_the_helper_dying_between_upload_and_create(tmp_path: Path, gemini_emulator) -> None:
    """The create's answer is lost with the helper: the batch stays SUBMITTING, and recovery (which
    looks the job up by display name) releases its records, with no attempt counted."""
    server = gemini_emulator(batch_latency_s=30)
    write_book(tmp_path, BOOK, images=[1, 2, 3], allow=[1, 2, 3])
    settings = settings_for(tmp_path, gemini__base_url=server.url, **FAST)
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    sdk_helper = helper.SdkHelper.fork()
    calls = sdk_helper.calls(settings)

    class DiesBeforeCreate:
        def __getattr__(self, name):
            return getattr(calls, name)

        def create_batch(self, **kwargs):
            os.kill(sdk_helper.pid, signal.SIGKILL)
            assert _gone(sdk_helper.pid)
            return calls.create_batch(**kwargs)

    try:
        report = submit_wave(pipeline, GeminiBatchClient(settings, store=pipeline.store, calls=DiesBeforeCreate()))
    finally:
        sdk_helper.close(wait=True)
    assert report.uncertain and not report.batches
    [batch] = pipeline.store.batches(states=[BatchState.SUBMITTING])
    assert batch.batch_id == report.uncertain[0] and server.state.batches.summaries() == []

    in_process = GeminiBatchClient(settings, store=pipeline.store, calls=GeminiCalls(settings))
    recovered = recover_submitting(pipeline, in_process, now=datetime.now(UTC) + timedelta(hours=1))
    assert recovered.released == [batch.batch_id]
    records = pipeline.store.records()
    assert len(records) == 3 and all(r.attempts == 0 for r in records)
    assert {r.status for r in records} <= {RecordStatus.PENDING, RecordStatus.RETRYABLE_FAILURE}


def test_the_console_script_submits_through_the_helper_without_importing_the_sdk(tmp_path: Path,
                                                                                 gemini_emulator) -> None:
    server = gemini_emulator(batch_latency_s=600)
    write_book(tmp_path, BOOK, images=[1, 3, 5], allow=[1, 3, 5])  # gaps: three chain heads, all runnable
    base = {k: v for k, v in os.environ.items() if not k.startswith("OCR_ASSETS_")}
    env = {**base, **settings_env(tmp_path, gemini__base_url=server.url, **FAST), "GEMINI_API_KEY": SENTINEL}

    def cli(*args: str, helper_on: bool = True) -> tuple[subprocess.CompletedProcess, bool]:
        marker = tmp_path / "imported.txt"
        done = subprocess.run([sys.executable, "-c", MAIN_WITH_MARKER, str(marker), *args],
                              env={**env, SDK_HELPER_ENV: "1" if helper_on else "0"}, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert SENTINEL not in done.stdout + done.stderr
        return done, marker.read_text() == "True"

    submitted, imported = cli("submit", "--batch", "--limit", "2")
    batch_id = submitted.stdout.strip()
    assert batch_id.startswith("gb-") and "2 records in 1 new batch" in submitted.stderr
    if helper._spare_cpu():
        assert imported is False  # the SDK was imported (and the calls made) in the helper only
    [remote] = server.state.batches.summaries()
    pipeline = Pipeline(load_settings(None, environ=env))
    batch = pipeline.store.get_batch(batch_id)
    assert batch.state == BatchState.PENDING and batch.remote_name == remote["name"] and batch.record_count == 2

    status, _ = cli("batch-status", batch_id)
    assert batch_id in status.stdout and remote["name"] in status.stdout
    missing = subprocess.run([sys.executable, "-c", MAIN_WITH_MARKER, str(tmp_path / "m"), "batch-status", "gb-nope"],
                             env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no batch gb-nope" in missing.stderr and SENTINEL not in missing.stderr
    # The same command in-process (the helper switched off) gives the same answer.
    same, imported_here = cli("batch-status", batch_id, helper_on=False)
    assert imported_here is True and same.stdout == status.stdout

    server.state.advance_clock(601)  # the batch's latency has passed
    deadline = time.monotonic() + 30
    while not server.state.batches.summaries()[0]["state"].endswith("SUCCEEDED"):
        server.state.batches.refresh_all()
        assert time.monotonic() < deadline, "the emulator's batch did not finish"
        time.sleep(0.05)
    fetched, imported = cli("batch-fetch", batch_id)  # in-process: the result file is parsed where downloaded
    assert "integrity: 2/2 parsed" in fetched.stdout and imported is True
    assert len(pipeline.store.records(status=RecordStatus.SUCCESS)) == 2
    again, _ = cli("batch-fetch", batch_id)
    assert "nothing changed" in again.stdout
    replayed, imported = cli("batch-fetch", batch_id, "--from-archive")  # no remote call: no SDK
    assert "nothing changed" in replayed.stdout and imported is False
    settled, imported = cli("batch-status", batch_id, helper_on=False)  # ingested: nothing to poll
    assert "INGESTED" in settled.stdout and imported is False

    listed, imported = cli("batches")  # reads the store only: no helper, and the SDK is never imported
    assert batch_id in listed.stdout and imported is False

    last = cli("submit", "--batch")[0].stdout.strip()
    cancelled, _ = cli("batch-cancel", last)
    assert f"cancelled {last}: 1 records back to retryable" in cancelled.stdout
    assert pipeline.store.get_batch(last).state == BatchState.CANCELLED


def test_only_the_short_batch_commands_start_a_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    monkeypatch.setattr(helper.SdkHelper, "fork", classmethod(lambda cls: started.append("fork") or "helper"))
    monkeypatch.setattr(helper, "_spare_cpu", lambda: True)
    monkeypatch.setattr(helper, "_current", None)
    for argv in (["run", "--batch"], ["batch-fetch", "gb-1"], ["status"], ["submit", "--help"],
                 ["batch-status", "--help"], []):
        assert helper.start_for(argv) is None, argv
    assert started == []
    assert helper.start_for(["submit", "--batch", "--limit", "10"]) == "helper" and helper.current() == "helper"
    assert helper.start_for(["--config", "x.yaml", "batch-cancel", "gb-1"]) is None  # first word is not a command
    assert helper.start_for(["batch-cancel", "gb-1", "--config", "x.yaml"]) == "helper"
    monkeypatch.setenv(SDK_HELPER_ENV, "0")
    assert helper.start_for(["submit"]) is None
    monkeypatch.delenv(SDK_HELPER_ENV)
    monkeypatch.setattr(helper, "_spare_cpu", lambda: False)
    assert helper.start_for(["submit"]) is None
    assert started == ["fork", "fork"]

    def no_fork(cls):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(helper, "_spare_cpu", lambda: True)
    monkeypatch.setattr(helper.SdkHelper, "fork", classmethod(no_fork))
    monkeypatch.setattr(helper, "_current", None)
    assert helper.start_for(["submit"]) is None and helper.current() is None  # the command runs in-process


def test_the_helper_switch_is_not_read_as_a_setting(tmp_path: Path) -> None:
    assert helper.SDK_HELPER_ENV == SDK_HELPER_ENV
    settings = load_settings(None, environ={**settings_env(tmp_path), SDK_HELPER_ENV: "0"})
    assert "sdk_helper" not in settings.model_dump()


def test_messages_of_many_megabytes_cross_the_socket_whole() -> None:
    import socket
    import threading

    ours, theirs = socket.socketpair()
    payload = ("call", 7, "upload", {"data": os.urandom(12 * 1024 * 1024), "display_name": "big"})
    sender = threading.Thread(target=helper._send, args=(ours, payload))
    sender.start()  # the receiver drains while the sender blocks on a full socket buffer
    try:
        assert helper._recv(theirs) == payload
    finally:
        sender.join()
        ours.close()
    with pytest.raises(EOFError):
        helper._recv(theirs)
    theirs.close()


def test_a_container_cpu_quota_of_one_cpu_means_no_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helper.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(helper, "_cpu_quota", lambda: 1.0)
    assert helper._spare_cpu() is False
    monkeypatch.setattr(helper, "_cpu_quota", lambda: None)
    assert helper._spare_cpu() is True
    monkeypatch.undo()

    v2 = tmp_path / "v2"
    v2.mkdir()
    assert helper._cpu_quota(str(v2)) is None  # no cgroup files: unlimited
    (v2 / "cpu.max").write_text("max 100000\n")
    assert helper._cpu_quota(str(v2)) is None
    (v2 / "cpu.max").write_text("100000 100000\n")  # docker --cpus=1
    assert helper._cpu_quota(str(v2)) == 1.0
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert helper._cpu_quota(str(v1.parent)) is None
    (v1 / "cpu.cfs_quota_us").write_text("250000\n")
    assert helper._cpu_quota(str(v1.parent)) == 2.5
