"""The Gemini Batch API, record-safe: JSONL in through the File API, results joined strictly by key.

- `encode` turns page requests into JSONL lines `{"key": <record key>, "request": {...}}` (images
  inline as base64 by default, or File API references reused across retries); `shard` keeps one
  input file under the size cap.
- `submit` uploads one JSONL (retried) and calls `batches.create` once: a 429 raises
  `CreateRefused` (hold and retry later, no attempt counted); any other failure raises
  `SubmitUncertain` (the job may exist: the runner adopts or releases it by display name).
- Every remote call goes through `calls` (`calls.BatchCalls`, the SDK in this process).
- `fetch` downloads the result file, archives it gzip-compressed BEFORE parsing, and parses each
  line by key: unknown keys, duplicates (first valid wins) and missing keys go to an integrity report.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ocr_assets.core import PageFailure, PageOutcome, PageRequest, PageSuccess
from ocr_assets.engines.gemini.calls import BatchCalls, GeminiCalls, RemoteJob, SubmitUncertain
from ocr_assets.engines.gemini.classify import classify_error_object, classify_response
from ocr_assets.engines.gemini.client import GeminiCallError, describe_error, scrub
from ocr_assets.engines.gemini.metering import Calibration, raw_estimate
from ocr_assets.engines.gemini.requests import (
    FileRef,
    ImageUnreadable,
    build_request,
    image_failure,
    jsonl_line,
    load_image,
    load_page_images,
)
from ocr_assets.outputs import atomic_write_bytes
from ocr_assets.schema import ErrorClass
from ocr_assets.settings import Settings
from ocr_assets.store import BatchState, RecordStore

log = logging.getLogger(__name__)

# JobState (SDK, after BATCH_STATE_* → JOB_STATE_* mapping) → our BatchState.
JOB_STATE_MAP = {
    "JOB_STATE_UNSPECIFIED": BatchState.PENDING,
    "JOB_STATE_QUEUED": BatchState.PENDING,
    "JOB_STATE_PENDING": BatchState.PENDING,
    "JOB_STATE_PAUSED": BatchState.PENDING,
    "JOB_STATE_RUNNING": BatchState.RUNNING,
    "JOB_STATE_UPDATING": BatchState.RUNNING,
    # CANCELLING may still end SUCCEEDED or FAILED: keep polling.
    "JOB_STATE_CANCELLING": BatchState.RUNNING,
    "JOB_STATE_SUCCEEDED": BatchState.SUCCEEDED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": BatchState.SUCCEEDED,
    "JOB_STATE_FAILED": BatchState.FAILED,
    "JOB_STATE_CANCELLED": BatchState.CANCELLED,
    "JOB_STATE_EXPIRED": BatchState.EXPIRED,
}
FILE_TTL = timedelta(hours=48)
# A File API reference is reused only while it has this much life left (a batch may wait a day).
FILE_REUSE_MARGIN = timedelta(hours=30)
KEY_SAMPLE = 20  # how many offending keys the integrity report lists by name


class BatchLine(BaseModel):
    """One record's JSONL line, with its token estimate."""

    key: str
    data: bytes
    raw_tokens: int
    estimated_tokens: int


class RemoteStatus(RemoteJob):
    """A remote job with its raw state mapped to ours."""

    state: BatchState


class IntegrityReport(BaseModel):
    """What the result file held, joined by key against the records submitted in the batch."""

    batch_id: str
    remote_name: str | None = None
    remote_state: str | None = None
    submitted: int = 0
    lines: int = 0
    parsed: int = 0  # lines that joined to a submitted key (duplicates counted once)
    succeeded: int = 0
    failed: int = 0  # error/status lines and unusable answers
    unknown_count: int = 0
    unknown_keys: list[str] = Field(default_factory=list)
    duplicate_count: int = 0
    duplicate_keys: list[str] = Field(default_factory=list)
    missing_count: int = 0
    missing_keys: list[str] = Field(default_factory=list)
    malformed_lines: int = 0
    # Cross-check against the within-batch index: how many lines sat at a position other than
    # their record's index (what a positional join would have got wrong).
    out_of_position: int = 0
    result_fraction: float = 0.0
    alert: str | None = None
    archive_path: str | None = None
    archive_sha256: str | None = None
    from_archive: bool = False


