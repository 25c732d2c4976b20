"""Chaos: a faulty Gemini emulator and an orchestrator killed with SIGKILL at random points.

N pages (tiny, distinct JPEGs; short page chains) go through the Gemini batch path against the
emulator, which runs in this process (so it outlives every orchestrator) with faults on:
per-record 429/500/503 error lines, malformed and truncated answers, safety blocks, duplicate,
missing and unknown-key result lines, shuffled result files, one batch FAILED and one EXPIRED, and
bursts of endpoint 429/503 on uploads, creates, polls, downloads and lists. The orchestrator is a
separate process (`run_batches`, or `ocr-assets run --engine gemini-batch` with `--orchestrator
cli`) that is SIGKILLed `--kills` times at random moments after it starts working, and restarted;
the last one runs to the end. Then:

- pages terminal: SUCCESS, FATAL_FAILURE, BLOCKED, or RETRYABLE_FAILURE with attempts exhausted (target 100 %)
- pages lost: allow-listed pages with no record, plus records left RUNNING in a batch that is no
  longer active (nothing would ever move them) (target 0)
- SUCCESS records submitted again: emulator request-log entries for a key made after that key's
  SUCCESS was ingested (the inference_log row's commit time); records resent after a retryable
  failure are expected and not counted. Stricter companion: entries for a SUCCESS key after the
  request whose answer it succeeded with (log order, no clocks) (both target 0)
- corrupt or partial output files: `*.json` under output_root that do not parse as OcrPageResult;
  leftover `.*.tmp` files from killed atomic writes are counted apart and never as outputs (target 0)
- records whose output disagrees with the store: a SUCCESS without its file, with another sha256,
  or whose echoed identity (page, school, state, year, image digest) is not its own; or an output
  file for a record that is not SUCCESS (target 0)

    python bench/chaos.py --pages 10000 --kills 5 [--seed 0] [--orchestrator python|cli]

`tests/test_chaos.py` runs the same harness at ≈500 pages with 2 kills.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ocr_assets.engines.emulator import EchoAnswerer, EmulatorConfig, EmulatorServer, FaultConfig  # noqa: E402
from ocr_assets.engines.emulator.model_like import roman  # noqa: E402
from ocr_assets.engines.emulator.wire import ApiError  # noqa: E402
from ocr_assets.keys import RecordKey  # noqa: E402
from ocr_assets.outputs import file_sha256, output_path, read_output  # noqa: E402
from ocr_assets.plan import build_plan  # noqa: E402
from ocr_assets.settings import Settings, load_settings  # noqa: E402
from ocr_assets.store import ACTIVE_BATCH_STATES, RecordStore  # noqa: E402
from tests.fixtures.corpus import tiny_jpeg, write_book  # noqa: E402

# Routes hit by endpoint-fault bursts. A 503 on batches.create is left out on purpose: the runner
# treats it as "the job may exist" and, in a live process, waits SUBMIT_GRACE_S (120 s) before
# looking it up, which would only make the run slower, not less safe.
BURST_429_ROUTES = ["files.upload", "files.upload_chunk", "batches.create", "batches.get", "files.download"]
BURST_503_ROUTES = ["files.upload", "files.upload_chunk", "batches.get", "files.download", "batches.list"]

CHILD = r"""
import logging, sys, time
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
from ocr_assets.engines.factory import make_batch_client
from ocr_assets.engines.gemini.runner import run_batches
from ocr_assets.pipeline import Pipeline
from ocr_assets.settings import load_settings
settings = load_settings(sys.argv[1])
pipeline = Pipeline(settings)
client = make_batch_client(pipeline)
client.calls.client  # build the SDK client before reporting ready
print("started", flush=True)
summary = run_batches(pipeline, client, poll_interval=float(sys.argv[2]), max_idle_ticks=int(sys.argv[3]),
                      on_progress=lambda t: print(f"tick {t.tick} done {t.done}/{t.total} "
                                              f"active {t.active_batches}", flush=True))
