"""The HTTP face of the emulator: Gemini REST routes (`v1`, `v1beta`, `v1alpha`) plus `/_emulator/*`
control routes, on a stdlib `ThreadingHTTPServer`.

    with EmulatorServer(EmulatorConfig(batch_latency_s=1)) as emulator:
        client = emulator.client()          # genai.Client(api_key=..., http_options=HttpOptions(base_url=url))
        ...
        emulator.state.request_log         # what reached inference
        emulator.batches.summaries()       # every batch and its state
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ocr_assets.engines.emulator import faults as fault_rules
from ocr_assets.engines.emulator.answers import Answerer, EchoAnswerer
from ocr_assets.engines.emulator.batches import BatchQueue
from ocr_assets.engines.emulator.config import EmulatorConfig
from ocr_assets.engines.emulator.inference import RECORD_KEY_HEADER, count_tokens, generate_content
from ocr_assets.engines.emulator.state import EmulatorState, model_name, page
from ocr_assets.engines.emulator.wire import ApiError, error_body

logger = logging.getLogger(__name__)

_VER = r"(?P<ver>v1|v1beta|v1alpha)"
_ID = r"(?P<id>[^/:]+)"
_MODEL = r"(?P<model>[^/:]+)"

# (method, path pattern, route name); `files.upload` turns into `files.upload_chunk` with an upload_id.
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern), route)
    for method, pattern, route in [
        ("POST", rf"^/upload/{_VER}/files$", "files.upload"),
        ("GET", rf"^/{_VER}/files$", "files.list"),
        ("GET", rf"^/{_VER}/files/{_ID}$", "files.get"),
        ("DELETE", rf"^/{_VER}/files/{_ID}$", "files.delete"),
        ("GET", rf"^/{_VER}/files/{_ID}:download$", "files.download"),
        ("POST", rf"^/{_VER}/models/{_MODEL}:batchGenerateContent$", "batches.create"),
        ("POST", rf"^/{_VER}/models/{_MODEL}:generateContent$", "models.generateContent"),
        ("POST", rf"^/{_VER}/models/{_MODEL}:countTokens$", "models.countTokens"),
        ("GET", rf"^/{_VER}/models/{_MODEL}$", "models.get"),
        ("GET", rf"^/{_VER}/batches$", "batches.list"),
        ("GET", rf"^/{_VER}/batches/{_ID}$", "batches.get"),
        ("DELETE", rf"^/{_VER}/batches/{_ID}$", "batches.delete"),
        ("POST", rf"^/{_VER}/batches/{_ID}:cancel$", "batches.cancel"),
        ("POST", rf"^/{_VER}/cachedContents$", "caches.create"),
        ("GET", rf"^/{_VER}/cachedContents$", "caches.list"),
        ("GET", rf"^/{_VER}/cachedContents/{_ID}$", "caches.get"),
        ("PATCH", rf"^/{_VER}/cachedContents/{_ID}$", "caches.update"),
        ("DELETE", rf"^/{_VER}/cachedContents/{_ID}$", "caches.delete"),
        ("GET", r"^/_emulator/log$", "_emulator.log"),
        ("GET", r"^/_emulator/config$", "_emulator.config"),
        ("POST", r"^/_emulator/config$", "_emulator.configure"),
        ("POST", r"^/_emulator/clock$", "_emulator.clock"),
        ("GET", r"^/_emulator/health$", "_emulator.health"),
    ]
]
_REDACT_KEY = re.compile(r"([?&]key=)[^&\s]*")


class _Request:
    """One parsed HTTP request, as the route functions see it."""

    def __init__(self, handler: _Handler, method: str, path: str, query: dict[str, list[str]], body: bytes,
                 params: dict[str, str]):
        self.handler = handler
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.params = params
        self.owner = ""

    def header(self, name: str) -> str | None:
        return self.handler.headers.get(name)

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"Invalid JSON payload received: {exc.msg}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Invalid JSON payload received: expected an object")
        return data

    @property
    def base(self) -> str:
        host = self.header("Host") or "127.0.0.1"
        return f"http://{host}"


class _Response:
    def __init__(self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None,
                 raw: bytes | None = None, content_type: str = "application/json; charset=UTF-8"):
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.raw = raw
        self.content_type = content_type


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        # The request line can carry `?key=`: redact it, and keep access logs at debug level.
        logger.debug("%s %s", self.address_string(), _REDACT_KEY.sub(r"\1REDACTED", format % args))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        parsed = urlsplit(self.path)
        path = unquote(parsed.path)
        query = parse_qs(parsed.query)
        body = self._read_body()
        emulator = self.server.emulator
        state = emulator.state
        route = ""
        try:
            match = None
            for route_method, pattern, name in _ROUTES:
                if route_method == method and (match := pattern.match(path)):
                    route = name
                    break
            if match is None:
                raise ApiError(404, f"Method not found: {method} {path}")
            if route == "files.upload" and "upload_id" in query:
                route = "files.upload_chunk"
            request = _Request(self, method, path, query, body, match.groupdict())
            if not route.startswith("_emulator"):
                # Upload chunks carry no key, like Google's: the upload id is the credential.
                if route != "files.upload_chunk":
                    request.owner = state.authenticate(self.headers.get("x-goog-api-key") or request.arg("key"))
                state.endpoint_fault(route)
            response = _HANDLERS[route](emulator, request)
        except ApiError as exc:
            headers = dict(exc.headers)
            if route == "files.upload_chunk":
                headers["x-goog-upload-status"] = "final"  # tells the SDK not to retry the chunk
            response = _Response(exc.code, exc.body(), headers)
        except Exception:  # noqa: BLE001 - a bug in the emulator must still answer
            logger.exception("emulator error on %s %s", method, path)
            response = _Response(500, error_body(500, "Internal error in the Gemini emulator."))
        self._send(response)

    def _send(self, response: _Response) -> None:
        if response.raw is not None:
            payload = response.raw
        elif response.body is None:
            payload = b""
        else:
            payload = json.dumps(response.body, ensure_ascii=False).encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer):
        super().__init__(address, _Handler)
        self.emulator = emulator


# -- route functions ---------------------------------------------------------------------------------------


def _upload_start(emulator: EmulatorServer, request: _Request) -> _Response:
    if (request.header("X-Goog-Upload-Protocol") or "").lower() != "resumable":
        raise ApiError(400, "Only the resumable upload protocol is supported (X-Goog-Upload-Protocol: resumable).")
    if (request.header("X-Goog-Upload-Command") or "").lower() != "start":
        raise ApiError(400, "A resumable upload starts with X-Goog-Upload-Command: start.")
    declared = request.header("X-Goog-Upload-Header-Content-Length")
    meta = request.json().get("file") or {}
    session = emulator.state.start_upload(request.owner, meta, int(declared) if declared else None,
                                 request.header("X-Goog-Upload-Header-Content-Type"))
    ver = request.params["ver"]
    url = f"{request.base}/upload/{ver}/files?upload_id={session.id}&upload_protocol=resumable"
    return _Response(200, None, {"x-goog-upload-url": url, "x-goog-upload-status": "active",
                                 "x-goog-upload-chunk-granularity": "262144"})


def _upload_chunk(emulator: EmulatorServer, request: _Request) -> _Response:
    offset = request.header("X-Goog-Upload-Offset")
    status, stored, received = emulator.state.upload_chunk(
        request.arg("upload_id") or "", request.header("X-Goog-Upload-Command") or "upload",
        int(offset) if offset else None, request.body,
    )
    headers = {"x-goog-upload-status": status, "x-goog-upload-size-received": str(received)}
    if stored is None:
        return _Response(200, None, headers)
    return _Response(200, {"file": stored.to_json(request.base, request.params["ver"])}, headers)


def _files_list(emulator: EmulatorServer, request: _Request) -> _Response:
    state = emulator.state
    files, token = page(state.list_files(request.owner), request.arg("pageSize"), request.arg("pageToken"),
                        state.config.list_page_size)
    body: dict[str, Any] = {"files": [f.to_json(request.base, request.params["ver"]) for f in files]}
    if token:
        body["nextPageToken"] = token
    return _Response(200, body)


def _files_get(emulator: EmulatorServer, request: _Request) -> _Response:
    stored = emulator.state.get_file(request.owner, request.params["id"])
    return _Response(200, stored.to_json(request.base, request.params["ver"]))


def _files_delete(emulator: EmulatorServer, request: _Request) -> _Response:
    emulator.state.delete_file(request.owner, request.params["id"])
    return _Response(200, {})


def _files_download(emulator: EmulatorServer, request: _Request) -> _Response:
    if request.arg("alt") != "media":
        raise ApiError(400, "files.download needs alt=media.")
    stored = emulator.state.download_file(request.owner, request.params["id"])
    return _Response(200, raw=stored.data, content_type=stored.mime_type)


def _batches_create(emulator: EmulatorServer, request: _Request) -> _Response:
    with emulator.state.lock:  # the create response shows the batch as created, before its timer can move it
        batch = emulator.batches.create(request.owner, request.params["model"], request.json())
        return _Response(200, emulator.batches.to_json(batch))


def _batches_get(emulator: EmulatorServer, request: _Request) -> _Response:
    delay = fault_rules.slow_poll(emulator.state.config.faults, emulator.state.route_call_count("batches.get"))
    if delay:
        threading.Event().wait(delay)
    batch = emulator.batches.get(request.owner, request.params["id"])
    return _Response(200, emulator.batches.to_json(batch))


def _batches_list(emulator: EmulatorServer, request: _Request) -> _Response:
    batches, token = page(emulator.batches.list(request.owner), request.arg("pageSize"), request.arg("pageToken"),
                          emulator.state.config.list_page_size)
    body: dict[str, Any] = {"operations": [emulator.batches.to_json(b) for b in batches]}
    if token:
        body["nextPageToken"] = token
    return _Response(200, body)


def _batches_cancel(emulator: EmulatorServer, request: _Request) -> _Response:
    emulator.batches.cancel(request.owner, request.params["id"])
    return _Response(200, {})


def _batches_delete(emulator: EmulatorServer, request: _Request) -> _Response:
    emulator.batches.delete(request.owner, request.params["id"])
    return _Response(200, {})


def _generate(emulator: EmulatorServer, request: _Request) -> _Response:
    body = generate_content(emulator.state, request.owner, request.params["model"], request.json(),
                            request.header(RECORD_KEY_HEADER))
    return _Response(200, body)


def _count_tokens(emulator: EmulatorServer, request: _Request) -> _Response:
    return _Response(200, count_tokens(emulator.state, request.owner, request.params["model"],
                                            request.json()))


def _models_get(emulator: EmulatorServer, request: _Request) -> _Response:
    name = model_name(request.params["model"])
    return _Response(200, {
        "name": name, "baseModelId": name.removeprefix("models/"), "version": "emulated",
        "displayName": f"{name.removeprefix('models/')} (emulated)", "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent",
                                       "batchGenerateContent"],
    })


def _caches_create(emulator: EmulatorServer, request: _Request) -> _Response:
    return _Response(200, emulator.state.create_cache(request.owner, request.json()).to_json())


def _caches_list(emulator: EmulatorServer, request: _Request) -> _Response:
    state = emulator.state
    caches, token = page(state.list_caches(request.owner), request.arg("pageSize"), request.arg("pageToken"),
                         state.config.list_page_size)
    body: dict[str, Any] = {"cachedContents": [c.to_json() for c in caches]}
    if token:
        body["nextPageToken"] = token
    return _Response(200, body)


def _caches_get(emulator: EmulatorServer, request: _Request) -> _Response:
    return _Response(200, emulator.state.get_cache(request.owner, request.params["id"]).to_json())


def _caches_update(emulator: EmulatorServer, request: _Request) -> _Response:
    state = emulator.state
    return _Response(200, state.update_cache(request.owner, request.params["id"], request.json()).to_json())


def _caches_delete(emulator: EmulatorServer, request: _Request) -> _Response:
    emulator.state.delete_cache(request.owner, request.params["id"])
    return _Response(200, {})


def _emulator_log(emulator: EmulatorServer, request: _Request) -> _Response:
    return _Response(200, emulator.snapshot())


def _emulator_config(emulator: EmulatorServer, request: _Request) -> _Response:
    return _Response(200, emulator.state.config.model_dump(mode="json"))


def _emulator_configure(emulator: EmulatorServer, request: _Request) -> _Response:
    try:
        config = emulator.state.update_config(request.json())
    except ValueError as exc:
        raise ApiError(400, f"invalid emulator config: {exc}") from None
    return _Response(200, config.model_dump(mode="json"))


def _emulator_clock(emulator: EmulatorServer, request: _Request) -> _Response:
    advance = request.json().get("advance_s", 0)
    try:
        now = emulator.advance_clock(float(advance))
    except (TypeError, ValueError):
        raise ApiError(400, "advance_s must be a number of seconds") from None
    return _Response(200, {"now": now})


def _emulator_health(emulator: EmulatorServer, request: _Request) -> _Response:
    return _Response(200, {"ok": True})


_HANDLERS: dict[str, Callable[[EmulatorServer, _Request], _Response]] = {
    "files.upload": _upload_start,
    "files.upload_chunk": _upload_chunk,
    "files.list": _files_list,
    "files.get": _files_get,
    "files.delete": _files_delete,
    "files.download": _files_download,
    "batches.create": _batches_create,
    "batches.get": _batches_get,
    "batches.list": _batches_list,
    "batches.cancel": _batches_cancel,
    "batches.delete": _batches_delete,
    "models.generateContent": _generate,
    "models.countTokens": _count_tokens,
    "models.get": _models_get,
    "caches.create": _caches_create,
    "caches.list": _caches_list,
    "caches.get": _caches_get,
    "caches.update": _caches_update,
    "caches.delete": _caches_delete,
    "_emulator.log": _emulator_log,
    "_emulator.config": _emulator_config,
    "_emulator.configure": _emulator_configure,
    "_emulator.clock": _emulator_clock,
    "_emulator.health": _emulator_health,
}


class EmulatorServer:
    """A local Gemini API: `start()` binds (port 0 = a free port) and serves on a background thread."""

    def __init__(self, config: EmulatorConfig | None = None, answerer: Answerer | None = None):
        if answerer is None:
            from ocr_assets.engines.emulator.answers import default_answerer

            answerer = default_answerer()
        self.state = EmulatorState(config or EmulatorConfig(), answerer or EchoAnswerer())
        self.batches = BatchQueue(self.state)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> EmulatorConfig:
        """The live config (`state.update_config` and `POST /_emulator/config` change it)."""
        return self.state.config

    def start(self) -> EmulatorServer:
        if self._server is not None:
            return self
        self._server = _Server((self.config.host, self.config.port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="gemini-emulator", daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = self.config.host if self.config.host not in ("0.0.0.0", "") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.batches.stop()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def advance_clock(self, seconds: float) -> float:
        """Move the emulated clock forward (file TTLs, cache expiry, 48 h batch expiry) and bring every
        batch up to date with it; returns the emulated now."""
        with self.state.lock:
            now = self.state.shift_clock(seconds)
            self.batches.refresh_all()
            return now

    def snapshot(self) -> dict[str, Any]:
        """The logs and the batches as JSON (what `GET /_emulator/log` returns)."""
        with self.state.lock:
            return {**self.state.snapshot(), "enqueued_tokens": self.batches.enqueued_tokens(),
                    "batches": self.batches.summaries()}

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, api_key: str = "emulator-key", api_version: str | None = None, **http_options: Any):
        """A `google.genai.Client` pointed at this emulator (the SDK unmodified; `api_version` None = the
        SDK's default)."""
        from google import genai
        from google.genai import types

        if api_version is not None:
            http_options["api_version"] = api_version
        return genai.Client(api_key=api_key, http_options=types.HttpOptions(base_url=self.url, **http_options))

    def env(self) -> dict[str, str]:
        """Environment that points an unconfigured SDK client here (`GOOGLE_GEMINI_BASE_URL`)."""
        return {"GOOGLE_GEMINI_BASE_URL": self.url}
