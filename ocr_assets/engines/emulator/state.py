"""Everything the emulator remembers: files, upload sessions, context caches, batches, the request log
and the batch lifecycle log, behind one lock, with an adjustable clock.

HTTP-agnostic: `server.py` parses requests and calls these methods, which return JSON-ready dicts or raise
`ApiError`. The API key is reduced to an owner digest on arrival and never stored, logged or echoed.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ocr_assets.engines.emulator import faults as fault_rules
from ocr_assets.engines.emulator.answers import (
    AnswerRequest,
    Answerer,
    EchoAnswerer,
    Image,
    estimate_prompt_tokens,
)
from ocr_assets.engines.emulator.config import EmulatorConfig
from ocr_assets.engines.emulator.records import CLEAN_OUTCOMES, BatchEvent, Prepared, RequestLogEntry
from ocr_assets.engines.emulator.wire import (
    ApiError,
    ImageRef,
    content_of,
    field as wire_field,
    parse_duration,
    parse_time,
    rfc3339,
)

_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


def new_id(length: int = 16) -> str:
    """Lowercase alphanumeric ids: the SDK's `t_file_name` only accepts `[a-z0-9]+` in file URIs."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class StoredFile:
    id: str
    owner: str
    mime_type: str
    data: bytes
    create_time: float
    expire_time: float
    source: str  # UPLOADED | GENERATED
    display_name: str | None = None

    @property
    def name(self) -> str:
        return f"files/{self.id}"

    def to_json(self, base: str, version: str) -> dict[str, Any]:
        digest = hashlib.sha256(self.data).hexdigest()
        out: dict[str, Any] = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.data)),
            "createTime": rfc3339(self.create_time),
            "updateTime": rfc3339(self.create_time),
            "expirationTime": rfc3339(self.expire_time),
            "sha256Hash": base64.b64encode(digest.encode()).decode(),
            "uri": f"{base}/{version}/files/{self.id}",
            "state": "ACTIVE",
            "source": self.source,
        }
        if self.display_name:
            out["displayName"] = self.display_name
        if self.source == "GENERATED":
            out["downloadUri"] = f"{base}/{version}/files/{self.id}:download?alt=media"
        return out


@dataclass
class UploadSession:
    id: str
    owner: str
    file_id: str
    mime_type: str
    declared_size: int | None
    display_name: str | None
    received: bytearray = field(default_factory=bytearray)


@dataclass
class CachedContent:
    id: str
    owner: str
    model: str
    texts: list[str]
    images: list[Image]
    token_count: int
    create_time: float
    update_time: float
    expire_time: float
    display_name: str | None = None

    @property
    def name(self) -> str:
        return f"cachedContents/{self.id}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "model": self.model,
            "createTime": rfc3339(self.create_time),
            "updateTime": rfc3339(self.update_time),
            "expireTime": rfc3339(self.expire_time),
            "usageMetadata": {"totalTokenCount": self.token_count},
        }
        if self.display_name:
            out["displayName"] = self.display_name
        return out


