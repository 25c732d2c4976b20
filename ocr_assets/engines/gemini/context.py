"""Where a page's upstream context comes from when it is not the upstream page's output.

`context_source: upstream_image` — the upstream page's image itself goes beside the page's own
(downscaled, see `requests.load_context_image`): no local pass and no wait, every page of a book is
runnable at once. The prompt variables carry the upstream image's digest, so a rescanned upstream
page changes the record's `vars_hash` like a changed upstream output would.

`context_source: local_ocr` — a fast local OCR pass over the upstream page's image supplies the
"previous page" context (text tail + last courses), so no page waits for its upstream and a whole
book fits in one batch instead of one batch per chain step. The pass is cached on disk per image
content (and local engine), so rebuilding a batch's prompts at ingest gives the same text the batch
was sent with, and a scan that appears more than once (blank versos, re-planned books) is read once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ocr_assets.core import EngineUnavailable, PageRequest, PageSuccess, PromptIdentity, SyncEngine
from ocr_assets.outputs import atomic_write_text
from ocr_assets.page_requests import ContextProvider
from ocr_assets.prompts import upstream_context
from ocr_assets.schema import OcrPageResult
from ocr_assets.settings import Settings
from ocr_assets.store import RecordRow, RecordStore

log = logging.getLogger(__name__)

LOCAL_OCR = "local_ocr"
UPSTREAM_IMAGE = "upstream_image"
DIGEST_MEMO_SIZE = 100_000


class ContextUnavailable(EngineUnavailable):
    """The local OCR context pass cannot run here (engine missing): the run's engine cannot work as
    configured, so callers report it as they report an unavailable engine."""


class ImageDigests:
    """SHA-256 of image files, remembered per (path, size, mtime): ingest rebuilds would hash a
    batch's upstream images again otherwise. Bounded, so a million-page run keeps no million entries."""

    def __init__(self) -> None:
        self._memo: OrderedDict[tuple[str, int, int], str] = OrderedDict()

    def of(self, image_path: str) -> str | None:
        """The digest, or None when the file cannot be read."""
        try:
            stat = os.stat(image_path)
        except OSError:
            return None
        stamp = (image_path, stat.st_size, stat.st_mtime_ns)
        digest = self._memo.get(stamp)
        if digest is None:
            try:
                with open(image_path, "rb") as fh:
                    digest = hashlib.file_digest(fh, "sha256").hexdigest()
            except OSError:
                return None
            self._memo[stamp] = digest
            if len(self._memo) > DIGEST_MEMO_SIZE:
                self._memo.popitem(last=False)
        return digest


