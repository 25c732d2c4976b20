"""Batch jobs: create (with the enqueued-token meter), the lazy PENDING → RUNNING → terminal lifecycle,
answering in a worker thread, and the result file / inline responses with their faults.

A batch's state is recomputed whenever it is observed (get, list, create, clock advance) and by a
one-shot timer when it becomes due, so no thread polls; answers are computed in a worker thread started
when the batch starts RUNNING, so a slow answerer never blocks other calls.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ocr_assets.engines.emulator import faults as fault_rules
from ocr_assets.engines.emulator.answers import answer_all
from ocr_assets.engines.emulator.config import ERROR_FAULT_CODES
from ocr_assets.engines.emulator.inference import Outcome, shape
from ocr_assets.engines.emulator.state import EmulatorState, Prepared, RequestLogEntry, model_name, new_id
from ocr_assets.engines.emulator.wire import BATCH_OUTPUT_TYPE, BATCH_TYPE, ApiError, field as wire_field
from ocr_assets.engines.emulator.wire import rfc3339, status_object

logger = logging.getLogger(__name__)

PENDING, RUNNING = "BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"
SUCCEEDED, FAILED = "BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED"
CANCELLED, EXPIRED = "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"
ACTIVE = frozenset({PENDING, RUNNING})
ANSWER_CHUNK = 16  # requests answered between cancellation checks


@dataclass
class BatchRequest:
    index: int
    key: str | None  # as submitted (None: the line had no key)
    body: dict[str, Any]
    metadata: dict[str, Any] | None = None

    @property
    def log_key(self) -> str:
        return self.key if self.key is not None else f"line-{self.index}"


@dataclass
class Batch:
    id: str
    ordinal: int
    owner: str
    model: str
    display_name: str | None
    source: str  # file | inline
    input_file: str | None
    requests: list[BatchRequest]
    estimated_tokens: int
    create_time: float
    fate: str | None
    state: str = PENDING
    update_time: float = 0.0
    end_time: float | None = None
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    deleted: bool = False
    worker: threading.Thread | None = None
    timer: threading.Timer | None = None
    outcomes: list[Outcome] | None = None
    log_entries: list[RequestLogEntry] = field(default_factory=list)
    result_file: str | None = None
    inline_responses: list[dict[str, Any]] | None = None
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"batches/{self.id}"


class BatchQueue:
    """All batches of one emulator; uses the state's lock."""

    def __init__(self, state: EmulatorState):
        self.state = state
        self._batches: dict[str, Batch] = {}
        self._ordinal = 0
        self._stopping = False

    # -- accounting ------------------------------------------------------------------------------------

    def _active(self) -> list[Batch]:
        return [b for b in self._batches.values() if b.state in ACTIVE and not b.deleted]

    def enqueued_tokens(self) -> int:
        with self.state.lock:
            return sum(b.estimated_tokens for b in self._active())

    def active_count(self) -> int:
        with self.state.lock:
            return len(self._active())

    def _log_event(self, event: str, batch: str | None, tokens: int, detail: str | None = None) -> None:
        with self.state.lock:
            self.state.log_event(event, batch, tokens, enqueued_tokens=self.enqueued_tokens(),
                                 active_batches=self.active_count(), detail=detail)

    def summaries(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [
                {"name": b.name, "ordinal": b.ordinal, "state": b.state, "fate": b.fate, "requests": len(b.requests),
                 "estimated_tokens": b.estimated_tokens, "deleted": b.deleted, "result_file": b.result_file}
                for b in sorted(self._batches.values(), key=lambda b: b.ordinal)
            ]

    # -- create ----------------------------------------------------------------------------------------

    def create(self, owner: str, model: str, body: dict[str, Any]) -> Batch:
        batch_spec = body.get("batch") or {}
        input_config = wire_field(batch_spec, "inputConfig") or {}
        file_name = wire_field(input_config, "fileName")
        inline = input_config.get("requests")
        if bool(file_name) == bool(inline):
            raise ApiError(400, "batch.inputConfig needs exactly one of fileName or requests.")
        model = model_name(model)
        if file_name:
            requests = self._read_jsonl(owner, str(file_name))
            source = "file"
        else:
            requests = self._read_inline(inline)
            source = "inline"
        if not requests:
            raise ApiError(400, "The batch has no requests.")
        tokens = sum(self.state.estimate_request_tokens(owner, r.body) for r in requests)
        state = self.state
        with state.lock:
            self.refresh_all()
            config = state.config
            if config.max_enqueued_tokens is not None and tokens > config.max_enqueued_tokens:
                self._log_event("rejected", None, tokens, "batch alone exceeds the enqueued-token limit")
                raise ApiError(400, f"The batch needs an estimated {tokens} tokens, more than the enqueued-token "
                                    f"limit of {config.max_enqueued_tokens}; split it.")
            enqueued = self.enqueued_tokens()
            if config.max_enqueued_tokens is not None and enqueued + tokens > config.max_enqueued_tokens:
                self._log_event("rejected", None, tokens, f"enqueued {enqueued} + {tokens} > "
                                                          f"{config.max_enqueued_tokens}")
                raise ApiError(429, f"Enqueued token limit exceeded for model {model}: {enqueued} tokens are "
                                    f"enqueued, this batch adds {tokens}, the limit is "
                                    f"{config.max_enqueued_tokens}. Retry when active batches finish.")
            if config.max_active_batches is not None and len(self._active()) >= config.max_active_batches:
                self._log_event("rejected", None, tokens, "too many active batches")
                raise ApiError(429, f"Too many concurrent batch jobs (limit {config.max_active_batches}).")
            self._ordinal += 1
            now = state.now()
            batch = Batch(
                id=new_id(), ordinal=self._ordinal, owner=owner, model=model,
                display_name=wire_field(batch_spec, "displayName"), source=source,
                input_file=str(file_name) if file_name else None, requests=requests, estimated_tokens=tokens,
                create_time=now, update_time=now, fate=fault_rules.batch_fate(config.faults, self._ordinal),
            )
            self._batches[batch.id] = batch
            self._log_event("created", batch.name, tokens, batch.fate)
            self._schedule(batch, config.pending_s)
            return batch

    def _read_jsonl(self, owner: str, file_name: str) -> list[BatchRequest]:
        stored = self.state.get_file(owner, file_name.removeprefix("files/"))
        requests = []
        for number, raw in enumerate(stored.data.decode("utf-8", errors="replace").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ApiError(400, f"{file_name} line {number} is not valid JSON: {exc.msg}") from None
            if not isinstance(line, dict) or not isinstance(line.get("request"), dict):
                raise ApiError(400, f"{file_name} line {number} needs a 'request' object.")
            key = line.get("key")
            requests.append(BatchRequest(index=len(requests), key=None if key is None else str(key),
                                         body=line["request"], metadata=line.get("metadata")))
        return requests

    @staticmethod
    def _read_inline(inline: Any) -> list[BatchRequest]:
        items = inline.get("requests") if isinstance(inline, dict) else inline
        requests = []
        for index, item in enumerate(items or []):
            if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
                raise ApiError(400, f"inline request {index} needs a 'request' object.")
            metadata = item.get("metadata") or None
            key = metadata.get("key") if isinstance(metadata, dict) else None
            requests.append(BatchRequest(index=index, key=None if key is None else str(key), body=item["request"],
                                         metadata=metadata))
        return requests

    # -- lifecycle -------------------------------------------------------------------------------------

    def _schedule(self, batch: Batch, delay: float) -> None:
        """Refresh `batch` after `delay` seconds (one pending timer per batch)."""
        if self._stopping or (batch.timer is not None and batch.timer.is_alive()):
            return
        batch.timer = threading.Timer(max(0.0, delay) + 0.001, self._kick, args=(batch.id,))
        batch.timer.daemon = True
        batch.timer.start()

    def _kick(self, batch_id: str) -> None:
        with self.state.lock:
            batch = self._batches.get(batch_id)
            if batch is not None and not self._stopping:
                batch.timer = None
                self._refresh(batch)

    def refresh_all(self) -> None:
        with self.state.lock:
            for batch in list(self._batches.values()):
                self._refresh(batch)

    def _refresh(self, batch: Batch) -> None:
        """Bring `batch` up to date with the clock (call with the lock held)."""
        if batch.state not in ACTIVE:
            return
        state, config = self.state, self.state.config
        now = state.now()
        age = now - batch.create_time
        if age >= config.batch_expire_after_s:
            hours = config.batch_expire_after_s / 3600
            self._finish(batch, EXPIRED, with_output=False,
                         error=status_object(504, f"The batch was not completed within {hours:g} hours and expired."))
            return
        if batch.fate == "stuck" or age < config.pending_s:
            return
        if batch.state == PENDING:
            batch.state, batch.update_time = RUNNING, now
            self._log_event("running", batch.name, batch.estimated_tokens)
        due = age >= config.pending_s + config.batch_latency_s
        if batch.fate == "fail":
            if due:
                self._finish(batch, FAILED, with_output=False,
                             error=status_object(500, "Batch job failed: an internal error occurred while "
                                                      "processing the batch."))
            else:
                self._schedule(batch, config.pending_s + config.batch_latency_s - age)
            return
        if batch.worker is None:
            batch.worker = threading.Thread(target=self._answer, args=(batch,), daemon=True,
                                            name=f"emulator-{batch.name}")
            batch.worker.start()
        if batch.outcomes is not None and due:
            self._finish(batch, EXPIRED if batch.fate == "expire" else SUCCEEDED, with_output=True)
        elif batch.outcomes is not None:
            self._schedule(batch, config.pending_s + config.batch_latency_s - age)

    def _answer(self, batch: Batch) -> None:
        """Worker: answer every request of `batch` (faults drawn per key attempt), then finish if due."""
        try:
            self._answer_all(batch)
        except Exception:  # noqa: BLE001 - an emulator bug fails the batch instead of hanging it RUNNING
            logger.exception("answering %s failed", batch.name)
            with self.state.lock:
                if batch.state in ACTIVE:
                    self._finish(batch, FAILED, with_output=False,
                                 error=status_object(500, "The emulator failed while answering this batch."))

    def _answer_all(self, batch: Batch) -> None:
        state = self.state
        faults = state.config.faults
        file_output = batch.source == "file"
        outcomes: list[Outcome] = []
        entries: list[RequestLogEntry] = []
        pending: list[tuple[BatchRequest, Prepared, int, str | None]] = []

        def flush() -> None:
            answerable = [p for p in pending if p[3] not in ERROR_FAULT_CODES]
            with state.inference_slots:
                answers = iter(answer_all(state.answerer, [p[1].request for p in answerable]))
            for request, prepared, attempt, fault in pending:
                answer = None if fault in ERROR_FAULT_CODES else next(answers)
                outcome = shape(prepared, answer, fault, faults, attempt, state.config.model_like)
                outcomes.append(outcome)
                entries.append(state.log_request(
                    prepared, key=request.log_key, batch=batch.name, attempt=attempt, outcome=outcome.outcome,
                    delivered=None, model=prepared.model, prompt_tokens=outcome.prompt_tokens,
                    output_tokens=outcome.output_tokens, cached_tokens=outcome.cached_tokens,
                    thoughts_tokens=outcome.thoughts_tokens, invalid_field=outcome.invalid_field,
                ))
            pending.clear()

        for request in batch.requests:
            if batch.cancel_requested or self._stopping:
                break
            key = request.log_key
            attempt = state.next_attempt(key)
            fault = fault_rules.record_fault(faults, key, attempt, file_output=file_output)
            try:
                prepared = state.prepare(batch.owner, key, batch.model, request.body)
            except ApiError as exc:
                flush()
                outcomes.append(Outcome(key=key, outcome="invalid_request", fault=None,
                                        error=status_object(exc.code, exc.message, exc.status)))
                entries.append(state.log_request(None, key=key, batch=batch.name, attempt=attempt,
                                                 outcome="invalid_request", delivered=None, model=batch.model))
                continue
            pending.append((request, prepared, attempt, fault))
            if len(pending) >= ANSWER_CHUNK:
                flush()
        flush()
        with state.lock:
            batch.outcomes, batch.log_entries = outcomes, entries
            if batch.state not in ACTIVE:  # cancelled or deleted meanwhile: nobody sees these answers
                for entry in entries:
                    entry.delivered = False
                return
            self._refresh(batch)

    def _finish(self, batch: Batch, final: str, *, with_output: bool, error: dict[str, Any] | None = None) -> None:
        state = self.state
        now = state.now()
        delivered: set[int] = set()
        if with_output and batch.outcomes is not None:
            delivered = self._write_output(batch, keep_all=final != EXPIRED)
        for position, entry in enumerate(batch.log_entries):
            entry.delivered = position in delivered
        batch.state, batch.update_time, batch.end_time, batch.error = final, now, now, error
        total = len(batch.requests)
        succeeded = sum(1 for i in delivered if batch.outcomes and batch.outcomes[i].response is not None)
        failed = sum(1 for i in delivered if batch.outcomes and batch.outcomes[i].error is not None)
        batch.stats = {"requestCount": total, "successfulRequestCount": succeeded, "failedRequestCount": failed,
                       "pendingRequestCount": total - succeeded - failed}
        self._log_event(final.removeprefix("BATCH_STATE_").lower(), batch.name, batch.estimated_tokens)

    def _write_output(self, batch: Batch, *, keep_all: bool) -> set[int]:
        """Build the result file or inline responses; returns the positions whose line the caller gets."""
        faults = self.state.config.faults
        outcomes = batch.outcomes or []
        if batch.source == "inline":
            keep = len(outcomes) if keep_all else round(len(outcomes) * faults.expired_keep_fraction)
            responses = []
            for request, outcome in zip(batch.requests, outcomes[:keep], strict=False):
                item: dict[str, Any] = {"response": outcome.response} if outcome.response is not None else {
                    "error": {"code": outcome.error["code"], "message": outcome.error["message"]}}
                if request.metadata:
                    item["metadata"] = request.metadata
                responses.append(item)
            batch.inline_responses = responses
            return set(range(keep))

        lines: list[dict[str, Any]] = []
        delivered: set[int] = set()
        for position, (request, outcome) in enumerate(zip(batch.requests, outcomes, strict=False)):
            if not keep_all and not fault_rules.keeps_line_when_expired(faults, request.log_key, batch.ordinal):
                continue
            if outcome.fault == "missing_line":
                continue
            line: dict[str, Any] = {} if request.key is None else {"key": request.key}
            if outcome.response is not None:
                line["response"] = outcome.response
            else:
                line[faults.result_error_field] = outcome.error
            lines.append(line)
            delivered.add(position)
            if outcome.fault == "duplicate_line":
                lines.append(dict(line))
            elif outcome.fault == "unknown_key":
                attempt = batch.log_entries[position].attempt if position < len(batch.log_entries) else 0
                lines.append({**line, "key": fault_rules.unknown_key_for(faults, request.log_key, attempt)})
        if faults.shuffle_results:
            lines = fault_rules.shuffled(faults, lines, batch.ordinal)
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
        stored = self.state.add_generated_file(batch.owner, f"batch-{batch.id}", data, "application/jsonl",
                                               display_name=f"{batch.name} results")
        batch.result_file = stored.name
        return delivered

    # -- queries and commands --------------------------------------------------------------------------

    def _owned(self, owner: str, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None or batch.deleted:
            raise ApiError(404, f"Batch batches/{batch_id} not found.")
        if batch.owner != owner:
            raise ApiError(403, f"You do not have permission to access batches/{batch_id}.")
        return batch

    def get(self, owner: str, batch_id: str) -> Batch:
        with self.state.lock:
            batch = self._owned(owner, batch_id)
            self._refresh(batch)
            config = self.state.config
            due = self.state.now() - batch.create_time >= config.pending_s + config.batch_latency_s
            worker = batch.worker if batch.state == RUNNING and batch.outcomes is None and due else None
            wait = config.inline_wait_s
        if worker is not None and wait > 0:
            worker.join(wait)  # let a quick answerer finish within this poll
            with self.state.lock:
                self._refresh(batch)
        return batch

    def list(self, owner: str) -> list[Batch]:
        with self.state.lock:
            self.refresh_all()
            return sorted((b for b in self._batches.values() if b.owner == owner and not b.deleted),
                          key=lambda b: b.ordinal, reverse=True)

    def cancel(self, owner: str, batch_id: str) -> Batch:
        with self.state.lock:
            batch = self._owned(owner, batch_id)
            self._refresh(batch)
            if batch.state in ACTIVE:
                batch.cancel_requested = True
                self._finish(batch, CANCELLED, with_output=False)
            return batch

    def delete(self, owner: str, batch_id: str) -> None:
        with self.state.lock:  # re-entrant: cancel takes it too
            batch = self.cancel(owner, batch_id)
            batch.deleted = True
            self._log_event("deleted", batch.name, batch.estimated_tokens)

    def stop(self) -> None:
        with self.state.lock:
            self._stopping = True
            timers = [b.timer for b in self._batches.values() if b.timer is not None]
        for timer in timers:
            timer.cancel()

    # -- wire ------------------------------------------------------------------------------------------

    def to_json(self, batch: Batch) -> dict[str, Any]:
        with self.state.lock:
            metadata: dict[str, Any] = {
                "@type": BATCH_TYPE,
                "name": batch.name,
                "model": batch.model,
                "createTime": rfc3339(batch.create_time),
                "updateTime": rfc3339(batch.update_time),
                "state": batch.state,
                "batchStats": {k: str(v) for k, v in (batch.stats or {
                    "requestCount": len(batch.requests), "pendingRequestCount": len(batch.requests)}).items()},
            }
            if batch.display_name:
                metadata["displayName"] = batch.display_name
            if batch.input_file:
                metadata["inputConfig"] = {"fileName": batch.input_file}
            if batch.end_time is not None:
                metadata["endTime"] = rfc3339(batch.end_time)
            output: dict[str, Any] | None = None
            if batch.result_file:
                output = {"responsesFile": batch.result_file}
            elif batch.inline_responses is not None:
                output = {"inlinedResponses": {"inlinedResponses": batch.inline_responses}}
            if output is not None:
                metadata["output"] = output
            operation: dict[str, Any] = {"name": batch.name, "metadata": metadata}
            if batch.state not in ACTIVE:
                operation["done"] = True
                if batch.error is not None:
                    operation["error"] = batch.error
                elif output is not None:
                    operation["response"] = {"@type": BATCH_OUTPUT_TYPE, **output}
            return operation
