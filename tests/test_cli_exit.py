"""The console script as a user runs it: a plain Typer app whose exit status tells the truth."""

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import duckdb

from tests.fixtures.corpus import REPO_ROOT, settings_env, write_book


def _env(root: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OCR_ASSETS_")}, **settings_env(root)}


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("ocr-assets")
    return subprocess.run([str(script), *args], env=_env(root), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)


def test_the_console_script_is_the_typer_app_itself() -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "ocr-assets"]
    assert script.value == "ocr_assets.cli:app"


def test_a_command_leaves_its_records_in_the_store_and_exits_with_its_status(tmp_path: Path) -> None:
    write_book(tmp_path, "CA:ucla:1900", images=range(1, 4), allow=[1, 2, 3])
    planned = _cli(tmp_path, "plan")
    assert planned.returncode == 0, planned.stderr
    assert "planned 3 pages in 1 books" in planned.stdout
    assert planned.stderr == ""  # no teardown noise (e.g. native extensions reporting leaks)
    con = duckdb.connect(str(tmp_path / "state" / "store.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM records").fetchone()[0] == 3
    finally:
        con.close()

    refused = _cli(tmp_path, "reset")  # exits 1 without --yes
    assert refused.returncode == 1 and "add --yes" in refused.stderr


def test_bad_usage_exits_2_with_the_usage_line(tmp_path: Path) -> None:
    done = _cli(tmp_path, "run", "--engine", "teleport")
    assert done.returncode == 2
    assert "Invalid value for '--engine'" in done.stderr and "Traceback" not in done.stderr


def test_the_help_groups_commands_by_domain_and_keeps_every_name(tmp_path: Path) -> None:
    done = _cli(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    sections = [line.rstrip(":") for line in done.stdout.splitlines() if line.endswith(":") and not line[0].isspace()]
    assert sections == ["Options", "Corpus and records", "Run", "Gemini batches", "Operate", "Tools"]
    for name in ("plan", "status", "records", "run", "submit", "local", "batch-status", "batch-fetch",
                 "batch-cancel", "batches", "failures", "retry", "reset", "backup", "show", "inferences", "eval",
                 "prompt", "sample-corpus", "emulator", "demo"):
        assert f"  {name} " in done.stdout, name


def test_the_cli_ends_the_process_the_ordinary_way() -> None:
    tricks = ("_shutdown", "_run_exitfuncs", "os._exit", "register_at_fork", "set_threshold", "importlib")
    for path in (REPO_ROOT / "ocr_assets" / "cli").glob("*.py"):
        text = path.read_text()
        assert not [t for t in tricks if t in text], path


def test_an_unexpected_error_shows_its_traceback_scrubbed_and_exits_1(tmp_path: Path) -> None:
    key = "sentinel-key-in-a-traceback-42"
    env = {**_env(tmp_path), "GEMINI_API_KEY": key}
    code = ("import os, sys\nfrom ocr_assets.cli import app, corpus\n"
            "def broken(settings):  # a bug whose message quotes a URL with the key in it\n"
            "    raise RuntimeError('failed calling https://x/?key=' + os.environ['GEMINI_API_KEY'])\n"
            "corpus.open_store = broken\n"
            "sys.argv = ['ocr-assets', 'status']; app()\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "RuntimeError: failed calling https://x/?key=[REDACTED]" in done.stderr
    assert key not in done.stderr + done.stdout