def shard(lines: Sequence[BatchLine], *, max_bytes: int, max_records: int, max_tokens: int | None = None,
          max_shards: int | None = None) -> list[list[BatchLine]]:
    """Split lines (in order) into shards under the byte, record and token caps.

    A line that alone exceeds the byte or record cap still gets its own shard (the API then judges
    it). `max_tokens` is strict: lines beyond the token room are left out (they wait for a later
    wave), as are lines beyond `max_shards`.
    """
    shards: list[list[BatchLine]] = []
    current: list[BatchLine] = []
    size = tokens = total_tokens = 0
    for line in lines:
        if max_tokens is not None and total_tokens + line.estimated_tokens > max_tokens:
            break
        if current and (size + len(line.data) > max_bytes or len(current) >= max_records):
            shards.append(current)
            if max_shards is not None and len(shards) >= max_shards:
                return shards
            current, size, tokens = [], 0, 0
        current.append(line)
        size += len(line.data)
        tokens += line.estimated_tokens
        total_tokens += line.estimated_tokens
    if current and (max_shards is None or len(shards) < max_shards):
        shards.append(current)
    return shards


def parse_results(
    data: bytes, members: dict[str, int], *, batch_id: str, model: str = ""
) -> tuple[list[PageOutcome], IntegrityReport]:
    """Join result lines to records strictly by `key` (never by position).

    Lines with a key that was not submitted are counted and ignored; duplicates keep the first
    valid answer; submitted keys without a line are reported missing (the caller requeues them).
    """
    report = IntegrityReport(batch_id=batch_id, submitted=len(members))
    chosen: dict[str, PageOutcome] = {}
    unknown: list[str] = []
    duplicates: list[str] = []
    position = 0
    for raw in data.splitlines():
        if not raw.strip():
            continue
        report.lines += 1
        position += 1
        try:
            obj: Any = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # deep nesting is hostile input too
            report.malformed_lines += 1
            continue
        key = obj.get("key") if isinstance(obj, dict) else None
        if not isinstance(key, str):
            report.malformed_lines += 1
            continue
        if key not in members:
            unknown.append(key)
            continue
        if members[key] != position - 1:
            report.out_of_position += 1
        if "response" in obj and isinstance(obj["response"], dict):
            outcome: PageOutcome = classify_response(key, obj["response"], model=model)
        elif "error" in obj or "status" in obj:
            outcome = classify_error_object(key, obj.get("error") or obj.get("status"), model=model, raw=obj)
        else:
            outcome = PageFailure(
                key=key, error_class=ErrorClass.RETRYABLE, error_type="malformed_result_line",
                message="result line has neither a response nor an error", raw_response=scrub(raw[:10_000]),
                model=model,
            )
        previous = chosen.get(key)
        if previous is None:
            chosen[key] = outcome
        else:
            duplicates.append(key)
            if not isinstance(previous, PageSuccess) and isinstance(outcome, PageSuccess):
                chosen[key] = outcome  # first VALID answer wins
    missing = sorted(set(members) - set(chosen), key=lambda k: members[k])
    report.parsed = len(chosen)
    report.succeeded = sum(isinstance(o, PageSuccess) for o in chosen.values())
    report.failed = report.parsed - report.succeeded
    report.unknown_count, report.unknown_keys = len(unknown), unknown[:KEY_SAMPLE]
    report.duplicate_count, report.duplicate_keys = len(duplicates), sorted(set(duplicates))[:KEY_SAMPLE]
    report.missing_count, report.missing_keys = len(missing), missing[:KEY_SAMPLE]
    report.result_fraction = round(report.parsed / len(members), 4) if members else 1.0
    ordered = sorted(chosen.values(), key=lambda o: members[o.key])
    return ordered, report


def _reason(exc: BaseException) -> str:
    """Our call errors carry a scrubbed message already; anything else is described."""
    return str(exc) if isinstance(exc, GeminiCallError) else describe_error(exc)