print(f"done {summary.stopped} unfinished {summary.unfinished}", flush=True)
"""


@dataclass
class ChaosConfig:
    pages: int = 10_000
    pages_per_book: int = 40
    # Longest page chain: allow-listed runs of this many pages, then a gap (chains cost one wave per page).
    chain: int = 3
    kills: int = 5
    seed: int = 0
    batch_size: int = 200
    max_batches: int = 20
    max_attempts: int = 6
    batch_latency_s: float = 0.3
    poll_interval_s: float = 0.2
    # SIGKILL this many seconds (uniform) after the orchestrator reports it is working.
    kill_after_s: tuple[float, float] = (0.5, 15.0)
    # Per-record fault rates (each per attempt); their sum is the share of attempts that go wrong.
    record_faults: dict[str, float] = field(default_factory=lambda: {
        "error_429": 0.02, "error_500": 0.01, "error_503": 0.02, "malformed_json": 0.03, "truncated": 0.03,
        "safety": 0.003, "recitation": 0.005, "missing_line": 0.03, "duplicate_line": 0.03, "unknown_key": 0.01,
    })
    fail_batches: tuple[int, ...] = (3,)
    expire_batches: tuple[int, ...] = (5,)
    # Answers varied like real model output (nulls, roman page labels, fences, thinking tokens, …).
    model_like: bool = True
    # Endpoint-fault bursts: every `burst_every_s` (uniform) a `burst_s`-long burst at this rate.
    burst_every_s: tuple[float, float] = (3.0, 8.0)
    burst_s: tuple[float, float] = (0.5, 1.5)
    burst_rate: float = 0.5
    orchestrator: str = "python"  # python: run_batches in `python -c`; cli: `ocr-assets run --engine gemini-batch`
    timeout_s: float = 3600.0
    workdir: Path = Path("/tmp/ocr_assets_chaos")


@dataclass
class ChaosReport:
    pages: int
    terminal: int
    lost: int
    unfinished: int
    success_resent: int
    success_resent_by_order: int
    success_without_request: int
    corrupt_outputs: int
    leftover_temp_files: int
    disagreements: int
    kills: int
    orchestrator_runs: int
    wall_s: float
    status_counts: dict[str, int]
    requests: int
    request_outcomes: dict[str, int]
    batch_events: dict[str, int]
    endpoint_faults: dict[str, int]
    examples: dict[str, list[str]]

    def figures(self) -> dict[str, object]:
        pct = 100.0 * self.terminal / self.pages if self.pages else 0.0
        return {
            "pages terminal": f"{self.terminal:,}/{self.pages:,} ({pct:.2f} %, target 100 %)",
            "pages lost": f"{self.lost} (target 0)",
            "SUCCESS records submitted again after their SUCCESS was ingested": f"{self.success_resent} (target 0)",
            "requests for a SUCCESS key after the answer it succeeded with (log order)":
                f"{self.success_resent_by_order} (target 0)",
            "corrupt or partial output files": f"{self.corrupt_outputs} (target 0)",
            "leftover temp files from killed writes (not outputs)": self.leftover_temp_files,
            "records whose output disagrees with the store": f"{self.disagreements} (target 0)",
            "wall time (s)": f"{self.wall_s:.1f}",
            "orchestrator SIGKILLs / runs": f"{self.kills} / {self.orchestrator_runs}",
            "final status counts": ", ".join(f"{k} {v:,}" for k, v in sorted(self.status_counts.items())),
            "requests that reached inference": f"{self.requests:,}",
            "request outcomes": ", ".join(f"{k} {v}" for k, v in sorted(self.request_outcomes.items())),
            "batch events": ", ".join(f"{k} {v}" for k, v in sorted(self.batch_events.items())),
            "endpoint faults injected": ", ".join(f"{k} {v}" for k, v in sorted(self.endpoint_faults.items())) or "0",
        }

    def problems(self) -> list[str]:
        """Every target missed, with example keys (empty when the run was clean)."""
        checks = {
            "unfinished": self.unfinished, "lost": self.lost, "success_resent": self.success_resent,
            "success_resent_by_order": self.success_resent_by_order,
            "success_without_request": self.success_without_request,
            "corrupt_outputs": self.corrupt_outputs, "disagreements": self.disagreements,
        }
        return [f"{name}={value} e.g. {self.examples.get(name, [])[:5]}" for name, value in checks.items() if value]


# -- corpus and settings -------------------------------------------------------------------------


def unique_jpeg(tag: str) -> bytes:
    """The tiny blank JPEG with a COM segment naming `tag`: valid, and distinct per page."""
    base = tiny_jpeg()
    comment = tag.encode("utf-8")[:60000]
    return base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]


def build_corpus(root: Path, pages: int, pages_per_book: int, chain: int) -> list[str]:
    """Books of `pages_per_book` pages where runs of `chain` pages are allow-listed, then one is not."""
    books: list[str] = []
    written, b = 0, 0
    while written < pages:
        book = f"CH{b % 7}:school {b // 7}:{1880 + b % 40}"
        allow = []
        page = 0
        while len(allow) < min(pages_per_book, pages - written):
            page += 1
            if page % (chain + 1) != 0:
                allow.append(page)
        write_book(root, book, images=[], allow=allow)
        state, school, year = book.split(":")
        folder = root / "images" / state / school / year
        for p in allow:
            (folder / f"{p}.jpg").write_bytes(unique_jpeg(f"{book}:{p}"))
        written += len(allow)
        books.append(book)
        b += 1
    return books


def write_settings(root: Path, base_url: str, cfg: ChaosConfig) -> Path:
    data = {
        "engine": "gemini-batch",
        "paths": {"images_root": str(root / "images"), "allow_list_root": str(root / "allow_list"),
                  "output_root": str(root / "output"), "database": str(root / "state" / "store.duckdb"),
                  "ground_truth_root": None},
        "prompt": {"registry_dir": str(REPO / "prompts")},
        "execution": {"max_attempts": cfg.max_attempts, "batch_size_limit": cfg.batch_size,
                      "max_concurrent_batches": cfg.max_batches, "poll_interval_seconds": cfg.poll_interval_s},
        "gemini": {"base_url": base_url, "max_enqueued_tokens": 1_000_000_000, "transport_retries": 4,
                   "retry_initial_wait_s": 0.05, "retry_max_wait_s": 0.5, "request_timeout_s": 60,
                   "hold_backoff_s": 0.5, "hold_backoff_max_s": 2.0, "min_result_fraction": 0.0},
    }
    path = root / "ocr_assets.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def emulator_config(cfg: ChaosConfig) -> EmulatorConfig:
    faults = FaultConfig(seed=cfg.seed, shuffle_results=True, fail_batches=list(cfg.fail_batches),
                         expire_batches=list(cfg.expire_batches), **cfg.record_faults)
    return EmulatorConfig(batch_latency_s=cfg.batch_latency_s, inline_wait_s=1.0, faults=faults,
                          max_active_batches=100, model_like={"enabled": cfg.model_like})


# -- the orchestrator process --------------------------------------------------------------------


class Orchestrator:
    """One orchestrator process; its stdout lines are collected on a thread."""

    def __init__(self, cfg: ChaosConfig, config: Path, log: Path):
        env = {k: v for k, v in os.environ.items()
               if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")}
        env["OCR_ASSETS_CONFIG"] = str(config)
        env["PYTHONUNBUFFERED"] = "1"
        if cfg.orchestrator == "cli":
            cli = Path(sys.executable).with_name("ocr-assets")
            command = [str(cli), "run", "--engine", "gemini-batch", "--config", str(config)]
        else:
            command = [sys.executable, "-c", CHILD, str(config), str(cfg.poll_interval_s), "50"]
        self.stderr = log.open("ab")
        self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self.stderr)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.started = threading.Event()
        self.cli = cfg.orchestrator == "cli"
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            # The CLI prints no "started" line: its first output means it is working.
            if line.startswith("started") or self.cli:
                self.started.set()
            self.lines.put(line)
        self.lines.put(None)

    def wait_started(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.started.wait(0.1) or self.proc.poll() is not None:
                return self.started.is_set()
        return False

    def kill(self) -> bool:
        """SIGKILL (True when it was still running)."""
        if self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        return True

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self.stderr.close()


class Bursts:
    """Switches endpoint 429/503 bursts on and off on the live emulator."""

    def __init__(self, server: EmulatorServer, cfg: ChaosConfig, rng: random.Random):
        self.server, self.cfg, self.rng = server, cfg, rng
        self.stop_event = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        kinds = ("429", "503")
        while not self.stop_event.wait(self.rng.uniform(*self.cfg.burst_every_s)):
            kind = kinds[self.count % 2]
            routes = BURST_429_ROUTES if kind == "429" else BURST_503_ROUTES
            rate = {"endpoint_429": self.cfg.burst_rate if kind == "429" else 0.0,
                    "endpoint_503": self.cfg.burst_rate if kind == "503" else 0.0}
            self.server.state.update_config({"faults": {**rate, "endpoint_routes": routes}})
            self.count += 1
            self.stop_event.wait(self.rng.uniform(*self.cfg.burst_s))
            self.server.state.update_config({"faults": {"endpoint_429": 0.0, "endpoint_503": 0.0}})

    def __enter__(self) -> "Bursts":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)
        self.server.state.update_config({"faults": {"endpoint_429": 0.0, "endpoint_503": 0.0}})


def _count_endpoint_faults(server: EmulatorServer) -> Counter:
    """Wrap the emulator's endpoint-fault hook to count what it injects (route:code)."""
    counts: Counter = Counter()
    original = server.state.endpoint_fault

    def counted(route: str) -> None:
        try:
            original(route)
        except ApiError as exc:
            counts[f"{route}:{exc.code}"] += 1
            raise

    server.state.endpoint_fault = counted  # type: ignore[method-assign]
    return counts