def model_name(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def page(items: list[Any], page_size: Any, page_token: Any, default_size: int) -> tuple[list[Any], str | None]:
    """One page of `items` and the next page token (an offset)."""
    try:
        size = min(1000, max(1, int(page_size))) if page_size else default_size
        start = int(page_token) if page_token else 0
    except (TypeError, ValueError):
        raise ApiError(400, "invalid pageSize or pageToken") from None
    chunk = items[start:start + size]
    return chunk, (str(start + size) if start + size < len(items) else None)


class EmulatorState:
    """The emulator's memory; every public method is thread-safe."""

    def __init__(self, config: EmulatorConfig | None = None, answerer: Answerer | None = None):
        self.config = config or EmulatorConfig()
        self.answerer: Answerer = answerer or EchoAnswerer()
        self.lock = threading.RLock()
        self.inference_slots = threading.BoundedSemaphore(self.config.inference_concurrency)
        self._clock_offset = 0.0
        self._files: dict[str, StoredFile] = {}
        self._uploads: dict[str, UploadSession] = {}
        self._caches: dict[str, CachedContent] = {}
        self._attempts: dict[str, int] = defaultdict(int)
        self._route_calls: dict[str, int] = defaultdict(int)
        self._request_log: list[RequestLogEntry] = []
        self._events: list[BatchEvent] = []

    # -- clock, config, logs ---------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self._clock_offset

    def shift_clock(self, seconds: float) -> float:
        """Move the emulated clock forward (file TTLs, cache expiry); returns now().
        `EmulatorServer.advance_clock` also brings the batches up to date."""
        with self.lock:
            self._clock_offset += float(seconds)
            return self.now()

    def update_config(self, patch: dict[str, Any]) -> EmulatorConfig:
        with self.lock:
            self.config = self.config.merged(patch)
            return self.config

    @property
    def request_log(self) -> list[RequestLogEntry]:
        with self.lock:
            return [entry.model_copy() for entry in self._request_log]

    @property
    def events(self) -> list[BatchEvent]:
        with self.lock:
            return [event.model_copy() for event in self._events]

    def snapshot(self) -> dict[str, Any]:
        """The request and event logs as JSON (`EmulatorServer.snapshot` adds the batches)."""
        with self.lock:
            return {
                "requests": [e.model_dump(mode="json") for e in self._request_log],
                "events": [e.model_dump(mode="json") for e in self._events],
                "max_enqueued_tokens_seen": max((e.enqueued_tokens for e in self._events), default=0),
            }

    def next_attempt(self, key: str) -> int:
        with self.lock:
            self._attempts[key] += 1
            return self._attempts[key]

    def log_request(self, prepared: Prepared | None, *, key: str, batch: str, attempt: int, outcome: str,
                    delivered: bool | None, model: str, prompt_tokens: int = 0, output_tokens: int = 0,
                    cached_tokens: int = 0, thoughts_tokens: int = 0,
                    invalid_field: str | None = None) -> RequestLogEntry:
        with self.lock:
            entry = RequestLogEntry(
                seq=len(self._request_log) + 1, key=key, batch=batch, time=self.now(), model=model,
                prompt=prepared.request.prompt if prepared else "",
                image_digest=prepared.image_digest if prepared else None,
                images=prepared.image_count if prepared else 0, attempt=attempt, outcome=outcome,
                clean=outcome in CLEAN_OUTCOMES, delivered=delivered,
                cached_content=prepared.cache_name if prepared else None,
                prompt_tokens=prompt_tokens, output_tokens=output_tokens, cached_tokens=cached_tokens,
                thoughts_tokens=thoughts_tokens, invalid_field=invalid_field,
                response_schema=prepared.request.response_schema if prepared else None,
                thinking=prepared.thinking if prepared else None,
                media_resolution=prepared.media_resolution if prepared else None,
                image_sources=list(prepared.image_sources) if prepared else [],
            )
            self._request_log.append(entry)
            return entry

    def log_event(self, event: str, batch: str | None, tokens: int, *, enqueued_tokens: int, active_batches: int,
                  detail: str | None = None) -> None:
        with self.lock:
            self._events.append(BatchEvent(
                seq=len(self._events) + 1, time=self.now(), event=event, batch=batch, tokens=tokens,
                enqueued_tokens=enqueued_tokens, active_batches=active_batches, detail=detail,
            ))

    # -- auth and endpoint faults ----------------------------------------------------------------------

    def authenticate(self, api_key: str | None) -> str:
        """The owner digest for `api_key`; raises 403/400 without ever echoing the key."""
        if not api_key:
            raise ApiError(403, "Method doesn't allow unregistered callers (callers without established "
                                "identity). Please use an API key.")
        allowed = self.config.api_keys
        if allowed is not None and api_key not in {k.get_secret_value() for k in allowed}:
            raise ApiError(400, "API key not valid. Please pass a valid API key.")
        return hashlib.sha256(f"emulator-owner:{api_key}".encode()).hexdigest()[:16]

    def endpoint_fault(self, route: str) -> None:
        with self.lock:
            self._route_calls[route] += 1
            call = self._route_calls[route]
            faults = self.config.faults
        code = fault_rules.endpoint_fault(faults, route, call)
        if code == 429:
            raise ApiError(429, "Resource has been exhausted (e.g. check quota).")
        if code == 503:
            raise ApiError(503, "The service is currently unavailable.")

    def route_call_count(self, route: str) -> int:
        with self.lock:
            return self._route_calls[route]

    # -- files -----------------------------------------------------------------------------------------

    def _live_file(self, file_id: str, owner: str) -> StoredFile:
        stored = self._files.get(file_id)
        if stored is None or stored.expire_time <= self.now():
            if stored is not None:
                del self._files[file_id]
            raise ApiError(404, f"File files/{file_id} not found (it may have expired).")
        if stored.owner != owner:
            raise ApiError(403, f"You do not have permission to access the File files/{file_id} "
                                "or it may not exist.")
        return stored

    def start_upload(self, owner: str, meta: dict[str, Any], declared_size: int | None,
                     header_mime: str | None) -> UploadSession:
        requested = wire_field(meta, "name")
        with self.lock:
            if requested:
                file_id = str(requested).removeprefix("files/")
                if not _ID_PATTERN.fullmatch(file_id):
                    raise ApiError(400, f"Invalid file name files/{file_id}: use [a-z0-9-], at most 40 characters.")
                if file_id in self._files and self._files[file_id].expire_time > self.now():
                    raise ApiError(409, f"File files/{file_id} already exists.")
            else:
                file_id = new_id()
            session = UploadSession(
                id=new_id(24), owner=owner, file_id=file_id,
                mime_type=header_mime or wire_field(meta, "mimeType") or "application/octet-stream",
                declared_size=declared_size, display_name=wire_field(meta, "displayName"),
            )
            self._uploads[session.id] = session
            return session

    def upload_chunk(self, upload_id: str, command: str, offset: int | None,
                     data: bytes) -> tuple[str, StoredFile | None, int]:
        """Apply one resumable-upload command; returns (upload status, the file once final, bytes received)."""
        commands = {c.strip() for c in command.lower().split(",") if c.strip()}
        with self.lock:
            session = self._uploads.get(upload_id)
            if session is None:
                raise ApiError(404, "Upload session not found (finalized, cancelled or never started).")
            if "cancel" in commands:
                del self._uploads[upload_id]
                return "cancelled", None, len(session.received)
            if "query" in commands:
                return "active", None, len(session.received)
            if "upload" in commands:
                if offset is not None and offset != len(session.received):
                    raise ApiError(400, f"Upload offset {offset} does not match {len(session.received)} "
                                        "bytes received so far.")
                session.received.extend(data)
            if "finalize" not in commands:
                return "active", None, len(session.received)
            if session.declared_size is not None and session.declared_size != len(session.received):
                del self._uploads[upload_id]
                raise ApiError(400, f"Upload finalized with {len(session.received)} bytes; "
                                    f"{session.declared_size} were declared.")
            del self._uploads[upload_id]
            now = self.now()
            stored = StoredFile(
                id=session.file_id, owner=session.owner, mime_type=session.mime_type,
                data=bytes(session.received), create_time=now, expire_time=now + self.config.file_ttl_s,
                source="UPLOADED", display_name=session.display_name,
            )
            self._files[stored.id] = stored
            return "final", stored, len(stored.data)

    def add_generated_file(self, owner: str, file_id: str, data: bytes, mime_type: str,
                           display_name: str | None = None) -> StoredFile:
        with self.lock:
            now = self.now()
            stored = StoredFile(id=file_id, owner=owner, mime_type=mime_type, data=data, create_time=now,
                                expire_time=now + self.config.file_ttl_s, source="GENERATED",
                                display_name=display_name)
            self._files[file_id] = stored
            return stored

    def get_file(self, owner: str, file_id: str) -> StoredFile:
        with self.lock:
            return self._live_file(file_id, owner)

    def delete_file(self, owner: str, file_id: str) -> None:
        with self.lock:
            self._live_file(file_id, owner)
            del self._files[file_id]

    def list_files(self, owner: str) -> list[StoredFile]:
        with self.lock:
            now = self.now()
            return sorted((f for f in self._files.values() if f.owner == owner and f.expire_time > now),
                          key=lambda f: f.create_time, reverse=True)

    def download_file(self, owner: str, file_id: str) -> StoredFile:
        with self.lock:
            stored = self._live_file(file_id, owner)
            if stored.source != "GENERATED":
                raise ApiError(400, "Only generated files can be downloaded; uploaded files cannot.")
            return stored

    # -- context caches --------------------------------------------------------------------------------

    def create_cache(self, owner: str, body: dict[str, Any]) -> CachedContent:
        model = wire_field(body, "model")
        if not model:
            raise ApiError(400, "cachedContents.create needs a model.")
        content = content_of(wire_field(body, "systemInstruction"), body.get("contents"))
        with self.lock:
            images = [self._resolve_image(owner, ref) for ref in content.images]
            now = self.now()
            tokens = estimate_prompt_tokens("\n".join(content.texts), len(images))
            if tokens < self.config.min_cache_tokens:
                raise ApiError(400, f"Cached content is too small. total_token_count={tokens}, "
                                    f"min_total_token_count={self.config.min_cache_tokens}")
            cache = CachedContent(
                id=new_id(), owner=owner, model=model_name(model), texts=content.texts, images=images,
                token_count=tokens, create_time=now, update_time=now,
                expire_time=self._expiry(body, now), display_name=wire_field(body, "displayName"),
            )
            self._caches[cache.id] = cache
            return cache

    def _expiry(self, body: dict[str, Any], now: float) -> float:
        if (ttl := body.get("ttl")) is not None:
            return now + parse_duration(ttl)
        if (expire := wire_field(body, "expireTime")) is not None:
            return parse_time(expire)
        return now + self.config.cache_default_ttl_s

    def _live_cache(self, owner: str, cache_id: str) -> CachedContent:
        cache = self._caches.get(cache_id)
        if cache is None or cache.expire_time <= self.now():
            raise ApiError(404, f"CachedContent cachedContents/{cache_id} not found (it may have expired).")
        if cache.owner != owner:
            raise ApiError(403, f"You do not have permission to access CachedContent cachedContents/{cache_id}.")
        return cache

    def get_cache(self, owner: str, cache_id: str) -> CachedContent:
        with self.lock:
            return self._live_cache(owner, cache_id)

    def update_cache(self, owner: str, cache_id: str, body: dict[str, Any]) -> CachedContent:
        with self.lock:
            cache = self._live_cache(owner, cache_id)
            now = self.now()
            if body.get("ttl") is not None or wire_field(body, "expireTime") is not None:
                cache.expire_time = self._expiry(body, now)
            cache.update_time = now
            return cache

    def delete_cache(self, owner: str, cache_id: str) -> None:
        with self.lock:
            self._live_cache(owner, cache_id)
            del self._caches[cache_id]

    def list_caches(self, owner: str) -> list[CachedContent]:
        with self.lock:
            now = self.now()
            return sorted((c for c in self._caches.values() if c.owner == owner and c.expire_time > now),
                          key=lambda c: c.create_time, reverse=True)

    # -- requests --------------------------------------------------------------------------------------

    def _resolve_image(self, owner: str, ref: ImageRef) -> Image:
        if ref.data is not None:
            return Image(data=ref.data, mime_type=ref.mime_type)
        try:
            stored = self._live_file(ref.file_id or "", owner)
        except ApiError:
            raise ApiError(403, f"You do not have permission to access the File files/{ref.file_id} "
                                "or it may not exist.") from None
        return Image(data=stored.data, mime_type=ref.mime_type or stored.mime_type)

    def prepare(self, owner: str, key: str, model: str, body: dict[str, Any]) -> Prepared:
        """Resolve a GenerateContentRequest (cache, file references) into what the answerer sees."""
        if not isinstance(body, dict):
            raise ApiError(400, "request must be a GenerateContentRequest object")
        if not body.get("contents"):
            raise ApiError(400, "* GenerateContentRequest.contents: contents is not specified")
        model = model_name(model)
        content = content_of(wire_field(body, "systemInstruction"), body.get("contents"))
        with self.lock:
            cache = None
            if cache_ref := wire_field(body, "cachedContent"):
                cache = self._live_cache(owner, str(cache_ref).removeprefix("cachedContents/"))
                if cache.model != model:
                    raise ApiError(400, f"Model used by GenerateContent request ({model}) and CachedContent "
                                        f"({cache.model}) has to be the same.")
            images = [self._resolve_image(owner, ref) for ref in content.images]
        texts = (cache.texts if cache else []) + content.texts
        all_images = (cache.images if cache else []) + images
        generation = wire_field(body, "generationConfig") or {}
        max_tokens = wire_field(generation, "maxOutputTokens")
        thinking = wire_field(generation, "thinkingConfig")
        if isinstance(thinking, dict):  # proto JSON takes both spellings (the SDK sends snake_case here)
            thinking = {name: wire_field(thinking, name) for name in ("thinkingBudget", "thinkingLevel",
                                                                       "includeThoughts")
                        if wire_field(thinking, name) is not None}
            if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
                raise ApiError(400, "You can only set only one of thinking budget and thinking level.")
        schema = wire_field(generation, "responseJsonSchema") or wire_field(generation, "responseSchema")
        return Prepared(
            key=key, model=model,
            request=AnswerRequest(key=key, prompt="\n".join(texts), model=model, images=tuple(all_images),
                                  max_output_tokens=int(max_tokens) if max_tokens else None,
                                  response_schema=schema if isinstance(schema, dict) else None),
            cache_name=cache.name if cache else None,
            cached_tokens=cache.token_count if cache else 0,
            image_count=len(all_images),
            thinking=thinking if isinstance(thinking, dict) else None,
            media_resolution=wire_field(generation, "mediaResolution"),
            image_sources=tuple("file" if ref.file_id else "inline" for ref in content.images),
        )

    def estimate_request_tokens(self, owner: str, body: dict[str, Any]) -> int:
        """Input tokens a request will cost, for the enqueued-token meter (no file resolution)."""
        content = content_of(wire_field(body, "systemInstruction"), body.get("contents"))
        tokens = estimate_prompt_tokens("\n".join(content.texts), len(content.images))
        if cache_ref := wire_field(body, "cachedContent"):
            with self.lock:
                cache = self._caches.get(str(cache_ref).removeprefix("cachedContents/"))
                if cache is not None and cache.owner == owner:
                    tokens += cache.token_count
        return tokens