class GeminiBatchClient:
    """submit / poll / fetch / cancel for Gemini batch jobs, plus the local result archive."""

    def __init__(self, settings: Settings, client: Any = None, *, store: RecordStore | None = None,
                 calls: BatchCalls | None = None):
        """`client`: a `genai.Client` (built on first use when None); `calls` replaces it altogether."""
        self.settings = settings
        self.model = settings.model.name
        self.calls: BatchCalls = calls if calls is not None else GeminiCalls(settings, client)
        self.store = store
        g = settings.gemini
        self.archive_dir = Path(g.archive_dir) if g.archive_dir else Path(settings.paths.database).parent / "batch_archive"

    def __repr__(self) -> str:
        return f"GeminiBatchClient(model={self.model!r}, archive_dir={str(self.archive_dir)!r})"

    # -- encode ----------------------------------------------------------------------------

    def encode(
        self, requests: Sequence[PageRequest], calibration: Calibration | None = None
    ) -> tuple[list[BatchLine], list[PageFailure]]:
        """JSONL lines for the requests; unreadable images come back as fatal failures instead."""
        calibration = calibration or Calibration(model=self.model)
        refs: dict[str, FileRef] = {}
        if not self.settings.gemini.inline_images:
            refs = self.ensure_file_refs([r.image_path for r in requests])

        def one(request: PageRequest) -> BatchLine | PageFailure:
            try:
                image, context_image = load_page_images(request, self.settings)
            except ImageUnreadable as exc:
                return image_failure(request.key, exc, self.model)
            ref = refs.get(str(request.image_path))
            body = build_request(request, self.settings, image=None if ref else image, file_ref=ref,
                                 context_image=context_image)
            raw = raw_estimate(request.prompt, image.width, image.height,
                               media_resolution=self.settings.model.generation.media_resolution, model=self.model,
                               extra_images=[(context_image.width, context_image.height)] if context_image else ())
            return BatchLine(key=request.key, data=jsonl_line(request.key, body), raw_tokens=raw,
                             estimated_tokens=calibration.estimate(raw))

        workers = min(8, max(1, len(requests) // 16))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(one, requests))
        else:
            results = [one(r) for r in requests]
        lines = [r for r in results if isinstance(r, BatchLine)]
        failures = [r for r in results if isinstance(r, PageFailure)]
        return lines, failures

    # -- File API image references -----------------------------------------------------------

    def _file_entries(self) -> dict[str, dict]:
        if self.store is None:
            return {}
        entries = {}
        for name, value in self.store.kv_with_prefix("gemini:file:").items():
            try:
                entries[name] = json.loads(value)
            except ValueError:
                continue
        return entries

    def file_storage_used(self, now: datetime | None = None) -> int:
        """Bytes of uploaded images still alive (against the 20 GB per-project File API cap)."""
        now = now or datetime.now(UTC)
        return sum(
            e.get("size", 0) for e in self._file_entries().values()
            if datetime.fromisoformat(e["expires_at"]) > now
        )

    def ensure_file_refs(self, paths: Sequence[Path]) -> dict[str, FileRef]:
        """Uploaded File API references for these images: reused while alive, re-uploaded when
        expired or close to it; images that would exceed the storage cap stay inline."""
        now = datetime.now(UTC)
        entries = self._file_entries()
        used = sum(e.get("size", 0) for e in entries.values() if datetime.fromisoformat(e["expires_at"]) > now)
        refs: dict[str, FileRef] = {}
        todo: list[tuple[Path, str, bytes]] = []
        for path in dict.fromkeys(Path(p) for p in paths):
            try:
                data = path.read_bytes()
            except OSError:
                continue  # encode reports the unreadable image
            digest = hashlib.sha256(data).hexdigest()
            entry = entries.get(f"gemini:file:{digest}")
            if entry and datetime.fromisoformat(entry["expires_at"]) - now > FILE_REUSE_MARGIN:
                refs[str(path)] = FileRef(name=entry["name"], uri=entry["uri"], mime_type=entry["mime_type"])
                continue
            if used + len(data) > self.settings.gemini.file_storage_limit_bytes:
                log.warning("File API storage cap reached (%d bytes used); %s goes inline", used, path)
                continue
            used += len(data)
            todo.append((path, digest, data))

        def upload(item: tuple[Path, str, bytes]) -> tuple[Path, str, dict] | None:
            path, digest, _ = item
            try:
                image = load_image(path)
                uploaded = self.calls.upload(image.data, mime_type=image.mime_type, display_name=digest[:40])
            except Exception as exc:  # one flaky upload → that page goes inline
                log.warning("image upload failed for %s (inline instead): %s", path, _reason(exc))
                return None
            expires = uploaded.expiration_time or (now + FILE_TTL)
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            return path, digest, {
                "name": uploaded.name, "uri": uploaded.uri or uploaded.name, "mime_type": image.mime_type,
                "size": len(image.data), "expires_at": expires.isoformat(),
            }

        with ThreadPoolExecutor(max_workers=self.settings.gemini.upload_concurrency) as pool:
            done = [r for r in pool.map(upload, todo) if r is not None]
        if done and self.store is not None:
            self.store.kv_set_many({f"gemini:file:{digest}": json.dumps(entry) for _, digest, entry in done})
        for path, _, entry in done:
            refs[str(path)] = FileRef(name=entry["name"], uri=entry["uri"], mime_type=entry["mime_type"])
        return refs

    # -- remote calls ----------------------------------------------------------------------

    def upload_jsonl(self, data: bytes, display_name: str) -> str:
        try:
            return self.calls.upload(data, mime_type="jsonl", display_name=display_name).name
        except Exception as exc:
            raise SubmitUncertain(f"input upload failed: {_reason(exc)}", definite=True) from None

    def create(self, input_file: str, display_name: str) -> str:
        """`batches.create` exactly once (a blind retry could create a duplicate job)."""
        return self.calls.create_batch(model=self.model, src=input_file, display_name=display_name)

    def submit(self, lines: Sequence[BatchLine] | bytes, display_name: str) -> tuple[str, str]:
        """Upload the JSONL and create the job; returns (remote batch name, input file name)."""
        data = lines if isinstance(lines, bytes) else b"".join(line.data for line in lines)
        input_file = self.upload_jsonl(data, display_name)
        return self.create(input_file, display_name), input_file

    @staticmethod
    def _status(job: RemoteJob) -> RemoteStatus:
        return RemoteStatus(state=JOB_STATE_MAP.get(job.raw_state, BatchState.PENDING), **job.model_dump())

    def poll(self, name: str) -> RemoteStatus:
        """One cheap GET; our BatchState for the remote job."""
        return self._status(self.calls.get_batch(name))

    def find_by_display_name(self, display_name: str, *, page_size: int = 100) -> RemoteStatus | None:
        """The job created with this display name (our batch id), if any: crash recovery."""
        for job in self.calls.list_batches(page_size=page_size):
            if job.display_name == display_name:
                return self._status(job)
        return None

    def cancel(self, name: str) -> None:
        self.calls.cancel_batch(name)

    def delete_file(self, name: str) -> None:
        """Best effort: free File API storage (inputs are useless once a batch is done)."""
        self.calls.delete_file(name)

    # -- results ---------------------------------------------------------------------------

    def archive_path(self, batch_id: str) -> Path:
        return self.archive_dir / f"{batch_id}.results.jsonl.gz"

    def archive(self, batch_id: str, data: bytes) -> Path:
        """Save the raw result file (gzip, mtime 0 so equal inputs give equal bytes) before parsing.

        An existing archive with different content is kept beside it, never overwritten.
        """
        path = self.archive_path(batch_id)
        packed = gzip.compress(data, mtime=0)
        if path.exists():
            if path.read_bytes() == packed:
                return path
            n = 1
            while path.with_name(f"{path.name}.{n}").exists():
                n += 1
            os.replace(path, path.with_name(f"{path.name}.{n}"))
        atomic_write_bytes(path, packed)
        return path

    def read_archive(self, batch_id: str) -> bytes:
        path = self.archive_path(batch_id)
        if not path.exists():
            raise FileNotFoundError(f"no archived result file for batch {batch_id} at {path}")
        return gzip.decompress(path.read_bytes())

    def download(self, file_name: str) -> bytes:
        return self.calls.download(file_name)

    def fetch(
        self, batch_id: str, remote_name: str | None, members: dict[str, int], *, from_archive: bool = False,
        status: RemoteStatus | None = None,
    ) -> tuple[list[PageOutcome], IntegrityReport]:
        """Download (or read the archive of) a batch's results, archive them, parse by key."""
        if from_archive:
            data = self.read_archive(batch_id)
            path: Path | None = self.archive_path(batch_id)
        else:
            if status is None:
                if not remote_name:
                    raise ValueError(f"batch {batch_id} has no remote job to fetch")
                status = self.poll(remote_name)
            if status.result_file:
                data = self.download(status.result_file)
                path = self.archive(batch_id, data)
            else:
                data, path = b"", None
        outcomes, report = parse_results(data, members, batch_id=batch_id, model=self.model)
        report.remote_name = remote_name
        report.remote_state = status.raw_state if status else None
        report.from_archive = from_archive
        if path is not None:
            report.archive_path = str(path)
            report.archive_sha256 = hashlib.sha256(data).hexdigest()
        return outcomes, report
