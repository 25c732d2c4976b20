"""The Gemini Batch API's remote calls, in plain data: the only place the batch path touches the SDK.

`GeminiBatchClient` does the record-safe work (encoding, file reuse, archiving, joining results by
key) and calls these for everything remote. Arguments and results are bytes, strings and small
pydantic models, and failures are our own scrubbed exceptions, so the SDK's objects stay here and a
test can answer the calls instead. Transport retries (429/5xx, timeouts) happen here, around each call.
"""

from __future__ import annotations

import io
import logging
import threading
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from ocr_assets.engines.gemini.classify import is_transient
from ocr_assets.engines.gemini.client import GeminiCallError, describe_error, make_client
from ocr_assets.settings import GeminiSettings, Settings

log = logging.getLogger(__name__)


class CreateRefused(RuntimeError):
    """`batches.create` answered 429 / RESOURCE_EXHAUSTED: the enqueued-token quota is full."""


class SubmitUncertain(RuntimeError):
    """Upload or create failed in a way that leaves open whether the remote job exists."""

    def __init__(self, message: str, *, input_file: str | None = None, definite: bool = False):
        super().__init__(message)
        self.input_file = input_file
        # True when the job surely was not created (e.g. 400 on create): release, do not look it up.
        self.definite = definite


class UploadedFile(BaseModel):
    name: str
    uri: str
    expiration_time: datetime | None = None


class RemoteJob(BaseModel):
    """A batch job as the API reports it (the raw state; `batch.RemoteStatus` maps it to ours)."""

    name: str
    display_name: str | None = None
    raw_state: str
    result_file: str | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None


class BatchCalls(Protocol):
    """What `GeminiBatchClient` needs from the API: `GeminiCalls` here, or a test's stand-in."""

    def upload(self, data: bytes, *, mime_type: str, display_name: str) -> UploadedFile: ...
    def create_batch(self, *, model: str, src: str, display_name: str) -> str: ...
    def get_batch(self, name: str) -> RemoteJob: ...
    def list_batches(self, *, page_size: int) -> list[RemoteJob]: ...
    def cancel_batch(self, name: str) -> None: ...
    def delete_file(self, name: str) -> None: ...
    def download(self, name: str) -> bytes: ...


def retrying(g: GeminiSettings):
    """Our transport retry around one SDK call (429/5xx, timeouts), as `gemini.*` configures it."""
    return retry(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(g.transport_retries),
        wait=wait_exponential_jitter(initial=g.retry_initial_wait_s, max=g.retry_max_wait_s),
        reraise=True,
    )


def _job(job: Any) -> RemoteJob:
    dest = getattr(job, "dest", None)
    return RemoteJob(
        name=job.name, display_name=job.display_name,
        raw_state=str(getattr(job.state, "value", job.state) or "JOB_STATE_UNSPECIFIED"),
        result_file=getattr(dest, "file_name", None) if dest else None,
        create_time=job.create_time, update_time=job.update_time,
    )


class GeminiCalls:
    """`BatchCalls` through the `google-genai` SDK in this process."""

    def __init__(self, settings: Settings, client: Any = None):
        self.settings = settings
        self._client = client
        self._client_lock = threading.Lock()
        self._retry = retrying(settings.gemini)

    def __repr__(self) -> str:
        return f"GeminiCalls(model={self.settings.model.name!r})"

    @property
    def client(self) -> Any:
        """The SDK client, built on first use (upload threads may race here: one client, never dropped)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = make_client(self.settings)
        return self._client

    def _call(self, what: str, fn: Any) -> Any:
        """`fn()` with transport retries; any failure (building the client too) is a scrubbed `GeminiCallError`."""
        try:
            return self._retry(fn)()
        except Exception as exc:
            raise GeminiCallError.wrap(exc, what) from None

    def upload(self, data: bytes, *, mime_type: str, display_name: str) -> UploadedFile:
        # a fresh buffer per try: a failed try leaves the previous one consumed
        uploaded = self._call(f"upload {display_name}", lambda: self.client.files.upload(
            file=io.BytesIO(data), config={"mime_type": mime_type, "display_name": display_name}))
        return UploadedFile(name=uploaded.name, uri=uploaded.uri or uploaded.name,
                            expiration_time=uploaded.expiration_time)

    def create_batch(self, *, model: str, src: str, display_name: str) -> str:
        """`batches.create` exactly once (a blind retry could create a duplicate job)."""
        from google.genai import errors

        try:
            job = self.client.batches.create(model=model, src=src, config={"display_name": display_name})
        except errors.APIError as exc:
            if exc.code == 429 or (exc.status or "").upper() == "RESOURCE_EXHAUSTED":
                raise CreateRefused(describe_error(exc)) from None
            definite = exc.code is not None and 400 <= exc.code < 500
            raise SubmitUncertain(f"batches.create failed: {describe_error(exc)}", input_file=src,
                                  definite=definite) from None
        except Exception as exc:
            raise SubmitUncertain(f"batches.create failed: {describe_error(exc)}", input_file=src) from None
        if not job.name:
            raise SubmitUncertain("batches.create returned no job name", input_file=src)
        return job.name

    def get_batch(self, name: str) -> RemoteJob:
        return _job(self._call(f"get {name}", lambda: self.client.batches.get(name=name)))

    def list_batches(self, *, page_size: int) -> list[RemoteJob]:
        jobs = self._call("list batches", lambda: list(self.client.batches.list(config={"page_size": page_size})))
        return [_job(job) for job in jobs]

    def cancel_batch(self, name: str) -> None:
        self._call(f"cancel {name}", lambda: self.client.batches.cancel(name=name))

    def delete_file(self, name: str) -> None:
        """Best effort: free File API storage (inputs are useless once a batch is done)."""
        try:
            self.client.files.delete(name=name)
        except Exception as exc:
            log.info("could not delete %s: %s", name, describe_error(exc))

    def download(self, name: str) -> bytes:
        return self._call(f"download {name}", lambda: self.client.files.download(file=name))
