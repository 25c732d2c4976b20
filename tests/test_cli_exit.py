"""The console script's exit: everything a normal exit does, without the interpreter teardown."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb

from tests.fixtures.corpus import REPO_ROOT, settings_env, write_book

RUN_MAIN = "import sys; from ocr_assets.cli import main; sys.argv[0] = 'ocr-assets'; main()"


def _env(root: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OCR_ASSETS_")}, **settings_env(root)}


def _cli(root: Path, *args: str, code: str = RUN_MAIN) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], env=_env(root), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_command_hands_the_store_back_checkpointed_and_exits_with_its_status(tmp_path: Path) -> None:
    write_book(tmp_path, "CA:ucla:1900", images=range(1, 4), allow=[1, 2, 3])
    planned = _cli(tmp_path, "plan")
    assert planned.returncode == 0, planned.stderr
    assert "planned 3 pages in 1 books" in planned.stdout
    assert planned.stderr == ""  # no teardown noise (e.g. native extensions reporting leaks)
    db = tmp_path / "state" / "store.duckdb"
    # The store's session ended with the command: the connection was closed, so the WAL was checkpointed away.
    assert not db.with_name(db.name + ".wal").exists()
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM records").fetchone()[0] == 3
    finally:
        con.close()

    refused = _cli(tmp_path, "reset")  # exits 1 without --yes
    assert refused.returncode == 1 and "add --yes" in refused.stderr


def test_non_daemon_threads_finish_and_atexit_handlers_run_before_the_process_ends(tmp_path: Path) -> None:
    marker = tmp_path / "markers"
    code = (
        "import atexit, sys, threading, time\n"
        "from pathlib import Path\n"
        f"m = Path({str(marker)!r}); m.mkdir()\n"
        "def late(): time.sleep(0.5); (m / 'thread').write_text('done')\n"
        "threading.Thread(target=late).start()\n"
        "from ocr_assets.cli import main\n"
        "atexit.register(lambda: (m / 'atexit').write_text(str((m / 'thread').exists())))\n"
        "sys.argv[0] = 'ocr-assets'; main()\n"
    )
    done = _cli(tmp_path, "--help", code=code)
    assert done.returncode == 0 and "Usage" in done.stdout
    assert (marker / "thread").read_text() == "done"
    assert (marker / "atexit").read_text() == "True"  # handlers ran after the threads, as Python orders them


def test_only_the_console_script_process_tunes_the_garbage_collector(tmp_path: Path) -> None:
    marker = tmp_path / "threshold"
    code = (
        "import atexit, gc, sys\n"
        "default = gc.get_threshold()\n"
        "from ocr_assets.cli import app  # importing the CLI (as tests do) leaves the process alone\n"
        "assert gc.get_threshold() == default, gc.get_threshold()\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write(repr(gc.get_threshold())))\n"
        "from ocr_assets.cli import main\n"
        "sys.argv[0] = 'ocr-assets'; main()\n"
    )
    done = _cli(tmp_path, "--help", code=code)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == repr((20_000, 50, 50))
