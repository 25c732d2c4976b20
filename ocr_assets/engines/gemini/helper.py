"""The CLI's SDK helper: import google-genai in a forked process while the command does its own work.

Importing the SDK and building its client is about a second of CPU, half of an `ocr-assets submit`,
and claiming records, rendering prompts and encoding images need none of it. So the short Gemini
batch commands fork this helper first thing (before the CLI's own imports, while the process has no
threads and no files open): it imports the SDK on another core while the command does its local
work, then makes the remote calls (`calls.BatchCalls`) the command sends it over a socket pair.

Only plain data and our own picklable exceptions cross; the API key never does (the helper reads it
from the environment it inherited). The helper ignores Ctrl-C, holds none of the caller's stdio (so
`id=$(ocr-assets submit …)` returns when the command does) and exits when the socket closes, which
happens when the command ends, however it ends. If the helper dies, calls fail as call errors, and
a `batches.create` whose answer was lost is `SubmitUncertain`, recovered by display name as always.

Used only where it pays: a machine with a spare CPU, and not when `OCR_ASSETS_SDK_HELPER=0`.
This module imports only the standard library: `main` loads it before anything else, and a command
that forks loads just what both processes need first; the helper then loads the SDK, never the
command's store, prompts or CLI.
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import socket
import struct
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ocr_assets.engines.gemini.calls import RemoteJob, UploadedFile
    from ocr_assets.settings import Settings

# Equal to `settings.SDK_HELPER_ENV` (a test checks): not imported, so loading this module stays cheap.
SDK_HELPER_ENV = "OCR_ASSETS_SDK_HELPER"

# The short commands that talk to the Batch API. Not `run` (long-lived: the import is noise there)
# nor `batch-fetch` (its result file, up to gigabytes, is better downloaded where it is parsed).
HELPER_COMMANDS = frozenset({"submit", "batch-status", "batch-cancel"})
_HEADER = struct.Struct("!Q")
_CALL_THREADS = 16  # the helper answers calls concurrently (image uploads, polls) like the SDK in-process

_current: SdkHelper | None = None


def _send(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)))
    sock.sendall(data)  # not concatenated: a JSONL upload can be hundreds of MB


def _recv_exact(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = sock.recv_into(view[got:], min(size - got, 1 << 22))
        if not n:
            raise EOFError("the other end closed the socket")
        got += n
    return buffer


def _recv(sock: socket.socket) -> Any:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    return pickle.loads(_recv_exact(sock, size))


def _cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs a container's cgroup quota allows (v2 `cpu.max`, v1 `cpu.cfs_quota_us`); None when unlimited."""
    try:
        with open(os.path.join(root, "cpu.max")) as fh:
            quota, period = fh.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as fh:
            quota_us = int(fh.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as fh:
            period_us = int(fh.read())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def _spare_cpu() -> bool:
    """More than one CPU to run on: by affinity, and by the cgroup quota a container may set (`--cpus=1`)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cpu_quota()
    return cpus > 1 and (quota is None or quota > 1)


def start_for(argv: Sequence[str]) -> SdkHelper | None:
    """Fork the helper when `argv` (without the program name) runs a short batch command and it can help."""
    global _current
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if (command not in HELPER_COMMANDS or "--help" in argv or os.environ.get(SDK_HELPER_ENV, "1") == "0"
            or not hasattr(os, "fork") or not _spare_cpu()):
        return None
    # What both processes need (pydantic, the settings, `calls`), loaded once before the fork: the
    # same wall time on an idle machine, ~0.3 CPU-s less when the other core is busy.
    import ocr_assets.engines.gemini.calls  # noqa: F401
    try:
        _current = SdkHelper.fork()
    except OSError:  # no process or socket to spare (EAGAIN, EMFILE): the calls run in-process
        return None
    return _current


def current() -> SdkHelper | None:
    """The helper this process started, if any (the CLI's batch commands route their calls to it)."""
    return _current


class SdkHelper:
    """The parent's end: send calls, match answers by id (a reader thread), fail them all if the helper dies."""

    def __init__(self, sock: socket.socket, pid: int):
        self._sock = sock
        self.pid = pid
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()  # the pending calls and `_gone`
        self._send_lock = threading.Lock()  # one message at a time on the socket (a big upload may block)
        self._reader: threading.Thread | None = None
        self._gone: str | None = None

    @classmethod
    def fork(cls) -> SdkHelper:
        ours, theirs = socket.socketpair()
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            raise
        if pid == 0:  # the helper: never returns
            ours.close()
            _serve(theirs)
        theirs.close()
        return cls(ours, pid)

    def calls(self, settings: Settings) -> HelperCalls:
        """`BatchCalls` answered by the helper, for these settings (sent now; the client is built there)."""
        self._post(("settings", settings))
        return HelperCalls(self)

    def _post(self, message: Any) -> None:
        try:
            with self._send_lock:
                _send(self._sock, message)
        except OSError as exc:
            with self._lock:
                self._fail_all(f"cannot be reached: {exc}")

    def call(self, method: str, **kwargs: Any) -> Any:
        from ocr_assets.engines.gemini.client import GeminiCallError

        future: Future = Future()
        with self._lock:
            if self._gone is not None:
                raise _gone_error(f"{method}: the Gemini SDK helper (pid {self.pid}) {self._gone}")
            msg_id = next(self._ids)
            self._pending[msg_id] = future
            if self._reader is None:
                self._reader = threading.Thread(target=self._read, name="sdk-helper-reader", daemon=True)
                self._reader.start()
        self._post(("call", msg_id, method, kwargs))
        ok, value = future.result()
        if ok:
            return value
        if isinstance(value, BaseException):
            raise value
        raise GeminiCallError(f"{method}: {value}")

    def _read(self) -> None:
        while True:
            try:
                msg_id, ok, value = _recv(self._sock)
            except Exception as exc:  # EOF, a reset socket, an answer that cannot be unpickled
                with self._lock:
                    self._fail_all("exited" if isinstance(exc, (EOFError, ConnectionError))
                                   else f"failed: {type(exc).__name__}: {exc}")
                return
            with self._lock:
                future = self._pending.pop(msg_id, None)
            if future is not None:
                future.set_result((ok, value))

    def _fail_all(self, why: str) -> None:
        """Under the lock: every waiting call fails; later calls fail at once."""
        self._gone = self._gone or why
        for msg_id, future in list(self._pending.items()):
            del self._pending[msg_id]
            future.set_result((False, _gone_error(f"the Gemini SDK helper (pid {self.pid}) {self._gone}")))

    def close(self, *, wait: bool = False) -> None:
        """Close the socket (the helper exits on it); `wait` also reaps it."""
        with self._lock:
            self._gone = self._gone or "was closed"
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            os.waitpid(self.pid, 0 if wait else os.WNOHANG)
        except ChildProcessError:
            pass


def _gone_error(message: str) -> Exception:
    from ocr_assets.engines.gemini.calls import CallsGone

    return CallsGone(message)


class HelperCalls:
    """`calls.BatchCalls` answered by the helper process."""

    def __init__(self, helper: SdkHelper):
        self._helper = helper

    def __repr__(self) -> str:
        return f"HelperCalls(pid={self._helper.pid})"

    def upload(self, data: bytes, *, mime_type: str, display_name: str) -> UploadedFile:
        return self._helper.call("upload", data=data, mime_type=mime_type, display_name=display_name)

    def create_batch(self, *, model: str, src: str, display_name: str) -> str:
        from ocr_assets.engines.gemini.calls import CallsGone, SubmitUncertain

        try:
            return self._helper.call("create_batch", model=model, src=src, display_name=display_name)
        except CallsGone as exc:  # the helper died with the create in flight: the job may exist
            raise SubmitUncertain(f"batches.create: {exc}", input_file=src) from None

    def get_batch(self, name: str) -> RemoteJob:
        return self._helper.call("get_batch", name=name)

    def list_batches(self, *, page_size: int) -> list[RemoteJob]:
        return self._helper.call("list_batches", page_size=page_size)

    def cancel_batch(self, name: str) -> None:
        self._helper.call("cancel_batch", name=name)

    def delete_file(self, name: str) -> None:
        try:
            self._helper.call("delete_file", name=name)
        except Exception:  # best effort, as in-process
            pass

    def download(self, name: str) -> bytes:
        return self._helper.call("download", name=name)


def _serve(sock: socket.socket) -> None:
    """The helper process: import the SDK, then answer calls until the socket closes. Never returns."""
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the command; we end with its socket
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # hold none of the caller's pipes
            os.dup2(devnull, fd)
        _answer_calls(sock)
    except BaseException:
        status = 1
    finally:
        os._exit(status)  # not the parent's atexit handlers or buffered output


def _answer_calls(sock: socket.socket) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ocr_assets.engines.gemini.calls import CreateRefused, GeminiCalls, SubmitUncertain
    from ocr_assets.engines.gemini.client import GeminiCallError, GeminiUnavailable, describe_error

    startup_error: Exception | None = None
    try:
        import google.genai  # noqa: F401  (the point of the helper: this import is most of its cost)
    except Exception as exc:  # pragma: no cover - google-genai is a dependency
        startup_error = GeminiUnavailable(f"google-genai cannot be imported: {type(exc).__name__}: {exc}")
    send_lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=_CALL_THREADS, thread_name_prefix="sdk-helper")
    calls: Any = None

    def answer(msg_id: int, ok: bool, value: Any) -> None:
        try:
            with send_lock:
                _send(sock, (msg_id, ok, value))
        except OSError:  # the command is gone; the main loop sees the EOF
            pass

    def run(msg_id: int, method: str, kwargs: dict[str, Any]) -> None:
        try:
            answer(msg_id, True, getattr(calls, method)(**kwargs))
        except (GeminiCallError, SubmitUncertain, CreateRefused, GeminiUnavailable) as exc:
            answer(msg_id, False, exc)
        except Exception as exc:  # never let an SDK object or an unscrubbed message cross
            answer(msg_id, False, GeminiCallError(f"{method}: {describe_error(exc)}"))

    while True:
        try:
            message = _recv(sock)
        except (EOFError, OSError):
            return
        if message[0] == "settings":
            calls = None
            if startup_error is None:
                calls = GeminiCalls(message[1])
                try:
                    calls.client  # build it now, before the first call needs it
                except GeminiUnavailable as exc:
                    startup_error = exc
        elif message[0] == "call":
            _, msg_id, method, kwargs = message
            if startup_error is not None or calls is None:
                answer(msg_id, False, startup_error or GeminiUnavailable("the helper got a call before settings"))
            else:
                pool.submit(run, msg_id, method, kwargs)
