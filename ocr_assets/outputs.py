"""Page outputs on disk: `output_root/state/school/year/page.json`, always written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from ocr_assets.keys import RecordKey
from ocr_assets.schema import OcrPageResult


def output_path(output_root: Path, key: str) -> Path:
    record = RecordKey.parse(key)
    book = record.book
    return Path(output_root, book.state, book.school, str(book.year), f"{record.page}.json")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def render_output(result: OcrPageResult) -> bytes:
    """The canonical bytes of a page output (deterministic, so replays are byte-identical)."""
    return render_text(result).encode("utf-8")


def render_text(result: OcrPageResult) -> str:
    """The canonical text of a page output (what `render_output` encodes)."""
    return file_text(result.to_json())


def file_text(page_json: str) -> str:
    """An output file's text from a page's `to_json()` (what `PageSuccess.output` holds)."""
    return page_json + "\n"


def write_output(output_root: Path, key: str, result: OcrPageResult) -> tuple[Path, str]:
    """Write one validated page output; returns (path, sha256 of the bytes written)."""
    data = render_output(result)
    path = output_path(output_root, key)
    atomic_write_bytes(path, data)
    return path, hashlib.sha256(data).hexdigest()


class WrittenOutput(NamedTuple):
    path: Path
    sha256: str
    text: str  # the canonical text written, for callers that also log the output


def write_outputs(
    output_root: Path, items: Iterable[tuple[str, str]], *, workers: int = 16
) -> dict[str, WrittenOutput]:
    """Write many outputs (key, the page's `to_json()`) atomically and durably, paying for durability
    once per batch.

    Each output is handed to a thread pool that writes and fsyncs it to a temp file, so the disk
    overlaps concurrent fsyncs. Only when every temp is durable are they renamed into place, and then
    each folder is fsynced once so the renames survive a crash too. A reader sees the old file or the
    new one, never a partial one.
    """
    staged: list[tuple[str, Path, str, Future[tuple[str, str]]]] = []
    folders: set[Path] = set()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="outputs") as pool:
            for key, page_json in items:
                text = file_text(page_json)
                path = output_path(output_root, key)
                if path.parent not in folders:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sweep_stale_temps(path.parent)
                    folders.add(path.parent)
                staged.append((key, path, text, pool.submit(_stage, path, text.encode("utf-8"))))
        for _, path, _, future in staged:
            os.replace(future.result()[0], path)
    except BaseException:
        for *_, future in staged:  # the pool is shut down: every future is done
            if future.exception() is None:
                Path(future.result()[0]).unlink(missing_ok=True)  # gone already if renamed
        raise
    for folder in folders:
        fsync_dir(folder)
    return {key: WrittenOutput(path, future.result()[1], text) for key, path, text, future in staged}


# A temp file is written, fsynced and renamed within a second; one this old was left by a killed
# process (it is never an output: readers only see renamed files) and is only litter.
STALE_TEMP_S = 600.0


def sweep_stale_temps(folder: Path, *, older_than_s: float = STALE_TEMP_S) -> int:
    """Delete temp files of ours in `folder` left by killed writers; returns how many were removed."""
    cutoff = time.time() - older_than_s
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:  # another sweeper got it first
            pass
    return removed


def _write_temp(path: Path, data: bytes) -> str:
    """Write `data` durably to a new temp file beside `path` (named so a sweep can find it); its path."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _stage(path: Path, data: bytes) -> tuple[str, str]:
    """A durable temp file for `path`: (temp path, sha256 of data)."""
    return _write_temp(path, data), hashlib.sha256(data).hexdigest()  # hashing a large buffer releases the GIL


def fsync_dir(folder: Path) -> None:
    """Make the renames in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_output(path: Path) -> OcrPageResult:
    return OcrPageResult.model_validate_json(Path(path).read_text(encoding="utf-8"))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