class LocalOcrContext:
    """Context from a local OCR engine run on each upstream page image, cached per image content."""

    source = LOCAL_OCR

    def __init__(self, settings: Settings, store: RecordStore, *, engine: SyncEngine | None = None,
                 cache_dir: Path | None = None,
                 recognise: Callable[[list[PageRequest]], list[Any]] | None = None):
        self.settings = settings
        self.store = store
        self._engine = engine
        self._recognise = recognise
        self.cache_dir = Path(cache_dir) if cache_dir else Path(settings.paths.database).parent / "local_context"
        self.problems: dict[str, str] = {}
        self._digests = ImageDigests()

    def _get_engine(self) -> SyncEngine:
        if self._engine is None:
            try:
                from ocr_assets.engines.local import LocalInference
            except Exception as exc:  # any import failure means "not available here"
                raise ContextUnavailable(
                    f"context_source=local_ocr needs the local engine (ocr_assets.engines.local): {exc}"
                ) from None
            local = self.settings.local
            self._engine = LocalInference(engine=local.engine, device=local.device,
                                          batch_size=local.batch_size, model_dir=local.model_dir)
        return self._engine

    def _cache_name(self, image_path: str) -> str | None:
        """The cache file of an image: a digest of its bytes and the local engine (None: unreadable).

        The context depends only on the pixels (the pass runs without page number or previous
        context), so the record key and path stay out of the name.
        """
        digest = self._digests.of(image_path)
        if digest is None:
            return None
        engine = self.settings.local.engine
        return hashlib.sha256(f"{engine}|{digest}".encode()).hexdigest()[:32] + ".json"

    def contexts(self, records: Sequence[RecordRow]) -> dict[str, dict[str, Any] | None]:
        self.problems = {}
        upstream_keys = sorted({r.upstream_key for r in records if r.upstream_key})
        upstreams = self.store.get_many(upstream_keys)
        found: dict[str, dict[str, Any] | None] = {}
        # cache name (or the key, for an unreadable image) → upstream rows sharing that image content:
        # each distinct image is recognised once.
        todo: dict[str, list[RecordRow]] = {}
        for key in upstream_keys:
            row = upstreams.get(key)
            if row is None:
                self.problems[key] = f"upstream record {key} is not in the store"
                continue
            name = self._cache_name(row.image_path)
            if name is not None and (self.cache_dir / name).exists():
                try:
                    found[key] = json.loads((self.cache_dir / name).read_text(encoding="utf-8"))
                    continue
                except ValueError:
                    pass
            todo.setdefault(name or f"unreadable:{key}", []).append(row)
        if todo:
            firsts = [rows[0] for rows in todo.values()]
            requests = [
                PageRequest(key=row.key, book=row.book, page=row.page, image_path=Path(row.image_path), prompt="",
                            prompt_identity=PromptIdentity(name="local_context", version="1", vars_hash=""))
                for row in firsts
            ]
            outcomes = self._recognise(requests) if self._recognise else self._get_engine().infer(requests)
            by_key = {o.key: o for o in outcomes}
            for name, rows in todo.items():
                outcome = by_key.get(rows[0].key)
                if isinstance(outcome, PageSuccess):
                    context = upstream_context(outcome.result)
                elif isinstance(outcome, OcrPageResult):
                    context = upstream_context(outcome)
                else:
                    why = getattr(outcome, "message", None) or "no result"
                    for row in rows:
                        self.problems[row.key] = f"local OCR of upstream page {row.key} failed: {why}"
                    continue
                for row in rows:
                    found[row.key] = context
                if not name.startswith("unreadable:"):
                    atomic_write_text(self.cache_dir / name, json.dumps(context, sort_keys=True, ensure_ascii=False))
        return {r.key: found.get(r.upstream_key) if r.upstream_key else None for r in records}

    def problem_for(self, record: RecordRow) -> str | None:
        return self.problems.get(record.upstream_key or "")


class UpstreamImageContext:
    """Context = the upstream page's image, sent beside the page's own; the variables name its digest."""

    source = UPSTREAM_IMAGE

    def __init__(self, store: RecordStore):
        self.store = store
        self.problems: dict[str, str] = {}
        self.images: dict[str, Path] = {}  # record key → upstream image to send
        self._digests = ImageDigests()

    def contexts(self, records: Sequence[RecordRow]) -> dict[str, dict[str, Any] | None]:
        self.problems, self.images = {}, {}
        upstreams = self.store.get_many(sorted({r.upstream_key for r in records if r.upstream_key}))
        found: dict[str, dict[str, Any] | None] = {}
        for record in records:
            found[record.key] = None
            if not record.upstream_key:
                continue
            row = upstreams.get(record.upstream_key)
            digest = self._digests.of(row.image_path) if row is not None else None
            if digest is None:
                self.problems[record.key] = (
                    f"upstream record {record.upstream_key} is not in the store" if row is None
                    else f"upstream image {row.image_path} of {record.upstream_key} is unreadable"
                )
                continue
            found[record.key] = {"upstream_image": {"key": record.upstream_key, "sha256": digest[:16]}}
            self.images[record.key] = Path(row.image_path)
        return found

    def problem_for(self, record: RecordRow) -> str | None:
        return self.problems.get(record.key)


def provider_for(settings: Settings, store: RecordStore, *, local_engine: bool = False) -> ContextProvider | None:
    """The provider `gemini.context_source` names, for every Gemini engine (batch, real-time, flex); None
    means the upstream page's output (the pipeline's default), which is also what a `local_engine` gets."""
    if local_engine:
        return None
    if settings.gemini.context_source == LOCAL_OCR:
        return LocalOcrContext(settings, store)
    if settings.gemini.context_source == UPSTREAM_IMAGE:
        return UpstreamImageContext(store)
    return None