# -- the run -------------------------------------------------------------------------------------


def _unfinished(store: RecordStore) -> int:
    return store.unfinished_count()


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text("utf-8", "replace")[-chars:]
    except OSError:
        return "(no log)"


def run_chaos(cfg: ChaosConfig, *, log=print) -> ChaosReport:
    """Build the corpus, serve the faulty emulator, kill and restart the orchestrator, then audit."""
    shutil.rmtree(cfg.workdir, ignore_errors=True)
    cfg.workdir.mkdir(parents=True)
    rng = random.Random(cfg.seed)
    build_corpus(cfg.workdir, cfg.pages, cfg.pages_per_book, cfg.chain)
    server = EmulatorServer(emulator_config(cfg), answerer=EchoAnswerer()).start()
    endpoint_faults = _count_endpoint_faults(server)
    orchestrator_log = cfg.workdir / "orchestrator.log"
    try:
        config = write_settings(cfg.workdir, server.url, cfg)
        settings = load_settings(config, environ={})
        store = RecordStore(settings.paths.database, max_attempts=settings.execution.max_attempts)
        plan = build_plan(store, settings.paths.images_root, settings.paths.allow_list_root)
        if plan.pages_found != cfg.pages or plan.report:
            raise RuntimeError(f"plan found {plan.pages_found} pages, report {plan.report[:3]}")
        start = time.monotonic()
        kills = runs = crashes = 0
        with Bursts(server, cfg, rng):
            while time.monotonic() - start < cfg.timeout_s:
                runs += 1
                child = Orchestrator(cfg, config, orchestrator_log)
                try:
                    if kills < cfg.kills:
                        if not child.wait_started(timeout=180):
                            raise RuntimeError(f"orchestrator did not start:\n{_tail(orchestrator_log)}")
                        time.sleep(rng.uniform(*cfg.kill_after_s))
                        if child.kill():
                            kills += 1
                            log(f"SIGKILL #{kills} at {time.monotonic() - start:.1f} s "
                                f"({_unfinished(store)} records unfinished)")
                            continue
                    rc = child.wait(timeout=max(1.0, cfg.timeout_s - (time.monotonic() - start)))
                finally:
                    child.close()
                left = _unfinished(store)
                log(f"orchestrator run {runs} ended (rc {rc}) at {time.monotonic() - start:.1f} s "
                    f"({left} records unfinished)")
                if left == 0:
                    break
                if rc not in (0, None):
                    crashes += 1
                    if crashes >= 3:
                        raise RuntimeError(f"the orchestrator crashed {crashes} times:\n{_tail(orchestrator_log)}")
        wall = time.monotonic() - start
        return audit(settings, store, server, kills=kills, runs=runs, wall_s=wall,
                     endpoint_faults=dict(endpoint_faults))
    finally:
        server.stop()


