"""Page outputs on disk: `output_root/state/school/year/page.json`, always written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ocr_assets.keys import RecordKey
from ocr_assets.schema import OcrPageResult


def output_path(output_root: Path, key: str) -> Path:
    record = RecordKey.parse(key)
    book = record.book
    return Path(output_root, book.state, book.school, str(book.year), f"{record.page}.json")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def render_output(result: OcrPageResult) -> bytes:
    """The canonical bytes of a page output (deterministic, so replays are byte-identical)."""
    return (result.to_json() + "\n").encode("utf-8")


def write_output(output_root: Path, key: str, result: OcrPageResult) -> tuple[Path, str]:
    """Write one validated page output; returns (path, sha256 of the bytes written)."""
    data = render_output(result)
    path = output_path(output_root, key)
    atomic_write_bytes(path, data)
    return path, hashlib.sha256(data).hexdigest()


def write_outputs(
    output_root: Path, items: Sequence[tuple[str, OcrPageResult]], *, workers: int = 8
) -> dict[str, tuple[Path, str]]:
    """Write many outputs; fsync latency dominates, so overlap it on a small thread pool."""
    if len(items) <= 2:
        return {key: write_output(output_root, key, result) for key, result in items}
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="outputs") as pool:
        written = pool.map(lambda item: (item[0], write_output(output_root, *item)), items)
        return dict(written)


def read_output(path: Path) -> OcrPageResult:
    return OcrPageResult.model_validate_json(Path(path).read_text(encoding="utf-8"))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
