"""Page outputs on disk: `output_root/state/school/year/page.json`, always written atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterable
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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class OutputFile(NamedTuple):
    """One page output to write: where, its bytes (canonical and deterministic, so a replay is
    byte-identical), and their sha256."""

    key: str
    path: Path
    data: bytes
    sha256: str

    @classmethod
    def of(cls, output_root: Path, key: str, page_json: bytes) -> OutputFile:
        """The output file of a page's `to_json_bytes()` (what `PageSuccess.output` holds) and a newline."""
        data = page_json + b"\n"
        return cls(key, output_path(output_root, key), data, hashlib.sha256(data).hexdigest())


def write_outputs(files: Iterable[OutputFile]) -> None:
    """Write many outputs atomically and durably, paying for durability once per batch.

    Every output goes to a temp file beside its target; one `sync_to_disk` then makes them all
    durable (an fsync per file is a device flush per file), and only then are they renamed into
    place, each folder fsynced once so the renames survive a crash too. A reader sees the old file
    or the new one, never a partial one.
    """
    staged: list[tuple[str, Path]] = []  # (temp, target) not renamed yet
    folders: set[Path] = set()
    try:
        for file in files:
            if file.path.parent not in folders:
                file.path.parent.mkdir(parents=True, exist_ok=True)
                sweep_stale_temps(file.path.parent)
                folders.add(file.path.parent)
            staged.append((_write_temp(file.path, file.data, durable=False), file.path))
        if staged:
            sync_to_disk()
        while staged:
            os.replace(*staged[-1])
            staged.pop()
    except BaseException:
        for tmp, _ in staged:  # never an output: only litter
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    for folder in folders:
        fsync_dir(folder)


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


def _write_temp(path: Path, data: bytes, *, durable: bool = True) -> str:
    """Write `data` to a new temp file beside `path` (named so a sweep can find it), fsynced unless
    the caller syncs many at once; its path. Created with the usual permissions (0666 less the
    umask), which the output keeps when renamed: a `mkstemp` file would make every output 0600."""
    while True:
        tmp = f"{path.parent}/.{path.name}.{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def sync_to_disk() -> None:
    """Make every file written so far durable, with one flush of the device.

    Linux's `sync` waits until the data is on disk; it also flushes other programs' pending writes,
    which is what one flush per batch costs instead of one per file.
    """
    os.sync()


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