# -- the audit -----------------------------------------------------------------------------------


def _epoch(naive_utc) -> float:
    return naive_utc.replace(tzinfo=UTC).timestamp()


def audit(settings: Settings, store: RecordStore, server: EmulatorServer, *, kills: int, runs: int,
          wall_s: float, endpoint_faults: dict[str, int]) -> ChaosReport:
    """Compare the corpus, the record store, the output files and the emulator's request log."""
    examples: dict[str, list[str]] = {}

    def note(kind: str, key: str) -> None:
        examples.setdefault(kind, [])
        if len(examples[kind]) < 20:
            examples[kind].append(key)

    max_attempts = settings.execution.max_attempts
    records = {r.key: r for r in store.records()}
    allow_root = Path(settings.paths.allow_list_root)
    allow_listed = set()
    for path in allow_root.rglob("*.json"):
        state, school, year = path.relative_to(allow_root).parts[:3]
        allow_listed.add(f"{state}:{school}:{year}:{path.stem}")
    active = {b.batch_id for b in store.batches(states=ACTIVE_BATCH_STATES)}
    terminal = unfinished = lost = 0
    for key in sorted(allow_listed - set(records)):
        lost += 1
        note("lost", key)
    for key, r in records.items():
        status = str(r.status)
        if status in ("SUCCESS", "FATAL_FAILURE", "BLOCKED") or (
                status == "RETRYABLE_FAILURE" and r.attempts >= max_attempts):
            terminal += 1
        else:
            unfinished += 1
            note("unfinished", f"{key} {status} attempts={r.attempts} batch={r.batch_id}")
        if status == "RUNNING" and r.batch_id not in active:
            lost += 1
            note("lost", f"{key} RUNNING in inactive batch {r.batch_id}")

    # When each SUCCESS was ingested (commit time of its inference_log row) and in which remote batch.
    ingested_at = {row["key"]: _epoch(row["t"]) for row in store.query(
        "SELECT key, min(created_at) AS t FROM inference_log WHERE success GROUP BY key")}
    remote_of = {row["batch_id"]: row["remote_name"] for row in store.query(
        "SELECT batch_id, remote_name FROM batches")}
    log_entries = server.state.request_log
    by_key: dict[str, list] = {}
    for entry in log_entries:
        by_key.setdefault(entry.key, []).append(entry)
    success_resent = resent_by_order = without_request = 0
    for key, r in records.items():
        if str(r.status) != "SUCCESS":
            continue
        entries = by_key.get(key, [])
        t_ingest = ingested_at.get(key)
        if t_ingest is None:
            without_request += 1
            note("success_without_request", f"{key}: no successful inference_log row")
        else:
            after = [e for e in entries if e.time > t_ingest]
            if after:
                success_resent += 1
                note("success_resent", f"{key} in {after[0].batch}")
        remote = remote_of.get(r.batch_id or "")
        mine = [e for e in entries if e.batch == remote]
        if not mine:
            without_request += 1
            note("success_without_request", f"{key}: no request in its batch {remote}")
            continue
        later = [e for e in entries if e.seq > max(e2.seq for e2 in mine)]
        if later:
            resent_by_order += 1
            note("success_resent_by_order", f"{key} in {later[0].batch}")

    # Output files: every *.json parses; temp files from killed writes are not outputs.
    output_root = Path(settings.paths.output_root)
    corrupt = temp = 0
    outputs: dict[str, Path] = {}
    for path in output_root.rglob("*") if output_root.exists() else []:
        if not path.is_file():
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            temp += 1
            continue
        try:
            read_output(path)
        except Exception as exc:  # noqa: BLE001 - any failure to read is a corrupt output
            corrupt += 1
            note("corrupt_outputs", f"{path}: {type(exc).__name__}")
            continue
        rel = path.relative_to(output_root).parts
        if len(rel) == 4 and rel[3].endswith(".json"):
            outputs[f"{rel[0]}:{rel[1]}:{rel[2]}:{rel[3][:-5]}"] = path
        else:
            corrupt += 1
            note("corrupt_outputs", f"{path}: not at an output path")

    disagreements = 0
    for key, r in records.items():
        expected = output_path(output_root, key)
        if str(r.status) != "SUCCESS":
            if key in outputs:
                disagreements += 1
                note("disagreements", f"{key}: output file but status {r.status}")
            continue
        why = _output_problem(key, r, expected)
        if why:
            disagreements += 1
            note("disagreements", f"{key}: {why}")

    snapshot = server.snapshot()
    return ChaosReport(
        pages=len(allow_listed), terminal=terminal, lost=lost, unfinished=unfinished,
        success_resent=success_resent, success_resent_by_order=resent_by_order,
        success_without_request=without_request, corrupt_outputs=corrupt, leftover_temp_files=temp,
        disagreements=disagreements, kills=kills, orchestrator_runs=runs, wall_s=wall_s,
        status_counts=dict(Counter(str(r.status) for r in records.values())), requests=len(log_entries),
        request_outcomes=dict(Counter(e.outcome for e in log_entries)),
        batch_events=dict(Counter(e["event"] for e in snapshot["events"])),
        endpoint_faults=endpoint_faults, examples=examples,
    )


def _output_problem(key: str, record, expected: Path) -> str | None:
    if not record.output_path or Path(record.output_path) != expected:
        return f"output_path {record.output_path} is not {expected}"
    if not expected.is_file():
        return "output file missing"
    if file_sha256(expected) != record.output_sha256:
        return "sha256 differs from the store"
    try:
        result = read_output(expected)
    except Exception as exc:  # noqa: BLE001
        return f"unreadable: {exc}"
    parsed = RecordKey.parse(key)
    book = parsed.book
    heading = result.raw_ocr.text_blocks[0].text if result.raw_ocr.text_blocks else ""
    info = result.page_info  # a model-like answer may print the page number in roman numerals
    page_ok = info.page_number == parsed.page or (info.page_number is None and info.page_label == roman(parsed.page))
    if not page_ok or result.school_name != book.school \
            or str(result.catalog_year) != str(book.year) or f"({book.state})" not in heading:
        return f"echoed identity {heading!r} / page {result.page_info.page_number} is not this page"
    digest = hashlib.sha256(Path(record.image_path).read_bytes()).hexdigest()[:16]
    if not any(b.text == f"image sha256 {digest}" for b in result.raw_ocr.text_blocks):
        return "echoed image digest is not this page's image"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--max-batches", type=int, default=20)
    parser.add_argument("--chain", type=int, default=3, help="longest page chain")
    parser.add_argument("--kill-after", type=float, nargs=2, default=(0.5, 15.0), metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--orchestrator", choices=("python", "cli"), default="python")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ocr_assets_chaos"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder (store, outputs, logs)")
    args = parser.parse_args()
    from bench._results import record

    cfg = ChaosConfig(pages=args.pages, kills=args.kills, seed=args.seed, batch_size=args.batch_size,
                      max_batches=args.max_batches, chain=args.chain, kill_after_s=tuple(args.kill_after),
                      orchestrator=args.orchestrator, timeout_s=args.timeout, workdir=args.workdir)
    report = run_chaos(cfg)
    problems = report.problems()
    record(f"chaos: {report.pages:,} pages, {report.kills} orchestrator SIGKILLs, faulty emulator", report.figures(),
           notes=("all targets met" if not problems else "TARGETS MISSED: " + "; ".join(problems))
           + f"; orchestrator = {args.orchestrator}, batch size {args.batch_size}, {args.max_batches} concurrent "
             f"batches, chains ≤ {args.chain}, seed {args.seed}")
    if report.examples:
        print(json.dumps(report.examples, indent=2)[:4000])
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
